"""The QEMU command line of a harness run: the machine, COM1, QMP and the display here; each device
family's arguments from its module (``harness/devices``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.devices import DeviceSet
from harness.devices.base import DISPLAY
from harness.qemu.cmdline import opts

MACHINE = "pc"


@dataclass(frozen=True)
class QemuSpec:
    qemu: str
    accel: Literal["kvm", "tcg"] | Literal["auto"]
    memory_mb: int
    smp: int
    serial_socket: Path
    qmp_socket: Path
    devices: DeviceSet
    written: Mapping[Path, Path] = field(default_factory=dict)  # QEMU's output files -> where it writes them
    paused: bool = True  # -S: the PCI preflight looks at the machine before the guest runs
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
        "-display", "none",
        "-no-reboot",  # a guest reboot or bugcheck auto-restart ends the run at once
        # The primary display, with an id: QMP screendump reads it (a bugcheck shows on screen, not on
        # COM1), and QMP input-send-event addresses the input devices bound to it.
        "-device", opts("VGA", id=DISPLAY),
        "-chardev", opts("socket", id="com1", path=spec.serial_socket, server=False),
        "-serial", "chardev:com1",
        "-chardev", opts("socket", id="qmp", path=spec.qmp_socket, server=False),
        "-mon", "chardev=qmp,mode=control",
    ]
    if spec.paused:
        argv.append("-S")
    argv += spec.devices.qemu_args(spec.written)
    argv += list(spec.extra)
    return argv
