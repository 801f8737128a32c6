"""The reference guest under real QEMU: the Windows guest's vocabulary, the Aero drivers' binding
rules, and the host-coordinated tests (the test plays the host harness over QMP).

Each scenario is one boot. The host side is a throwaway service in this file (HTTP, UDP echo, a
DNS responder); it does not use harness.services. QEMU runs in a private mount namespace
(``unshare -m``) whose /etc/resolv.conf names the test's DNS responder on a loopback address, so
QEMU's user network forwards the guest's queries for 10.0.2.3 to it.

Run one scenario by hand (prints COM1):
    .venv/bin/python tests/test_reference_guest_vocabulary.py IMAGE [--layout contract|transitional|intx]
        [--guest-args '...'] [--act] [--dns NAME=IP ...]
"""

from __future__ import annotations

import hashlib
import http.server
import os
import random
import re
import shutil
import socket
import socketserver
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script
    sys.path.insert(0, str(REPO))

from tests.refguest import HTTP_PATH, PATTERN, PATTERN_FNV1A64, Built  # noqa: E402

MARK = "AERO_VIRTIO_SELFTEST|"
FWCFG_NAME = "opt/org.aero/selftest-args"


# ---------------------------------------------------------------- the host side: HTTP, UDP echo, DNS


class _Http(http.server.BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _reply(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        if path == HTTP_PATH:
            self.server.log.append(f"GET {path}")
            self._reply(200, b"OK")
        elif path == HTTP_PATH + "-large":
            self.server.log.append(f"GET {path}")
            self._reply(200, PATTERN, "application/octet-stream")
        else:
            self._reply(404, b"not found")

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        ok = self.path == HTTP_PATH + "-large" and hashlib.sha256(body).digest() == hashlib.sha256(PATTERN).digest()
        ctype = self.headers.get("Content-Type")
        self.server.log.append(f"POST {self.path} {len(body)} {ctype} {'ok' if ok else 'bad'}")
        self._reply(200 if ok else 400, b"OK" if ok else b"bad body")


class _HttpServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    log: list[str]


def dns_reply(query: bytes, records: dict[str, str], log: list[str]) -> bytes | None:
    """The answer of a tiny authoritative DNS server: A records from ``records``, NXDOMAIN for
    other names, an empty NOERROR for other types of a known name."""
    if len(query) < 17:
        return None
    tid, flags, qdcount = struct.unpack(">HHH", query[:6])
    if qdcount != 1 or flags & 0x8000:
        return None
    pos, labels = 12, []
    while pos < len(query) and query[pos]:
        n = query[pos]
        labels.append(query[pos + 1 : pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n
    pos += 1
    if pos + 4 > len(query):
        return None
    qtype, _qclass = struct.unpack(">HH", query[pos : pos + 4])
    question = query[12 : pos + 4]
    name = ".".join(labels).lower()
    kind = {1: "A", 28: "AAAA"}.get(qtype, str(qtype))
    log.append(f"{kind} {name}")
    ip = records.get(name)
    answer, rcode = b"", 0
    if ip is None:
        rcode = 3  # NXDOMAIN
    elif qtype == 1:
        answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(ip)
    header = struct.pack(">HHHHHH", tid, 0x8400 | (flags & 0x0100) | 0x0080 | rcode, 1, 1 if answer else 0, 0, 0)
    return header + question + answer


class HostServices:
    """HTTP and UDP echo on 127.0.0.1 (the guest's 10.0.2.2), DNS on a random loopback address."""

    def __init__(self, dns: dict[str, str] | None = None, http_port: int = 0, udp_port: int = 0) -> None:
        self.log: list[str] = []
        self.udp_sizes: list[int] = []
        self.dns_queries: list[str] = []
        self.dns_records = {k.lower().rstrip("."): v for k, v in (dns or {}).items()}
        self.http = _HttpServer(("127.0.0.1", http_port), _Http)
        self.http.log = self.log
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", udp_port))
        self.http_port = int(self.http.server_address[1])
        self.udp_port = int(self.udp.getsockname()[1])
        self.dns_addr = ""
        self.dns_sock: socket.socket | None = None
        for _ in range(20):
            addr = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.bind((addr, 53))
            except OSError:
                s.close()
                continue
            self.dns_addr, self.dns_sock = addr, s
            break
        self._threads = [
            threading.Thread(target=self.http.serve_forever, daemon=True),
            threading.Thread(target=self._udp_loop, daemon=True),
        ]
        if self.dns_sock is not None:
            self._threads.append(threading.Thread(target=self._dns_loop, daemon=True))
        for t in self._threads:
            t.start()


    def _udp_loop(self) -> None:
        while True:
            try:
                data, peer = self.udp.recvfrom(65536)
            except OSError:
                return
            self.udp_sizes.append(len(data))
            self.udp.sendto(data, peer)

    def _dns_loop(self) -> None:
        assert self.dns_sock is not None
        while True:
            try:
                data, peer = self.dns_sock.recvfrom(4096)
            except OSError:
                return
            reply = dns_reply(data, self.dns_records, self.dns_queries)
            if reply is not None:
                self.dns_sock.sendto(reply, peer)

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.udp.close()
        if self.dns_sock is not None:
            self.dns_sock.close()


# ---------------------------------------------------------------- QEMU layouts


def contract_devices(*, vectors: int | None = None) -> list[str]:
    """The Aero contract-v1 layout the harness uses (modern-only virtio, input bound to displays)."""
    v = "" if vectors is None else f",vectors={vectors}"
    return [
        "-device", "VGA,id=vga0",
        "-device", f"virtio-blk-pci,drive=disk0,id=blk0,disable-legacy=on,queue-size=128,bootindex=0{v}",
        "-netdev", "user,id=net0",
        "-device", f"virtio-net-pci,netdev=net0,id=nic0,disable-legacy=on{v}",
        "-device", f"virtio-keyboard-pci,id=kbd0,display=vga0{v}",
        "-device", f"virtio-mouse-pci,id=mouse0,display=vga0{v}",
        "-device", "secondary-vga,id=vga1",
        "-device", f"virtio-tablet-pci,id=tablet0,display=vga1{v}",
    ]  # fmt: skip


def transitional_devices() -> list[str]:
    """QEMU's default (transitional) virtio-blk/net, no input devices: what older drivers bind."""
    return [
        "-vga", "std",
        "-device", "virtio-blk-pci,drive=disk0,id=blk0,bootindex=0",
        "-netdev", "user,id=net0",
        "-device", "virtio-net-pci,netdev=net0,id=nic0",
    ]  # fmt: skip


def fwcfg_args(args: str) -> list[str]:
    return ["-fw_cfg", f"name={FWCFG_NAME},string={args.replace(',', ',,')}"]


# ---------------------------------------------------------------- one boot


@dataclass
class Record:
    kind: str  # START, CONFIG, TEST, RESULT
    name: str  # the test name for TEST records, else ""
    status: str  # PASS/FAIL/SKIP/INFO/READY for TEST, PASS/FAIL for RESULT
    words: list[str]  # bare words after the status
    fields: dict[str, str]
    line: str

    def __getitem__(self, key: str) -> str:
        return self.fields[key]


def parse_record(line: str) -> Record | None:
    if not line.startswith(MARK):
        return None
    parts = line[len(MARK) :].split("|")
    kind, rest = parts[0], parts[1:]
    name = status = ""
    if kind == "TEST":
        name, status, rest = rest[0], rest[1], rest[2:]
    elif kind == "RESULT":
        status, rest = rest[0], rest[1:]
    words = [p for p in rest if "=" not in p]
    fields = dict(p.split("=", 1) for p in rest if "=" in p)
    return Record(kind, name, status, words, fields, line)


class Boot:
    """QEMU with the reference guest, COM1 into a file, QMP on a Unix socket."""

    def __init__(self, qemu: str, image: Path, devices: Sequence[str], workdir: Path,
                 services: HostServices, extra: Sequence[str] = (), memory_mb: int = 2048,
                 private_resolv: bool = True) -> None:
        self.workdir = workdir
        self.serial = workdir / "com1.log"
        self.qmp_path = workdir / "qmp.sock"
        self.services = services
        resolv = workdir / "resolv.conf"
        resolv.write_text(f"nameserver {services.dns_addr or '127.0.0.1'}\n")
        argv = [
            qemu, "-machine", "pc", "-accel", "tcg", "-m", str(memory_mb), "-smp", "2", "-nodefaults",
            "-display", "none", "-no-reboot",
            "-drive", f"file={image},format=qcow2,if=none,id=disk0,snapshot=on",
            *devices,
            "-chardev", f"file,id=com1,path={self.serial}", "-serial", "chardev:com1",
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
            *extra,
        ]  # fmt: skip
        # A private mount namespace whose resolv.conf names the test's DNS responder.
        wrapper = ["unshare", "-m", "--", "sh", "-c", 'mount --bind "$0" /etc/resolv.conf && exec "$@"', str(resolv)]
        if not private_resolv:
            wrapper = []
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([*wrapper, *argv], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=(workdir / "qemu.stderr").open("wb"))  # fmt: skip
        self.times: dict[str, float] = {}  # first line -> seconds since start (as seen by the poller)
        self._seen = 0

    def text(self) -> str:
        try:
            return self.serial.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def lines(self) -> list[str]:
        out = self.text().split("\r\n")
        out.pop()  # an incomplete last line (or "")
        now = time.monotonic() - self.t0
        for line in out[self._seen :]:
            self.times.setdefault(line, now)
        self._seen = max(self._seen, len(out))
        return out

    def records(self) -> list[Record]:
        return [r for r in map(parse_record, self.lines()) if r is not None]

    def wait_for(self, pred: Callable[[list[Record]], bool], timeout: float) -> list[Record]:
        deadline = time.monotonic() + timeout
        while True:
            recs = self.records()
            if pred(recs):
                return recs
            if self.proc.poll() is not None:
                raise AssertionError(f"QEMU exited {self.proc.returncode}:\n{self.text()[-3000:]}\n"
                                     f"{(self.workdir / 'qemu.stderr').read_text()[-2000:]}")  # fmt: skip
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s; COM1 so far:\n{self.text()[-4000:]}")
            time.sleep(0.05)

    def wait_result(self, timeout: float = 240) -> list[Record]:
        return self.wait_for(lambda rs: any(r.kind == "RESULT" for r in rs), timeout)

    def qmp(self, cmd: str, **args: object) -> object:
        from qemu.qmp.legacy import QEMUMonitorProtocol

        mon = QEMUMonitorProtocol(str(self.qmp_path))
        mon.connect()
        try:
            return mon.cmd(cmd, **args)
        finally:
            mon.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# ---------------------------------------------------------------- the host's actions at READY


def _key(qcode: str, down: bool) -> dict[str, object]:
    return {"type": "key", "data": {"down": down, "key": {"type": "qcode", "data": qcode}}}


def _btn(button: str, down: bool) -> dict[str, object]:
    return {"type": "btn", "data": {"down": down, "button": button}}


def _rel(axis: str, value: int) -> dict[str, object]:
    return {"type": "rel", "data": {"axis": axis, "value": value}}


def _abs(axis: str, value: int) -> dict[str, object]:
    return {"type": "abs", "data": {"axis": axis, "value": value}}


class HostActor:
    """Plays the host harness: on each READY marker performs the QMP action (input injections are
    repeated every 0.5 s until the test's final marker), like the real harness."""

    def __init__(self, boot: Boot, *, hwheel: bool) -> None:
        self.boot = boot
        self.hwheel = hwheel
        self.log: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def send(self, device: str, *events: dict[str, object]) -> None:
        self.boot.qmp("input-send-event", device=device, events=list(events))

    def _input_events(self) -> None:
        for ev in ([_key("a", True)], [_key("a", False)], [_rel("x", 10), _rel("y", 5)],
                   [_btn("left", True)], [_btn("left", False)]):  # fmt: skip
            self.send("vga0", *ev)
            time.sleep(0.05)
        wheel = [_btn("wheel-up", True)], [_btn("wheel-up", False)]
        hwheel = ([_btn("wheel-left", True)], [_btn("wheel-left", False)]) if self.hwheel else ()
        for ev in (*wheel, *hwheel):
            self.send("vga0", *ev)
            time.sleep(0.05)
        for q in ("shift", "b"):
            self.send("vga0", _key(q, True))
            time.sleep(0.05)
        for q in ("b", "shift"):
            self.send("vga0", _key(q, False))
            time.sleep(0.05)
        for q in ("ctrl", "alt", "f1"):
            self.send("vga0", _key(q, True))
            time.sleep(0.05)
            self.send("vga0", _key(q, False))
            time.sleep(0.05)
        for b in ("side", "extra"):
            self.send("vga0", _btn(b, True))
            time.sleep(0.05)
            self.send("vga0", _btn(b, False))
            time.sleep(0.05)

    def _media_keys(self) -> None:
        self.send("vga0", _key("volumeup", True))
        time.sleep(0.05)
        self.send("vga0", _key("volumeup", False))

    def _tablet(self) -> None:
        self.send("vga1", _abs("x", 0), _abs("y", 0))
        time.sleep(0.05)
        self.send("vga1", _abs("x", 10000), _abs("y", 20000))
        time.sleep(0.05)
        self.send("vga1", _btn("left", True))
        time.sleep(0.05)
        self.send("vga1", _btn("left", False))

    def _link_flap(self) -> None:
        self.boot.qmp("set_link", name="nic0", up=False)
        time.sleep(3)
        self.boot.qmp("set_link", name="nic0", up=True)

    def _resize(self, old_bytes: int) -> None:
        self.boot.qmp("block_resize", device="disk0", size=old_bytes + 64 * 1048576)

    def _run(self) -> None:
        repeated = {"virtio-input-events": self._input_events, "virtio-input-media-keys": self._media_keys,
                    "virtio-input-tablet-events": self._tablet}  # fmt: skip
        done: set[str] = set()
        next_at: dict[str, float] = {}
        while not self._stop.is_set():
            recs = self.boot.records()
            final = {r.name for r in recs if r.kind == "TEST" and r.status in ("PASS", "FAIL", "SKIP")}
            for r in recs:
                if r.kind != "TEST" or r.status != "READY" or r.name in final:
                    continue
                try:
                    if r.name in repeated and time.monotonic() >= next_at.get(r.name, 0):
                        next_at[r.name] = time.monotonic() + 0.5
                        self.log.append(r.name)
                        repeated[r.name]()
                    elif r.name == "virtio-net-link-flap" and r.name not in done:
                        done.add(r.name)
                        self.log.append(r.name)
                        self._link_flap()
                    elif r.name == "virtio-blk-resize" and r.name not in done:
                        done.add(r.name)
                        self.log.append(r.name)
                        self._resize(int(r["old_bytes"]))
                except Exception as exc:  # noqa: BLE001 - reported by the test
                    self.errors.append(f"{r.name}: {exc!r}")
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


# ---------------------------------------------------------------- running a scenario


@dataclass
class Outcome:
    records: list[Record]
    lines: list[str]  # every COM1 line (free text too)
    services: HostServices
    seconds: float  # QEMU start to RESULT (as polled)
    actions: list[str] = field(default_factory=list)
    action_errors: list[str] = field(default_factory=list)
    alive_after_result: bool = False
    times: dict[str, float] = field(default_factory=dict)

    def test(self, name: str) -> Record:
        found = [r for r in self.records if r.kind == "TEST" and r.name == name and r.status != "READY"]
        assert len(found) == 1, f"{name}: {len(found)} final markers in\n" + "\n".join(self.lines)
        return found[0]

    def ready(self, name: str) -> Record:
        found = [r for r in self.records if r.kind == "TEST" and r.name == name and r.status == "READY"]
        assert len(found) == 1, f"{name}: {len(found)} READY markers"
        return found[0]

    @property
    def result(self) -> str:
        return next(r.status for r in self.records if r.kind == "RESULT")

    def names(self) -> list[str]:
        """Test names in the order of their final markers (READY and INFO left out)."""
        return [r.name for r in self.records if r.kind == "TEST" and r.status not in ("READY", "INFO")]


def run_scenario(qemu: str, image: Path, devices: Sequence[str], workdir: Path, *, guest_args: str = "",
                 dns: dict[str, str] | None = None, act: bool = False, hwheel: bool = False,
                 timeout: float = 300, services: HostServices | None = None, private_resolv: bool = True) -> Outcome:
    services = services or HostServices(dns)
    extra = fwcfg_args(guest_args) if guest_args else []
    boot = Boot(qemu, image, devices, workdir, services, extra, private_resolv=private_resolv)
    actor = HostActor(boot, hwheel=hwheel) if act else None
    try:
        recs = boot.wait_result(timeout)
        seconds = boot.times.get(next(r.line for r in recs if r.kind == "RESULT"), time.monotonic() - boot.t0)
        time.sleep(1.0)
        alive = boot.proc.poll() is None
        return Outcome(recs, boot.lines(), services, seconds, actor.log if actor else [],
                       actor.errors if actor else [], alive, dict(boot.times))  # fmt: skip
    finally:
        if actor:
            actor.stop()
        boot.close()


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def private_resolv() -> None:
    """QEMU runs under ``unshare -m`` (a private resolv.conf); that needs the right to unshare."""
    from tests.conftest import missing_prerequisite

    if shutil.which("unshare") is None:
        missing_prerequisite("unshare (util-linux) is not installed; the DNS tests need a private resolv.conf")
    proc = subprocess.run(["unshare", "-m", "--", "true"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        missing_prerequisite(f"unshare -m does not work here ({proc.stderr.strip()}); run the tests as root")


def url_args(services: HostServices) -> str:
    """Guest flags that point the guest at this scenario's own services (given through fw_cfg)."""
    return f"--http-url http://10.0.2.2:{services.http_port}{HTTP_PATH} --udp-port {services.udp_port}"


OPT_IN = ("--test-input-events-extended --test-input-media-keys --test-input-tablet-events --test-input-led "
          "--test-net-link-flap --test-blk-resize --test-blk-reset")  # fmt: skip


class Background:
    """A scenario that runs while other tests run (it mostly waits for a host that never acts)."""

    def __init__(self, target: Callable[[], Outcome]) -> None:
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(target,), daemon=True)
        self._thread.start()

    def _run(self, target: Callable[[], Outcome]) -> None:
        try:
            self.outcome = target()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test
            self.error = exc

    def result(self, timeout: float) -> Outcome:
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        assert self.outcome is not None, f"the background scenario did not end within {timeout}s"
        return self.outcome


@pytest.fixture(scope="module")
def no_host_boot(qemu: str, guest: Built, private_resolv: None,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Background]:
    """Every host-coordinated test enabled, and a host that never acts: started by the first boot
    test and collected by the last one, since it spends minutes waiting (60 s for the resize alone)."""
    work = tmp_path_factory.mktemp("no-host")
    services = HostServices({"host.lan": "10.0.2.2"})
    bg = Background(lambda: run_scenario(qemu, guest.image, contract_devices(), work, services=services,
                                         guest_args=f"{url_args(services)} {OPT_IN}", timeout=420))  # fmt: skip
    yield bg
    services.close()


# ---------------------------------------------------------------- the option parser (no QEMU)


def busybox_path(request: pytest.FixtureRequest) -> str:
    """The guest's own shell: busybox from the builder's cache (built first if the cache is cold)."""
    from tests.refguest import CACHE

    found = sorted(CACHE.glob("extract/busybox-static_*/usr/bin/busybox"))
    if not found:
        request.getfixturevalue("guest")  # a build fills the cache
        found = sorted(CACHE.glob("extract/busybox-static_*/usr/bin/busybox"))
    assert found, f"no busybox in {CACHE}"
    return str(found[-1])


def dry_run(busybox: str, tmp: Path, baked: str, fwcfg: str | None) -> tuple[list[str], dict[str, str]]:
    """selftest.sh's option handling on the build host: the COM1 lines and the resolved options."""
    conf = tmp / "selftest.conf"
    conf.write_text(f"AERO_BUILD_ID='test'\nAERO_GUEST_ARGS='{baked}'\n")
    fw = tmp / "fwcfg"
    if fwcfg is not None:
        fw.write_text(fwcfg)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TMPDIR": str(tmp), "AERO_SELFTEST_DRY": "1",
           "AERO_LIB": str(REPO / "reference-guest" / "guest"), "AERO_SELFTEST_CONF": str(conf),
           "AERO_SELFTEST_FWCFG": str(fw)}  # fmt: skip
    proc = subprocess.run([busybox, "sh", str(REPO / "reference-guest" / "guest" / "selftest.sh")], env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.replace("\r\n", "\n").splitlines()
    opts = dict(line[4:].split("=", 1) for line in out if line.startswith("opt "))
    return [line for line in out if not line.startswith("opt ")], opts


BAKED = "--http-url http://10.0.2.2:18080/aero-virtio-selftest --udp-port 18081"


def test_fw_cfg_words_come_after_the_baked_ones_and_win(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    bb = busybox_path(request)
    lines, opts = dry_run(bb, tmp_path, BAKED + " --require-snd",
                          "--udp-port 19000 --dns-host foo.lan --test-input-events-extended --test-tablet-events "
                          "--test-input-leds --no-such-flag --http-url http://10.0.2.2:8080/x\n")  # fmt: skip
    assert lines[0] == "AERO_VIRTIO_SELFTEST|START|version=1"
    assert "reference-guest: unknown arg: --no-such-flag" in lines
    config = next(parse_record(line) for line in lines if line.startswith(MARK + "CONFIG"))
    assert config is not None
    keys = list(config.fields)
    assert keys[:10] == ["http_url", "http_url_large", "udp_port", "dns_host", "blk_root", "expect_blk_msi",
                         "require_net_msix", "require_input_msix", "require_snd_msix", "test_net_link_flap"]
    assert config["http_url"] == "http://10.0.2.2:8080/x" and config["http_url_large"] == "http://10.0.2.2:8080/x-large"
    assert (config["udp_port"], config["dns_host"], config["blk_root"]) == ("19000", "foo.lan", "")
    assert config["guest"] == "aero-reference-linux" and config["fwcfg_args"] == "10"
    for flag in ("require_snd", "test_input_events", "test_input_events_modifiers", "test_input_events_buttons",
                 "test_input_events_wheel", "test_input_tablet_events", "test_input_led"):
        assert config[flag] == "1", flag
    assert "disable_snd" not in config.fields
    assert (opts["AERO_HTTP_HOST"], opts["AERO_HTTP_PORT"], opts["AERO_HTTP_PATH"]) == ("10.0.2.2", "8080", "/x")
    assert not any(line.startswith(MARK + "RESULT") for line in lines)  # no usage error: the run goes on


def test_without_fw_cfg_the_baked_options_hold(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    lines, opts = dry_run(busybox_path(request), tmp_path, BAKED, None)
    config = parse_record(lines[1])
    assert config is not None and config.kind == "CONFIG"
    assert (config["udp_port"], config["dns_host"], config["fwcfg_args"]) == ("18081", "host.lan", "0")
    assert opts["OPT_NET_TIMEOUT_SEC"] == "120" and opts["REQUIRE_SND"] == "0"


@pytest.mark.parametrize(("words", "message"), [
    ("--disable-snd --test-snd", "reference-guest: --disable-snd cannot be combined with --require-snd"),
    ("--disable-snd --require-snd-msix", "reference-guest: --disable-snd cannot be combined with --require-snd-msix"),
    ("--disable-snd-capture --require-non-silence",
     "reference-guest: --disable-snd-capture cannot be combined with --require-non-silence"),
    ("--udp-port 0", "reference-guest: --udp-port 0: must be 1..65535"),
    ("--net-timeout-sec soon", "reference-guest: --net-timeout-sec soon: not a number"),
    ("--http-url ftp://x/", "reference-guest: --http-url ftp://x/: must be http://HOST[:PORT]/PATH"),
    ("--dns-host", "reference-guest: missing value for --dns-host"),
])  # fmt: skip
def test_conflicts_and_bad_values_end_the_run_with_a_failure(request: pytest.FixtureRequest, tmp_path: Path,
                                                            words: str, message: str) -> None:
    lines, _ = dry_run(busybox_path(request), tmp_path, BAKED, words)
    assert message in lines
    assert lines[-1] == "AERO_VIRTIO_SELFTEST|RESULT|FAIL"
    assert [r.kind for r in map(parse_record, lines) if r] == ["START", "CONFIG", "RESULT"]


# ---------------------------------------------------------------- boots under real QEMU

DEFAULT_ORDER = [
    "virtio-blk-msix", "virtio-blk-counters", "virtio-blk-reset-recovery", "virtio-blk", "virtio-blk-resize",
    "virtio-blk-reset",
    "virtio-input-bind", "virtio-input-binding", "virtio-input", "virtio-input-tablet", "virtio-input-msix",
    "virtio-input-led", "virtio-input-leds", "virtio-input-events", "virtio-input-wheel",
    "virtio-input-events-modifiers", "virtio-input-events-buttons", "virtio-input-events-wheel",
    "virtio-input-media-keys", "virtio-input-tablet-events",
    "virtio-snd", "virtio-snd-capture", "virtio-snd-duplex", "virtio-snd-msix",
    "virtio-net-udp-dns", "virtio-net-udp", "virtio-net", "virtio-net-link-flap", "virtio-net-msix",
]  # fmt: skip

@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.usefixtures("no_host_boot")  # starts the long scenario in the background
def test_a_default_run_speaks_the_windows_guests_vocabulary(qemu: str, guest: Built, guest_ports: tuple[int, int],
                                                            private_resolv: None, tmp_path: Path) -> None:
    # Only the third DNS candidate resolves: the guest must try them in the Windows guest's order.
    services = HostServices({"dns.lan": "10.0.2.2"}, *guest_ports)
    try:
        out = run_scenario(qemu, guest.image, contract_devices(), tmp_path, services=services)
    finally:
        services.close()
    print(f"\nboot to RESULT: {out.seconds:.1f} s")
    kinds = [r.kind for r in out.records]
    assert kinds[:2] == ["START", "CONFIG"] and kinds[-1] == "RESULT" and kinds.count("RESULT") == 1
    assert out.records[0].line == "AERO_VIRTIO_SELFTEST|START|version=1"
    config = out.records[1]
    assert list(config.fields)[:10] == ["http_url", "http_url_large", "udp_port", "dns_host", "blk_root",
                                        "expect_blk_msi", "require_net_msix", "require_input_msix",
                                        "require_snd_msix", "test_net_link_flap"]  # fmt: skip
    assert config["udp_port"] == str(guest_ports[1]) and config["dns_host"] == "host.lan"
    assert config["guest"] == "aero-reference-linux" and config["fwcfg_args"] == "0"

    # One INFO marker per virtio function, right after CONFIG, all of them Aero contract devices.
    pci = [r for r in out.records if r.name == "virtio-pci"]
    assert out.records[2 : 2 + len(pci)] == pci
    assert sorted(r["kind"] for r in pci) == ["blk", "input", "input", "input", "net"]
    ids = {r["kind"]: r["id"] for r in pci}
    assert ids == {"blk": "1af4:1042", "net": "1af4:1041", "input": "1af4:1052"}
    for r in pci:
        assert (r["rev"], r["bound"], r["irq_mode"]) == ("01", "1", "msix"), r.line
        assert int(r["irq_message_count"]) >= 2 and re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{4}", r["subsys"])

    assert out.names() == DEFAULT_ORDER
    statuses = {name: out.test(name).status for name in DEFAULT_ORDER}
    assert [n for n, st in statuses.items() if st == "PASS"] == [
        "virtio-blk-msix", "virtio-blk", "virtio-input-bind", "virtio-input-binding", "virtio-input",
        "virtio-input-tablet", "virtio-input-msix", "virtio-net-udp-dns", "virtio-net-udp", "virtio-net",
        "virtio-net-msix"]  # fmt: skip
    for name in ("virtio-blk-resize", "virtio-input-led", "virtio-input-events", "virtio-input-media-keys",
                 "virtio-input-tablet-events", "virtio-snd-capture", "virtio-snd-duplex", "virtio-net-link-flap"):
        assert out.test(name).line.endswith(f"|{name}|SKIP|flag_not_set"), name
    assert out.test("virtio-blk-reset").line.endswith("|SKIP|reason=flag_not_set")
    assert out.result == "PASS"

    blk = out.test("virtio-blk")
    assert list(blk.fields)[:9] == ["irq_mode", "irq_message_count", "write_ok", "write_bytes", "write_mbps",
                                    "flush_ok", "read_ok", "read_bytes", "read_mbps"]  # fmt: skip
    assert (blk["irq_mode"], blk["write_ok"], blk["flush_ok"], blk["read_ok"], blk["verify_ok"]) == \
        ("msix", "1", "1", "1", "1")
    assert int(blk["write_bytes"]) == int(blk["read_bytes"]) == 8 << 20
    inp = out.test("virtio-input")
    assert (inp["devices"], inp["keyboard_devices"], inp["mouse_devices"], inp["tablet_devices"], inp["reason"]) == \
        ("3", "1", "1", "1", "-")
    assert inp["consumer_devices"] == "1" and inp["irq_mode"] == "msix"
    assert out.test("virtio-input-bind")["pnp_id"].startswith("PCI\\VEN_1AF4&DEV_1052&SUBSYS_")
    assert out.test("virtio-input-msix")["mode"] == "msix"
    snd = out.test("virtio-snd")
    assert snd.line.endswith("|virtio-snd|SKIP|irq_mode=none|irq_message_count=0|irq_reason=device_missing")
    assert out.lines[out.lines.index(snd.line) - 1] == "virtio-snd: skipped (enable with --test-snd)"

    udp = out.test("virtio-net-udp")
    assert list(udp.fields)[:5] == ["bytes", "small_bytes", "mtu_bytes", "reason", "wsa"]
    assert (udp["bytes"], udp["small_bytes"], udp["mtu_bytes"], udp["reason"], udp["wsa"]) == \
        ("1400", "32", "1400", "-", "0")
    net = out.test("virtio-net")
    assert (net["large_ok"], net["large_bytes"], net["large_fnv1a64"]) == ("1", "1048576", PATTERN_FNV1A64)
    assert (net["upload_ok"], net["upload_bytes"], net["msi"], net["irq_mode"]) == ("1", "1048576", "1", "msix")
    assert (net["dhcp_ok"], net["ip"], net["dns_name"], net["dns_ip"]) == ("1", "10.0.2.15", "dns.lan", "10.0.2.2")
    assert net["large_sha256"] == hashlib.sha256(PATTERN).hexdigest() and "reason" not in net.fields
    assert out.test("virtio-net-msix")["mode"] == "msix"

    # The host side saw the real traffic: the datagrams, the candidates in order, the transfers.
    assert services.udp_sizes == [32, 1400]
    assert services.dns_queries[:3] == ["A host.lan", "A gateway.lan", "A dns.lan"]
    assert services.log == [f"GET {HTTP_PATH}", f"GET {HTTP_PATH}-large",
                            f"POST {HTTP_PATH}-large 1048576 application/octet-stream ok"]  # fmt: skip
    assert "virtio-net: DNS resolve failed host=host.lan" in out.lines
    assert "virtio-net: DNS resolve ok host=dns.lan" in out.lines

    raw = (tmp_path / "com1.log").read_bytes()
    assert raw.count(b"\n") == raw.count(b"\r\n") and raw.endswith(b"\r\n")
    free_text = [line for line in out.lines if not line.startswith(MARK) and line]
    assert free_text and all(line.startswith(("virtio-", "reference-guest:")) for line in free_text), free_text
    assert out.alive_after_result, "the guest must stay up after RESULT"


@pytest.mark.qemu
@pytest.mark.slow
def test_the_transitional_layout_is_not_bound_by_the_aero_drivers(qemu: str, guest: Built, private_resolv: None,
                                                                  tmp_path: Path) -> None:
    services = HostServices({"host.lan": "10.0.2.2"})
    try:
        out = run_scenario(qemu, guest.image, transitional_devices(), tmp_path, services=services,
                           guest_args=url_args(services))  # fmt: skip
    finally:
        services.close()
    pci = {r["kind"]: r for r in out.records if r.name == "virtio-pci"}
    assert set(pci) == {"blk", "net"}
    assert (pci["blk"]["id"], pci["blk"]["rev"], pci["blk"]["bound"]) == ("1af4:1001", "00", "0")
    assert (pci["net"]["id"], pci["net"]["rev"], pci["net"]["bound"]) == ("1af4:1000", "00", "0")
    blk = out.test("virtio-blk")
    assert blk.status == "FAIL"
    assert blk.line.split("|")[4:8] == ["reason=driver_not_bound", "pci_id=1af4:1001", "rev=00",
                                        "expected=1af4:1042@01"]  # fmt: skip
    net = out.test("virtio-net")
    assert (net.status, net["reason"], net["pci_id"], net["rev"], net["expected"]) == \
        ("FAIL", "driver_not_bound", "1af4:1000", "00", "1af4:1041@01")
    udp = out.test("virtio-net-udp")
    assert (udp.status, udp["bytes"], udp["small_bytes"], udp["reason"]) == ("FAIL", "0", "0", "unknown")
    inp = out.test("virtio-input")
    assert (inp.status, inp["reason"], inp["devices"], inp["irq_mode"]) == ("FAIL", "pci_device_missing", "0", "none")
    for name in ("virtio-input-bind", "virtio-input-binding"):
        assert (out.test(name).status, out.test(name)["reason"]) == ("FAIL", "driver_not_bound")
    assert out.test("virtio-input-bind")["actual"] == "<missing>"
    assert out.result == "FAIL"
    assert services.log == [] and services.udp_sizes == []  # an unbound NIC is not used


@pytest.mark.qemu
@pytest.mark.slow
def test_allow_transitional_through_fw_cfg_binds_the_transitional_devices(qemu: str, guest: Built,
                                                                          private_resolv: None,
                                                                          tmp_path: Path) -> None:
    services = HostServices({"host.lan": "10.0.2.2"})
    try:
        out = run_scenario(qemu, guest.image, transitional_devices(), tmp_path, services=services,
                           guest_args=f"{url_args(services)} --allow-transitional --no-such-flag")  # fmt: skip
    finally:
        services.close()
    assert out.lines[1] == "reference-guest: unknown arg: --no-such-flag"
    config = out.records[1]
    assert config["allow_transitional"] == "1" and config["fwcfg_args"] == "6"
    assert config["udp_port"] == str(services.udp_port)  # fw_cfg overrides the baked port
    assert all(r["bound"] == "1" for r in out.records if r.name == "virtio-pci")
    assert out.test("virtio-blk").status == "PASS" and out.test("virtio-net").status == "PASS"
    # No input device in this layout: not required with --allow-transitional (SKIP, never a fake PASS).
    inp = out.test("virtio-input")
    assert (inp.status, inp["reason"]) == ("SKIP", "pci_device_missing")
    assert out.test("virtio-input-bind").status == "SKIP"
    assert out.result == "PASS"
    assert services.udp_sizes == [32, 1400] and len(services.log) == 3


@pytest.mark.qemu
@pytest.mark.slow
def test_intx_only_devices_are_reported_as_intx_and_fail_the_msi_requirements(
        qemu: str, guest: Built, private_resolv: None, tmp_path: Path) -> None:
    services = HostServices({})  # no name resolves
    try:
        out = run_scenario(qemu, guest.image, contract_devices(vectors=0), tmp_path, services=services,
                           guest_args=f"{url_args(services)} --expect-blk-msi --require-net-msix --require-input-msix")
    finally:
        services.close()
    config = out.records[1]
    assert (config["expect_blk_msi"], config["require_net_msix"], config["require_input_msix"]) == ("1", "1", "1")
    pci = [r for r in out.records if r.name == "virtio-pci"]
    assert len(pci) == 5 and all((r["irq_mode"], r["irq_message_count"]) == ("intx", "0") for r in pci)
    assert out.test("virtio-blk-msix").line.endswith("|virtio-blk-msix|PASS|mode=intx|messages=0")
    blk = out.test("virtio-blk")
    assert (blk.status, blk["reason"], blk["irq_mode"], blk["irq_message_count"], blk["verify_ok"]) == \
        ("FAIL", "expect_blk_msi", "intx", "0", "1")
    assert "virtio-blk-irq|INFO|mode=intx" in out.lines
    inp = out.test("virtio-input")
    assert (inp.status, inp["irq_mode"], inp["irq_message_count"]) == ("PASS", "intx", "0")
    imsix = out.test("virtio-input-msix")
    assert (imsix.status, imsix["mode"], imsix["intx_devices"]) == ("FAIL", "intx", "2")
    nmsix = out.test("virtio-net-msix")
    assert (nmsix.status, nmsix["mode"], nmsix["messages"]) == ("FAIL", "intx", "0")
    net = out.test("virtio-net")
    assert (net.status, net["reason"], net["irq_mode"], net["msi"]) == ("FAIL", "dns_failed", "intx", "0")
    assert out.test("virtio-net-udp").status == "PASS"  # the UDP echo comes before the names
    assert services.dns_queries == ["A host.lan", "A gateway.lan", "A dns.lan", "A example.com"]
    assert services.log == []  # a failed resolution ends the net test, as in the Windows guest
    assert out.result == "FAIL"


def _assert_order(out: Outcome, *names: str) -> None:
    seen = [f"{r.name}|{r.status}" for r in out.records if r.kind == "TEST"]
    positions = [next(i for i, s in enumerate(seen) if s == n or s.startswith(n + "|")) for n in names]
    assert positions == sorted(positions), seen


@pytest.mark.qemu
@pytest.mark.slow
def test_host_coordinated_tests_pass_when_the_host_acts_at_ready(qemu: str, guest: Built, private_resolv: None,
                                                                 tmp_path: Path) -> None:
    services = HostServices({"foo.lan": "10.0.2.2", "host.lan": "10.0.2.3"})
    try:
        out = run_scenario(qemu, guest.image, contract_devices(), tmp_path, services=services, act=True, hwheel=True,
                           guest_args=f"{url_args(services)} {OPT_IN} --dns-host foo.lan", timeout=400)  # fmt: skip
    finally:
        services.close()
    print(f"\nhost-coordinated boot to RESULT: {out.seconds:.1f} s")
    assert not out.action_errors, out.action_errors
    failed = [r.line for r in out.records if r.kind == "TEST" and r.status == "FAIL"]
    assert not failed, "\n".join(out.lines)
    assert out.result == "PASS"
    for name in ("virtio-blk-resize", "virtio-input-events", "virtio-input-media-keys", "virtio-input-tablet-events",
                 "virtio-net-link-flap"):
        assert out.ready(name)
    _assert_order(out, "virtio-blk|PASS", "virtio-blk-resize|READY", "virtio-blk-resize|PASS", "virtio-blk-reset",
                  "virtio-input|PASS", "virtio-input-led", "virtio-input-events|READY", "virtio-input-events|PASS",
                  "virtio-input-wheel", "virtio-input-events-modifiers", "virtio-input-media-keys|READY",
                  "virtio-input-tablet-events|READY", "virtio-snd", "virtio-net-link-flap|READY",
                  "virtio-net-link-flap|PASS", "virtio-net-udp", "virtio-net")  # fmt: skip

    ready = out.ready("virtio-blk-resize")
    resize = out.test("virtio-blk-resize")
    assert ready.line.split("|")[3:] == ["READY", "disk=0", f"old_bytes={resize['old_bytes']}"]
    assert int(resize["new_bytes"]) == int(resize["old_bytes"]) + 64 * 1048576 and int(resize["elapsed_ms"]) >= 0
    reset = out.test("virtio-blk-reset")
    assert (reset.status, reset["performed"], reset["counter_before"]) == ("PASS", "1", "not_supported")

    ev = out.test("virtio-input-events")
    assert list(ev.fields) == ["kbd_reports", "mouse_reports", "kbd_bad_reports", "mouse_bad_reports", "kbd_a_down",
                               "kbd_a_up", "mouse_move", "mouse_left_down", "mouse_left_up"]  # fmt: skip
    assert all(ev[k] == "1" for k in ("kbd_a_down", "kbd_a_up", "mouse_move", "mouse_left_down", "mouse_left_up"))
    assert int(ev["kbd_reports"]) >= 2 and ev["kbd_bad_reports"] == ev["mouse_bad_reports"] == "0"
    mods = out.test("virtio-input-events-modifiers")
    assert (mods["shift_b"], mods["ctrl"], mods["alt"], mods["f1"]) == ("1", "1", "1", "1")
    buttons = out.test("virtio-input-events-buttons")
    assert all(buttons[k] == "1" for k in ("side_down", "side_up", "extra_down", "extra_up"))
    for name in ("virtio-input-wheel", "virtio-input-events-wheel"):
        wheel = out.test(name)
        assert wheel.status == "PASS" and int(wheel["wheel_total"]) >= 1 and wheel["expected_wheel"] == "1"
    # QEMU's virtio mouse has no horizontal wheel (REL_X, REL_Y, REL_WHEEL only): wheel-left is dropped.
    assert out.test("virtio-input-events-wheel")["saw_hwheel"] == "0"
    media = out.test("virtio-input-media-keys")
    assert (media["volume_up_down"], media["volume_up_up"]) == ("1", "1") and int(media["reports"]) >= 2
    tab = out.test("virtio-input-tablet-events")
    assert (tab["move_target"], tab["left_down"], tab["left_up"], tab["last_left"]) == ("1", "1", "1", "0")
    assert abs(int(tab["last_x"]) - 10000) <= 2 and abs(int(tab["last_y"]) - 20000) <= 2
    led = out.test("virtio-input-led")
    assert (led["sent"], led["led"]) == ("32", "capslock") and int(led["statusq_interrupts"]) >= 1
    assert out.test("virtio-input-leds").line.endswith("|virtio-input-leds|PASS|writes=32")

    flap_ready = out.ready("virtio-net-link-flap")
    assert flap_ready["adapter"] == "eth0" and re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", flap_ready["guid"])
    flap = out.test("virtio-net-link-flap")
    assert list(flap.fields)[:11] == ["adapter", "guid", "down_wait_ms", "up_wait_ms", "recovery_wait_ms",
                                      "down_sec", "up_sec", "ipv4", "http_attempts", "recovery_attempts",
                                      "total_ms"]  # fmt: skip
    # The host held the link down for 3 s from about READY on.
    assert flap["ipv4"] == "10.0.2.15" and int(flap["down_wait_ms"]) + int(flap["up_wait_ms"]) >= 2900
    assert int(flap["cfg_intr_down_delta"]) >= 1 and int(flap["cfg_intr_up_delta"]) >= 1
    net = out.test("virtio-net")
    assert (net["dns_name"], net["dns_ip"]) == ("foo.lan", "10.0.2.2")  # --dns-host comes first
    assert services.log.count(f"GET {HTTP_PATH}") == 2  # before the flap and after it


@pytest.mark.qemu
@pytest.mark.slow
def test_host_coordinated_tests_time_out_when_the_host_does_nothing(no_host_boot: Background) -> None:
    out = no_host_boot.result(timeout=480)
    print(f"\nno-host boot to RESULT: {out.seconds:.1f} s")
    for name in ("virtio-blk-resize", "virtio-input-events", "virtio-input-media-keys", "virtio-input-tablet-events",
                 "virtio-net-link-flap"):
        assert out.ready(name)
    resize = out.test("virtio-blk-resize")
    assert (resize.status, resize["reason"], resize["err"], resize["disk"]) == ("FAIL", "timeout", "1460", "0")
    assert resize["last_bytes"] == resize["old_bytes"]
    ev = out.test("virtio-input-events")
    assert (ev.status, ev["reason"], ev["err"], ev["kbd_a_down"], ev["mouse_move"]) == \
        ("FAIL", "timeout", "1460", "0", "0")
    assert out.test("virtio-input-wheel").line.split("|")[3:6] == ["SKIP", "input_events_failed", "reason=timeout"]
    for name in ("virtio-input-events-modifiers", "virtio-input-events-buttons", "virtio-input-events-wheel",
                 "virtio-input-media-keys", "virtio-input-tablet-events"):
        assert (out.test(name).status, out.test(name)["reason"]) == ("FAIL", "timeout"), name
    flap = out.test("virtio-net-link-flap")
    assert (flap.status, flap["reason"]) == ("FAIL", "timeout_waiting_link_down") and int(flap["down_wait_ms"]) >= 29000
    # Nothing else failed: the resets and the LEDs need no host, the net test goes on after the flap.
    assert out.test("virtio-blk-reset").status == out.test("virtio-input-led").status == "PASS"
    assert out.test("virtio-net").status == "PASS"
    assert out.result == "FAIL"


def main(argv: Sequence[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("image", type=Path)
    ap.add_argument("--layout", choices=("contract", "transitional", "intx"), default="contract")
    ap.add_argument("--guest-args", default="")
    ap.add_argument("--act", action="store_true")
    ap.add_argument("--hwheel", action="store_true")
    ap.add_argument("--dns", action="append", default=[], help="NAME=IP")
    ap.add_argument("--http-port", type=int, default=0)
    ap.add_argument("--udp-port", type=int, default=0)
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    ap.add_argument("--extra", action="append", default=[])
    ap.add_argument("--times", action="store_true", help="prefix each line with when it was seen")
    ap.add_argument("--write-resolv-conf", action="store_true",
                    help="no mount namespace: overwrite /etc/resolv.conf (only in a throwaway container)")
    a = ap.parse_args(argv)
    devices = {"contract": contract_devices, "transitional": transitional_devices,
               "intx": lambda: contract_devices(vectors=0)}[a.layout]()  # fmt: skip
    devices += a.extra
    with tempfile.TemporaryDirectory() as tmp:
        dns = dict(d.split("=", 1) for d in a.dns) if a.dns else {"host.lan": "10.0.2.2"}
        services = HostServices(dns, a.http_port, a.udp_port)
        if a.write_resolv_conf:
            Path("/etc/resolv.conf").write_text(f"nameserver {services.dns_addr}\n")
        out = run_scenario(a.qemu, a.image, devices, Path(tmp), guest_args=a.guest_args, act=a.act,
                           hwheel=a.hwheel, services=services, private_resolv=not a.write_resolv_conf)  # fmt: skip
        for line in out.lines:
            print(f"{out.times.get(line, 0):6.1f} {line}" if a.times else line)
        print(f"# RESULT after {out.seconds:.1f}s; alive after: {out.alive_after_result}; actions {out.actions} "
              f"{out.action_errors}; http {out.services.log}; udp {out.services.udp_sizes}; "
              f"dns {out.services.dns_queries}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
