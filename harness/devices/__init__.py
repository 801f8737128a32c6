"""The virtio device families, one module each (blk, net, input, snd), and the set a run attaches.

Adding a device family means a module with a ``Device`` subclass and one entry in ``FAMILIES``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from harness.devices.base import Board, Device, ExpectedFunction, Layout, Output
from harness.devices.blk import Blk
from harness.devices.input import Input
from harness.devices.irq import irq_mode_rule
from harness.devices.net import Net
from harness.devices.snd import Snd
from harness.verdict import Rule

if TYPE_CHECKING:
    from harness.actions import Reaction
    from harness.devices.base import ConfigCheck, ConfigHint

# In the order the real guest tests them (blk, input, snd, net): the order of their QEMU arguments,
# and of their rules (when several markers are missing, the first in this order is named).
FAMILIES: tuple[type[Device], ...] = (Blk, Input, Snd, Net)

__all__ = ["FAMILIES", "Board", "Device", "DeviceSet", "ExpectedFunction", "Layout", "add_arguments",
           "default_devices", "devices_from_args"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for family in FAMILIES:
        family.add_arguments(parser)


def devices_from_args(args: argparse.Namespace) -> tuple[Device, ...]:
    return tuple(family.from_args(args) for family in FAMILIES)


def default_devices() -> tuple[Device, ...]:
    return tuple(family() for family in FAMILIES)  # every field of every family has a default


@dataclass(frozen=True)
class DeviceSet:
    """The families of one run on its board."""

    devices: tuple[Device, ...]
    board: Board
    require_irq: str | None = None  # "intx" / "msi": --require-intx / --require-msi

    def check(self) -> None:
        for device in self.devices:
            device.check(self.board)

    def attached(self) -> list[Device]:
        return [d for d in self.devices if d.attached(self.board)]

    def get(self, kind: type[Device]) -> Device:
        return next(d for d in self.devices if isinstance(d, kind))

    def qemu_outputs(self) -> list[Path]:
        return [path for d in self.attached() for path in d.qemu_outputs(self.board)]

    def qemu_args(self, written: Mapping[Path, Path]) -> list[str]:
        return [arg for d in self.attached() for arg in d.qemu_args(self.board, written)]

    def startup_commands(self, written: Mapping[Path, Path]) -> list[tuple[str, dict[str, Any]]]:
        return [c for d in self.attached() for c in d.startup_commands(self.board, written)]

    def pci(self) -> list[ExpectedFunction]:
        return [f for d in self.attached() for f in d.pci(self.board)]

    def rules(self) -> list[Rule]:
        rules = [rule for d in self.devices for rule in d.rules(self.board)]
        if self.require_irq in ("intx", "msi"):
            want: Literal["intx", "msi"] = "intx" if self.require_irq == "intx" else "msi"
            rules.append(irq_mode_rule(want, [d.irq_markers() for d in self.attached()]))
        return rules

    def config_checks(self) -> list[ConfigCheck]:
        return [c for d in self.devices for c in d.config_checks(self.board)]

    def config_hints(self) -> list[ConfigHint]:
        return [h for d in self.devices for h in d.config_hints(self.board)]

    def reactions(self) -> list[Reaction]:
        return [r for d in self.attached() for r in d.reactions(self.board)]

    def outputs(self) -> list[Output]:
        return [o for d in self.devices for o in d.outputs(self.board.out_dir)]

    def provisioning(self) -> list[str]:
        return [flag for d in self.devices for flag in d.provisioning()]

    def required_markers(self) -> list[str]:
        from harness.rules import MarkerRule

        return [r.marker for r in self.rules() if isinstance(r, MarkerRule)]

    def skip_allowed(self) -> list[str]:
        """The required markers for which the guest's SKIP passes too (sound without the flag)."""
        from harness.rules import MarkerRule

        return [r.marker for r in self.rules() if isinstance(r, MarkerRule) and r.accept_skip]

    def changes_a_pass_after_exit(self) -> bool:
        return any(d.changes_a_pass_after_exit(self.board) for d in self.devices)


def families_named(names: Sequence[str]) -> list[type[Device]]:
    return [f for f in FAMILIES if f.family in names]
