"""The QEMU command line of a harness run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.disk import GuestDisk
from harness.qemu.cmdline import opts

MACHINE = "pc"
SND_DEVICE = "virtio-sound-pci"
SND_MIN_VERSION = (8, 2, 0)


@dataclass(frozen=True)
class SoundSpec:
    backend: Literal["none", "wav"]
    wav_path: Path | None = None


@dataclass(frozen=True)
class QemuSpec:
    qemu: str
    accel: Literal["kvm", "tcg"] | Literal["auto"]
    memory_mb: int
    smp: int
    disk: GuestDisk
    serial_socket: Path
    qmp_socket: Path
    sound: SoundSpec | None = None
    extra: tuple[str, ...] = field(default_factory=tuple)


def _accel_args(accel: str) -> list[str]:
    if accel == "auto":  # only in --dry-run, where nothing is probed: QEMU's own fallback order
        return ["-accel", "kvm", "-accel", "tcg"]
    return ["-accel", accel]


def build_argv(spec: QemuSpec) -> list[str]:
    """The full argument list, QEMU binary first; the user's extra arguments go last."""
    argv = [
        spec.qemu,
        "-name", "aero-win7-harness",
        "-machine", MACHINE,
        *_accel_args(spec.accel),
        "-m", str(spec.memory_mb),
        "-smp", str(spec.smp),
        "-nodefaults",
        "-vga", "std",  # kept for QMP screendump: a bugcheck shows on screen, not on COM1
        "-display", "none",
        "-no-reboot",  # a guest reboot or bugcheck auto-restart ends the run at once
        "-chardev", opts("socket", id="com1", path=spec.serial_socket, server=False),
        "-serial", "chardev:com1",
        "-chardev", opts("socket", id="qmp", path=spec.qmp_socket, server=False),
        "-mon", "chardev=qmp,mode=control",
        "-drive", _drive_option(spec.disk),
        "-device", "virtio-blk-pci,drive=disk0,bootindex=0",
        "-netdev", "user,id=net0",
        "-device", "virtio-net-pci,netdev=net0",
    ]
    if spec.sound is not None:
        argv += ["-audiodev", _audiodev_option(spec.sound), "-device", f"{SND_DEVICE},audiodev=snd0"]
    argv += list(spec.extra)
    return argv


def _drive_option(disk: GuestDisk) -> str:
    return opts(None, {"file": disk.file, "if": "none", "id": "disk0", "format": disk.format,
                       "snapshot": True if disk.snapshot else None})


def _audiodev_option(sound: SoundSpec) -> str:
    if sound.backend == "wav":
        assert sound.wav_path is not None
        return opts("wav", id="snd0", path=sound.wav_path)
    return opts("none", id="snd0")
