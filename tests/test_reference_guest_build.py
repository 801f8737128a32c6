"""The Linux reference guest's builder: its knobs, its cpio writer, and the image it makes.

Booting the guest under real QEMU (its vocabulary, the binding rules, the host-coordinated tests) is
tested in test_reference_guest_vocabulary.py, and through the harness in test_reference_guest_e2e.py.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
from pathlib import Path

import pytest

from tests.refguest import HTTP_PATH, PATTERN, Built, fat_read, load_builder, raw_copy, read_cpio

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


def test_guest_args_are_baked_as_the_windows_guests_flags() -> None:
    b = load_builder()
    k = b.parse_knobs("http://10.0.2.2:1/p", 2, True, ["--dns-host foo.lan", "--test-input-events", "--blk-root",
                                                       "D:\\aero-test\\"])  # fmt: skip
    assert k.guest_args == ("--dns-host", "foo.lan", "--test-input-events", "--blk-root", "D:\\aero-test\\")
    assert k.guest_words == ["--http-url", "http://10.0.2.2:1/p", "--udp-port", "2", "--require-snd", *k.guest_args]
    assert "AERO_GUEST_ARGS='--http-url http://10.0.2.2:1/p --udp-port 2 --require-snd --dns-host foo.lan" in \
        b.config_text(k, "id", "6.12")
    for bad in ("--dns-host 'x'", "--a|b", '--x "y"'):
        with pytest.raises(b.BuildError):
            b.parse_knobs("http://10.0.2.2/x", 1, False, [bad])
    assert b.parse_args(["--guest-arg=--test-net-link-flap", "--guest-arg", "--x y"]).guest_arg == [
        "--test-net-link-flap", "--x y"]


def test_every_guest_file_goes_into_the_image() -> None:
    b = load_builder()
    assert sorted(p.name for p in b.GUEST_DIR.iterdir()) == sorted(b.GUEST_FILES)


def test_builder_defaults_match_the_protocol() -> None:
    b = load_builder()
    args = b.parse_args([])
    assert args.http_url == "http://10.0.2.2:18080/aero-virtio-selftest"
    assert args.udp_port == 18081
    assert args.require_snd is False
    assert args.guest_arg == []
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
    for module in ("qemu_fw_cfg", "virtio_blk", "virtio_net", "virtio_input", "evdev", "vfat"):
        assert any(p.endswith(f"/{module}.ko") for p in kernel["modules_base"]), module
    knobs = m["knobs"]
    assert isinstance(knobs, dict) and knobs["guest_args"] == []
    assert knobs["selftest_args"][:2] == ["--http-url", knobs["http_url"]]


@pytest.mark.qemu
@pytest.mark.slow
def test_image_holds_kernel_initramfs_and_config(guest: Built, guest_ports: tuple[int, int], tmp_path: Path) -> None:
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
    assert f"AERO_GUEST_ARGS='--http-url http://10.0.2.2:{guest_ports[0]}{HTTP_PATH} --udp-port {guest_ports[1]}'\n" \
        in config
    on_disk = json.loads(fat_read(raw, "/aero/manifest.json"))
    assert on_disk["packages"] == guest.manifest["packages"]

    initrd = fat_read(raw, "/initrd.img")
    assert initrd[:4] == b"\x28\xb5\x2f\xfd"  # zstd
    archive = subprocess.run(["zstd", "-dc"], input=initrd, capture_output=True, check=True).stdout
    entries = read_cpio(archive)
    for name in ("init", "usr/bin/busybox", "usr/bin/socat", "usr/bin/aplay", "usr/share/aero/selftest.sh",
                 "usr/share/aero/options.sh", "usr/share/aero/pci.sh", "usr/share/aero/blk.sh",
                 "usr/share/aero/input.sh", "usr/share/aero/snd.sh", "usr/share/aero/net.sh",
                 "usr/share/aero/udhcpc.script", "usr/lib/x86_64-linux-gnu/libc.so.6",
                 "usr/lib/x86_64-linux-gnu/libasound.so.2", "usr/share/alsa/alsa.conf", "etc/aero/selftest.conf",
                 "dev/console"):  # fmt: skip
        assert name in entries, name
    assert entries["usr/bin/arecord"] == (0o120777, b"aplay")  # aplay records when called arecord
    assert any(n.endswith("/qemu_fw_cfg.ko") for n in entries) and any(n.endswith("/evdev.ko") for n in entries)
    assert entries["etc/aero/selftest.conf"][1].decode() == config
    assert entries["usr/share/aero/pattern-1m.bin"][1] == PATTERN
    assert any(n.endswith("/virtio_blk.ko") for n in entries)


@pytest.mark.qemu
@pytest.mark.slow
def test_second_build_reuses_the_cache(guest_require_snd: Built, tmp_path: Path) -> None:
    cache = guest_require_snd.manifest["cache"]
    assert isinstance(cache, dict)
    assert cache["downloaded"] == [] and cache["extracted"] == [] and cache["warm"] is True
    config = fat_read(raw_copy(guest_require_snd.image, tmp_path), "/aero/selftest.conf").decode()
    assert re.search(r"^AERO_GUEST_ARGS='--http-url \S+ --udp-port \d+ --require-snd'$", config, re.M), config
