"""The Linux reference guest: build it, inspect the image, boot it under real QEMU.

The build needs Debian's package mirror (or a warm cache in build/cache, or
$AERO_REFERENCE_GUEST_CACHE) and the host tools listed in
reference-guest/README.md. Locally a missing tool skips with its reason; with
CI=true it fails.
"""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent
BUILDER = REPO / "reference-guest" / "build.py"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CACHE = Path(os.environ.get("AERO_REFERENCE_GUEST_CACHE", REPO / "build" / "cache"))
HTTP_PATH = "/aero-virtio-selftest"
PATTERN = bytes(range(256)) * 4096
PATTERN_FNV1A64 = "0x8505ae4435522325"
MARK = "AERO_VIRTIO_SELFTEST"
BUILD_TOOLS = ("apt-get", "apt-cache", "dpkg-deb", "mkfs.fat", "mcopy", "mmd", "mtype", "mdir", "syslinux", "zstd", "qemu-img")
BOOT_TIMEOUT_S = 150.0


def need_tools(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        message = f"missing host tools for the reference guest: {', '.join(missing)} (see reference-guest/README.md)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def load_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reference_guest_build", BUILDER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- host services


@dataclass
class Services:
    """A throwaway stand-in for the harness's guest services (the protocol page's table)."""

    http_port: int
    udp_port: int
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # method, path, status
    uploads: list[int] = field(default_factory=list)
    datagrams: list[int] = field(default_factory=list)


class _Handler(http.server.BaseHTTPRequestHandler):
    services: Services

    def log_message(self, format: str, *args: object) -> None:
        return

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.services.requests.append((self.command, self.path, status))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == HTTP_PATH:
            self._send(200, b"OK\n", "text/plain")
        elif self.path == HTTP_PATH + "-large":
            extra = {"ETag": f'"{PATTERN_FNV1A64}"', "Cache-Control": "no-store"}
            self._send(200, PATTERN, "application/octet-stream", extra)
        else:
            self._send(404, b"not found\n", "text/plain")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        if self.headers.get("Expect", "").lower() == "100-continue":
            self.send_response_only(100)
            self.end_headers()
        body = self.rfile.read(length)
        if self.path != HTTP_PATH + "-large":
            self._send(404, b"not found\n", "text/plain")
            return
        self.services.uploads.append(len(body))
        ok = len(body) == len(PATTERN) and hashlib.sha256(body).digest() == hashlib.sha256(PATTERN).digest()
        self._send(200 if ok else 400, b"OK\n" if ok else b"bad upload\n", "text/plain")


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    """HTTP and UDP echo on free loopback ports (the guest reaches them as 10.0.2.2)."""
    class Handler(_Handler):
        pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.2)
    svc = Services(http_port=httpd.server_address[1], udp_port=udp.getsockname()[1])
    Handler.services = svc
    stop = threading.Event()

    def echo() -> None:
        while not stop.is_set():
            try:
                data, peer = udp.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            svc.datagrams.append(len(data))
            if len(data) <= 2048:
                udp.sendto(data, peer)

    threads = [threading.Thread(target=httpd.serve_forever, daemon=True), threading.Thread(target=echo, daemon=True)]
    for t in threads:
        t.start()
    yield svc
    stop.set()
    httpd.shutdown()
    httpd.server_close()
    udp.close()
    for t in threads:
        t.join(timeout=5)


# ---------------------------------------------------------------- builds


@dataclass
class Built:
    image: Path
    manifest: dict[str, object]
    seconds: float


def build(out: Path, *args: str) -> Built:
    need_tools(*BUILD_TOOLS)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(BUILDER), "--out", str(out), "--cache", str(CACHE), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, f"build failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    manifest = json.loads(out.with_name(out.name.removesuffix(".qcow2") + ".manifest.json").read_text())
    return Built(out, manifest, seconds)


@pytest.fixture(scope="session")
def guest(tmp_path_factory: pytest.TempPathFactory, services: Services) -> Built:
    """The guest, built with the test services' ports baked in (this also proves the knobs work)."""
    out = tmp_path_factory.mktemp("refguest") / "reference-guest.qcow2"
    url = f"http://10.0.2.2:{services.http_port}{HTTP_PATH}"
    return build(out, "--http-url", url, "--udp-port", str(services.udp_port))


@pytest.fixture(scope="session")
def guest_require_snd(tmp_path_factory: pytest.TempPathFactory, guest: Built) -> Built:
    """A second build with the default URL and port and require-snd (after `guest`: the cache is warm)."""
    out = tmp_path_factory.mktemp("refguest-snd") / "reference-guest-snd.qcow2"
    return build(out, "--require-snd")


def raw_copy(image: Path, tmp: Path) -> Path:
    raw = tmp / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), str(raw)], check=True)
    return raw


def fat_read(raw: Path, path: str) -> bytes:
    proc = subprocess.run(["mtype", "-i", f"{raw}@@1M", f"::{path}"], capture_output=True, check=True)
    return proc.stdout


def read_cpio(data: bytes) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, data) of a newc archive."""
    entries: dict[str, tuple[int, bytes]] = {}
    pos = 0
    while True:
        assert data[pos : pos + 6] == b"070701", f"bad cpio header at {pos}"
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_start = pos + 110
        name = data[name_start : name_start + namesize - 1].decode()
        pos = (name_start + namesize + 3) & ~3
        body = data[pos : pos + size]
        pos = (pos + size + 3) & ~3
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, body)


# ---------------------------------------------------------------- unit tests of the builder


def test_builder_knobs_are_validated() -> None:
    b = load_builder()
    k = b.parse_knobs("http://10.0.2.2:18080/aero-virtio-selftest", 18081, False)
    assert (k.http_host, k.http_port, k.http_path, k.udp_port) == ("10.0.2.2", 18080, "/aero-virtio-selftest", 18081)
    assert b.parse_knobs("http://10.0.2.2/x", 1, True).http_port == 80
    for url in ("https://10.0.2.2/x", "http://10.0.2.2/a|b", "http://10.0.2.2/it's", "http://10.0.2.2/a b", "ftp://h/"):
        with pytest.raises(b.BuildError):
            b.parse_knobs(url, 18081, False)
    for port in (0, 70000):
        with pytest.raises(b.BuildError):
            b.parse_knobs("http://10.0.2.2/x", port, False)


def test_builder_defaults_match_the_protocol() -> None:
    b = load_builder()
    args = b.parse_args([])
    assert args.http_url == "http://10.0.2.2:18080/aero-virtio-selftest"
    assert args.udp_port == 18081
    assert args.require_snd is False
    assert args.out == Path("build/reference-guest.qcow2")


def test_cpio_writer_round_trips() -> None:
    b = load_builder()
    tree = b.Tree()
    tree.file("usr/bin/x", b"abc", 0o755)
    tree.symlink("bin", "usr/bin")
    tree.chardev("dev/console", 5, 1)
    entries = read_cpio(tree.cpio(0))
    assert entries["usr/bin/x"] == (0o100755, b"abc")
    assert entries["bin"][1] == b"usr/bin"
    assert set(entries) == {"usr", "usr/bin", "usr/bin/x", "bin", "dev", "dev/console"}


# ---------------------------------------------------------------- the built image


@pytest.mark.qemu
@pytest.mark.slow
def test_image_is_a_small_qcow2_with_a_manifest(guest: Built) -> None:
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(guest.image)],
                                     capture_output=True, text=True, check=True).stdout)  # fmt: skip
    assert info["format"] == "qcow2"
    size = guest.image.stat().st_size
    assert size < 40_000_000
    m = guest.manifest
    assert m["image_bytes"] == size
    assert isinstance(m["build_seconds"], float)
    packages = m["packages"]
    assert isinstance(packages, dict)
    b = load_builder()
    for name in (*b.PACKAGES, b.KERNEL_META_PACKAGE):
        assert name in packages and packages[name]["version"], name
    kernel = m["kernel"]
    assert isinstance(kernel, dict) and str(kernel["release"]).startswith("6.12")
    assert any(p.endswith("/virtio_snd.ko") for p in kernel["modules_snd"])


@pytest.mark.qemu
@pytest.mark.slow
def test_image_holds_kernel_initramfs_and_config(guest: Built, services: Services, tmp_path: Path) -> None:
    raw = raw_copy(guest.image, tmp_path)
    with raw.open("rb") as f:
        mbr = f.read(512)
    assert mbr[510:512] == b"\x55\xaa"
    boot, ptype, start = mbr[446], mbr[450], struct.unpack_from("<I", mbr, 454)[0]
    assert (boot, ptype, start) == (0x80, 0x0E, 2048)

    listing = subprocess.run(["mdir", "-b", "-i", f"{raw}@@1M", "::/"], capture_output=True, text=True, check=True).stdout
    for name in ("vmlinuz", "initrd.img", "syslinux", "aero"):
        assert f"::/{name}" in listing
    syslinux_cfg = fat_read(raw, "/syslinux/syslinux.cfg").decode()
    assert "LINUX /vmlinuz" in syslinux_cfg and "INITRD /initrd.img" in syslinux_cfg
    assert "console=ttyS0,115200" in syslinux_cfg
    assert fat_read(raw, "/syslinux/ldlinux.sys")

    config = fat_read(raw, "/aero/selftest.conf").decode()
    assert f"AERO_HTTP_URL='http://10.0.2.2:{services.http_port}{HTTP_PATH}'" in config
    assert f"AERO_UDP_PORT='{services.udp_port}'" in config
    assert "AERO_REQUIRE_SND='0'" in config
    on_disk = json.loads(fat_read(raw, "/aero/manifest.json"))
    assert on_disk["packages"] == guest.manifest["packages"]

    initrd = fat_read(raw, "/initrd.img")
    assert initrd[:4] == b"\x28\xb5\x2f\xfd"  # zstd
    archive = subprocess.run(["zstd", "-dc"], input=initrd, capture_output=True, check=True).stdout
    entries = read_cpio(archive)
    for name in ("init", "usr/bin/busybox", "usr/bin/socat", "usr/bin/aplay", "usr/share/aero/selftest.sh",
                 "usr/lib/x86_64-linux-gnu/libc.so.6", "usr/lib/x86_64-linux-gnu/libasound.so.2",
                 "usr/share/alsa/alsa.conf", "etc/aero/selftest.conf", "dev/console"):  # fmt: skip
        assert name in entries, name
    assert entries["etc/aero/selftest.conf"][1].decode() == config
    assert entries["usr/share/aero/pattern-1m.bin"][1] == PATTERN
    assert any(n.endswith("/virtio_blk.ko") for n in entries)


@pytest.mark.qemu
@pytest.mark.slow
def test_second_build_reuses_the_cache_and_bakes_the_defaults(guest_require_snd: Built, tmp_path: Path) -> None:
    cache = guest_require_snd.manifest["cache"]
    assert isinstance(cache, dict)
    assert cache["downloaded"] == [] and cache["extracted"] == [] and cache["warm"] is True
    config = fat_read(raw_copy(guest_require_snd.image, tmp_path), "/aero/selftest.conf").decode()
    assert "AERO_HTTP_URL='http://10.0.2.2:18080/aero-virtio-selftest'" in config
    assert "AERO_UDP_PORT='18081'" in config
    assert "AERO_REQUIRE_SND='1'" in config


# ---------------------------------------------------------------- booting it


@dataclass
class Boot:
    serial: bytes
    seconds_to_result: float
    alive_after_result: bool

    def records(self) -> list[str]:
        return [ln.rstrip("\r") for ln in self.serial.decode(errors="replace").split("\n") if ln.startswith(MARK)]

    def test(self, name: str) -> tuple[str, dict[str, str]]:
        for rec in self.records():
            parts = rec.split("|")
            if parts[1] == "TEST" and parts[2] == name and parts[3] != "INFO":
                return parts[3], dict(p.split("=", 1) for p in parts[4:] if "=" in p)
        raise AssertionError(f"no TEST marker for {name}: {self.records()}")


def boot(image: Path, tmp: Path) -> Boot:
    """Boot like the harness does: TCG, i440fx, virtio-blk with bootindex, user net, COM1 to a file."""
    need_tools("qemu-system-x86_64")
    serial = tmp / "serial.log"
    argv = [
        "qemu-system-x86_64", "-machine", "pc", "-accel", "tcg", "-m", "2048", "-smp", "2",
        "-display", "none", "-no-reboot", "-nodefaults", "-vga", "std",
        "-drive", f"if=none,id=disk0,file={image},format=qcow2,snapshot=on",
        "-device", "virtio-blk-pci,drive=disk0,bootindex=0",
        "-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0",
        "-chardev", f"file,id=com1,path={serial}", "-serial", "chardev:com1",
        "-monitor", "none",
    ]  # fmt: skip
    t0 = time.monotonic()
    qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        data = b""
        while time.monotonic() - t0 < BOOT_TIMEOUT_S:
            data = serial.read_bytes() if serial.exists() else b""
            if re.search(rb"\|RESULT\|(PASS|FAIL)\r\n", data):
                break
            if qemu.poll() is not None:
                err = qemu.stderr.read().decode(errors="replace") if qemu.stderr else ""
                raise AssertionError(f"QEMU exited {qemu.returncode} before RESULT: {err}\n{data[-2000:]!r}")
            time.sleep(0.1)
        else:
            raise AssertionError(f"no RESULT within {BOOT_TIMEOUT_S}s:\n{data[-3000:]!r}")
        seconds = time.monotonic() - t0
        time.sleep(2)  # like Windows, the guest stays up after RESULT
        alive = qemu.poll() is None
        return Boot(serial.read_bytes(), seconds, alive)
    finally:
        qemu.terminate()
        try:
            qemu.wait(timeout=10)
        except subprocess.TimeoutExpired:
            qemu.kill()
            qemu.wait()


@pytest.mark.qemu
@pytest.mark.slow
def test_guest_boots_and_passes_every_check(guest: Built, services: Services, tmp_path: Path) -> None:
    before = hashlib.sha256(guest.image.read_bytes()).hexdigest()
    run = boot(guest.image, tmp_path)
    print(f"reference guest: boot to RESULT in {run.seconds_to_result:.1f}s under TCG")
    records = run.records()
    assert records[0] == f"{MARK}|START|version=1"
    assert records[1].startswith(f"{MARK}|CONFIG|http_url=http://10.0.2.2:{services.http_port}{HTTP_PATH}|")
    assert f"|udp_port={services.udp_port}|" in records[1]
    assert records[-1] == f"{MARK}|RESULT|PASS"
    # Every record is a CRLF line of its own.
    for rec in records:
        assert (rec + "\r\n").encode() in run.serial

    status, blk = run.test("virtio-blk")
    assert status == "PASS", blk
    assert blk["write_ok"] == blk["flush_ok"] == blk["read_ok"] == blk["verify_ok"] == "1"
    assert int(blk["write_bytes"]) == int(blk["read_bytes"]) >= 4 << 20
    assert float(blk["write_mbps"]) > 0 and float(blk["read_mbps"]) > 0

    status, net = run.test("virtio-net")
    assert status == "PASS", net
    assert net["dhcp_ok"] == "1" and net["ip"] == "10.0.2.15"
    assert net["large_ok"] == "1" and net["large_bytes"] == "1048576"
    assert net["large_fnv1a64"] == PATTERN_FNV1A64
    assert net["large_sha256"] == hashlib.sha256(PATTERN).hexdigest()
    assert net["upload_ok"] == "1" and net["upload_bytes"] == "1048576"

    status, udp = run.test("virtio-net-udp")
    assert status == "PASS", udp
    assert udp["port"] == str(services.udp_port) and udp["echoed"] == udp["sent"]

    status, snd = run.test("virtio-snd")
    assert status == "SKIP", snd  # no virtio-sound-pci attached

    # The host side saw the real traffic.
    assert ("GET", HTTP_PATH, 200) in services.requests
    assert ("GET", HTTP_PATH + "-large", 200) in services.requests
    assert ("POST", HTTP_PATH + "-large", 200) in services.requests
    assert 1048576 in services.uploads
    assert services.datagrams
    assert run.alive_after_result, "the guest must stay up after RESULT; the harness ends the run"
    assert hashlib.sha256(guest.image.read_bytes()).hexdigest() == before


@pytest.mark.qemu
@pytest.mark.slow
def test_require_snd_without_the_device_fails(guest_require_snd: Built, tmp_path: Path) -> None:
    run = boot(guest_require_snd.image, tmp_path)
    status, snd = run.test("virtio-snd")
    assert status == "FAIL" and snd["reason"] == "device_missing"
    assert run.test("virtio-blk")[0] == "PASS"
    assert run.records()[-1] == f"{MARK}|RESULT|FAIL"
