"""Building QEMU's command line: escaping, devices, sound, extra arguments, --dry-run."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.disk import GuestDisk, WriteMode
from harness.qemu.cmdline import escape_value, opts
from harness.qemu.command import QemuSpec, SoundSpec, build_argv
from tests.conftest import harness_argv


def spec(tmp: Path, **kw: object) -> QemuSpec:
    disk = kw.pop("disk", GuestDisk(tmp / "a dir, with comma" / "win7.qcow2", "qcow2", snapshot=False,
                                    mode=WriteMode.OVERLAY))
    values: dict[str, object] = dict(qemu="/usr/bin/qemu-system-x86_64", accel="tcg", memory_mb=2048, smp=2,
                                     disk=disk, serial_socket=tmp / "com1.sock", qmp_socket=tmp / "qmp.sock")
    values.update(kw)
    return QemuSpec(**values)  # type: ignore[arg-type]


def option_after(argv: list[str], flag: str, contains: str) -> str:
    return next(argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag and contains in argv[i + 1])


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


def test_devices_and_run_policy(tmp_path: Path) -> None:
    argv = build_argv(spec(tmp_path, accel="kvm", memory_mb=1024, smp=4))
    joined = " ".join(argv)
    assert argv[0] == "/usr/bin/qemu-system-x86_64"
    for expected in ("-accel kvm", "-m 1024", "-smp 4", "-display none", "-no-reboot", "-serial chardev:com1",
                     "virtio-blk-pci,drive=disk0,bootindex=0", "-netdev user,id=net0",
                     "virtio-net-pci,netdev=net0", "-mon chardev=qmp,mode=control"):
        assert expected in joined
    assert option_after(argv, "-chardev", "com1") == f"socket,id=com1,path={tmp_path}/com1.sock,server=off"
    assert "virtio-sound-pci" not in joined and "-audiodev" not in argv


def test_snapshot_mode(tmp_path: Path) -> None:
    disk = GuestDisk(tmp_path / "base.img", "raw", snapshot=True, mode=WriteMode.SNAPSHOT)
    assert option_after(build_argv(spec(tmp_path, disk=disk)), "-drive", "disk0").endswith(",format=raw,snapshot=on")


@pytest.mark.parametrize(("sound", "audiodev"), [
    (SoundSpec("none"), "none,id=snd0"),
    (SoundSpec("wav", Path("/out dir/a,b.wav")), "wav,id=snd0,path=/out dir/a,,b.wav"),
])
def test_sound_device(tmp_path: Path, sound: SoundSpec, audiodev: str) -> None:
    argv = build_argv(spec(tmp_path, sound=sound))
    assert argv[argv.index("-audiodev") + 1] == audiodev
    assert "virtio-sound-pci,audiodev=snd0" in argv


def test_extra_arguments_come_last(tmp_path: Path) -> None:
    argv = build_argv(spec(tmp_path, extra=("-cpu", "max", "-device", "virtio-rng-pci")))
    assert argv[-4:] == ["-cpu", "max", "-device", "virtio-rng-pci"]


def test_auto_accel_in_dry_run_lists_qemus_own_fallback(tmp_path: Path) -> None:
    argv = build_argv(spec(tmp_path, accel="auto"))
    assert argv[argv.index("-accel"):][:4] == ["-accel", "kvm", "-accel", "tcg"]


def test_dry_run_prints_the_command_and_starts_nothing(qemu: str, tmp_path: Path, make_guest) -> None:
    image = make_guest(b"unused\r\n", name="my image, v2.img")
    out = tmp_path / "out dir"
    proc = subprocess.run(harness_argv("--disk-image", image, "--dry-run", "--accel", "tcg", "--out-dir", out,
                                       "--snapshot", "--", "-cpu", "max"),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    assert "'file=" in line and "my image,, v2.img" in line and "snapshot=on" in line
    assert line.endswith("-cpu max")
    assert not out.exists()  # nothing was created, nothing booted
