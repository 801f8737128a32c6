"""Building QEMU's command line: escaping, each layout and flag, sound, extra arguments, --dry-run."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from harness.devices import DeviceSet
from harness.disk import GuestDisk, WriteMode
from harness.qemu.cmdline import escape_value, opts
from harness.qemu.command import QemuSpec, build_argv
from tests.conftest import harness_argv
from tests.rulesets import device_set


def spec(tmp: Path, *flags: str, disk: GuestDisk | None = None, **kw: object) -> QemuSpec:
    devices = device_set(*flags)
    disk = disk or GuestDisk(tmp / "a dir, with comma" / "win7.qcow2", "qcow2", snapshot=False,
                             mode=WriteMode.OVERLAY)
    devices = DeviceSet(devices.devices, replace(devices.board, disk=disk, out_dir=tmp / "out"), devices.require_irq)
    values: dict[str, object] = dict(qemu="/usr/bin/qemu-system-x86_64", accel="tcg", memory_mb=2048, smp=2,
                                     serial_socket=tmp / "com1.sock", qmp_socket=tmp / "qmp.sock", devices=devices)
    values.update(kw)
    return QemuSpec(**values)  # type: ignore[arg-type]


def option_after(argv: list[str], flag: str, contains: str) -> str:
    return next(argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag and contains in argv[i + 1])


def devices_of(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-device"]


def test_commas_are_doubled_and_spaces_kept(tmp_path: Path) -> None:
    argv = build_argv(spec(tmp_path))
    drive = option_after(argv, "-drive", "disk0")
    assert f"file={tmp_path}/a dir,, with comma/win7.qcow2," in drive
    assert drive.endswith(",if=none,id=disk0,format=qcow2")
    assert "snapshot" not in drive
    assert escape_value("a,b,,c") == "a,,b,,,,c"
    assert opts("wav", id="snd0", path="/x,y z.wav") == "wav,id=snd0,path=/x,,y z.wav"
    with pytest.raises(ValueError):
        escape_value("line\nbreak")


def test_the_contract_layout_is_the_default(tmp_path: Path) -> None:
    argv = build_argv(spec(tmp_path, accel="kvm", memory_mb=1024, smp=4))
    joined = " ".join(argv)
    assert argv[0] == "/usr/bin/qemu-system-x86_64"
    for expected in ("-accel kvm", "-m 1024", "-smp 4", "-display none", "-no-reboot", "-serial chardev:com1",
                     "-mon chardev=qmp,mode=control", "-netdev user,id=net0", " -S "):
        assert expected in joined
    assert devices_of(argv) == [
        "VGA,id=vga0",
        "virtio-blk-pci,drive=disk0,id=blk0,bootindex=0,disable-legacy=on,queue-size=128,num-queues=1",
        "virtio-keyboard-pci,id=kbd0,display=vga0",
        "virtio-mouse-pci,id=mouse0,display=vga0",
        "virtio-net-pci,netdev=net0,id=nic0,disable-legacy=on",
    ]
    assert option_after(argv, "-chardev", "com1") == f"socket,id=com1,path={tmp_path}/com1.sock,server=off"
    assert "-audiodev" not in argv and "-vga" not in argv


def test_the_transitional_layout_is_the_seeds(tmp_path: Path) -> None:
    argv = build_argv(spec(tmp_path, "--virtio-transitional"))
    assert devices_of(argv) == ["VGA,id=vga0", "virtio-blk-pci,drive=disk0,id=blk0,bootindex=0",
                                "virtio-net-pci,netdev=net0,id=nic0"]
    assert build_argv(spec(tmp_path, "--virtio-layout", "transitional")) == argv


def test_a_tablet_gets_a_display_of_its_own(tmp_path: Path) -> None:
    argv = devices_of(build_argv(spec(tmp_path, "--with-virtio-tablet")))
    assert argv[-3:-1] == ["secondary-vga,id=vga1", "virtio-tablet-pci,id=tablet0,display=vga1"]


@pytest.mark.parametrize(("flags", "vectors"), [
    (("--virtio-msix-vectors", "8"), {"blk0": "8", "nic0": "8", "kbd0": "8", "mouse0": "8"}),
    (("--virtio-msix-vectors", "8", "--virtio-net-vectors", "3"), {"blk0": "8", "nic0": "3", "kbd0": "8"}),
    (("--virtio-blk-msix-vectors", "2",), {"blk0": "2", "nic0": None}),
    (("--virtio-disable-msix",), {"blk0": "0", "nic0": "0", "kbd0": "0", "mouse0": "0"}),
    (("--force-intx",), {"blk0": "0", "nic0": "0"}),
    (("--intx-only", "--enable-virtio-snd"), {"snd0": "0", "blk0": "0"}),
])
def test_interrupt_vectors(tmp_path: Path, flags: tuple[str, ...], vectors: dict[str, str | None]) -> None:
    found = {}
    for device in devices_of(build_argv(spec(tmp_path, *flags))):
        props = dict(p.split("=", 1) for p in device.split(",")[1:] if "=" in p)
        if "id" in props:
            found[props["id"]] = props.get("vectors")
    for qdev, want in vectors.items():
        assert found[qdev] == want, (qdev, found)


def test_snapshot_mode(tmp_path: Path) -> None:
    disk = GuestDisk(tmp_path / "base.img", "raw", snapshot=True, mode=WriteMode.SNAPSHOT)
    assert option_after(build_argv(spec(tmp_path, disk=disk)), "-drive", "disk0").endswith(",format=raw,snapshot=on")


@pytest.mark.parametrize("flags", [
    ("--enable-virtio-snd",),
    ("--enable-virtio-snd", "--virtio-snd-audio-backend", "wav", "--virtio-snd-wav-path", "/out dir/a,b.wav"),
])
def test_the_sound_device_always_has_both_directions(tmp_path: Path, flags: tuple[str, ...]) -> None:
    """QEMU's wav driver has no input (the guest's capture test would fail on it): the audiodev is
    always ``none``, and the wav backend's recording is QEMU's capture of that audiodev."""
    argv = build_argv(spec(tmp_path, *flags))
    assert argv[argv.index("-audiodev") + 1] == "none,id=audio0"
    assert "virtio-sound-pci,audiodev=audio0,id=snd0" in argv


def test_the_capture_is_written_under_the_name_it_is_given_and_quoted_for_hmp(tmp_path: Path) -> None:
    final, fresh = Path("/out/virtio-snd.wav"), Path('/out dir/"q"\\.virtio-snd.wav.x1y2.partial')
    flags = ("--enable-virtio-snd", "--virtio-snd-audio-backend", "wav", "--virtio-snd-wav-path", str(final))
    commands = spec(tmp_path, *flags).devices.startup_commands({final: fresh})
    assert commands == [("human-monitor-command", {
        "command-line": 'wavcapture "/out dir/\\"q\\"\\\\.virtio-snd.wav.x1y2.partial" audio0 48000 16 2'})]
    assert spec(tmp_path, "--enable-virtio-snd").devices.startup_commands({}) == []


def test_extra_arguments_come_last_and_the_preflight_pauses(tmp_path: Path) -> None:
    argv = build_argv(spec(tmp_path, extra=("-cpu", "max", "-device", "virtio-rng-pci")))
    assert argv[-4:] == ["-cpu", "max", "-device", "virtio-rng-pci"]
    assert "-S" in argv and "-S" not in build_argv(spec(tmp_path, paused=False))


def test_auto_accel_in_dry_run_lists_qemus_own_fallback(tmp_path: Path) -> None:
    argv = build_argv(spec(tmp_path, accel="auto"))
    assert argv[argv.index("-accel"):][:4] == ["-accel", "kvm", "-accel", "tcg"]


@pytest.mark.parametrize("flag", ["--dry-run", "--print-qemu", "--print-qemu-cmd"])
def test_dry_run_prints_the_command_and_starts_nothing(qemu: str, tmp_path: Path, make_guest, flag: str) -> None:
    image = make_guest(b"unused\r\n", name="my image, v2.img")
    out = tmp_path / "out dir"
    proc = subprocess.run(harness_argv("--disk-image", image, flag, "--accel", "tcg", "--out-dir", out,
                                       "--snapshot", "--", "-cpu", "max"),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    json_line, line = proc.stdout.strip().splitlines()[-2:]
    argv = json.loads(json_line)
    assert argv[0].endswith("qemu-system-x86_64") and argv[-2:] == ["-cpu", "max"]
    assert "'file=" in line and "my image,, v2.img" in line and "snapshot=on" in line
    assert line.endswith("-cpu max")
    assert not out.exists()  # nothing was created, nothing booted
