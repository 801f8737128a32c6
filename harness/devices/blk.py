"""virtio-blk: the guest's boot disk.

Contract layout: ``virtio-blk-pci,disable-legacy=on`` (1AF4:1042, revision 01) with one request
queue of 128 descriptors, which is all the Aero miniport accepts. Transitional layout: QEMU's
default 1AF4:1001. The drive is ``-drive if=none,id=disk0`` in both, so QMP ``block_resize`` can
address it.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.devices.base import (
    Board,
    ConfigCheck,
    Device,
    DriverNeeds,
    ExpectedFunction,
    add_vectors_argument,
    flag,
    msix_rule,
    required,
)
from harness.disk import GuestDisk
from harness.errors import ExitCode, UsageError
from harness.qemu.cmdline import opts
from harness.rules import CheckRule, MarkerRule, nonzero, order_of
from harness.verdict import Failure, GuestReport, Rule, Verdict

if TYPE_CHECKING:
    from harness.actions import Reaction

DRIVE_ID = "disk0"  # the -drive id, also what QMP block_resize names
DEVICE_ID = "blk0"
CONTRACT_QUEUE_SIZE = 128
CONTRACT_ID, TRANSITIONAL_ID = 0x1042, 0x1001
# The Aero blk miniport (virtio_pci_modern_miniport.c at upstream HEAD) refuses virtio capabilities
# outside BAR0, where contract v1 puts them; QEMU puts them in BAR4.
AERO_DRIVER_NEEDS = DriverNeeds(
    registers_in_bar0=True,
    consequence="Windows cannot read its boot disk and stops with bugcheck 0x7B (a QEMU exit under -no-reboot)",
    explains=("QEMU_EXITED", "TIMEOUT"))  # the boot disk: the guest never gets to say anything
DEFAULT_RESIZE_DELTA_MIB = 64
MAX_RESIZE_DELTA_MIB = 1 << 20  # 1 TiB: more is a typo, not a test


@dataclass(frozen=True)
class Blk(Device):
    family = "virtio-blk"
    short = "blk"
    vectors: int | None = None
    with_resize: bool = False
    resize_delta_mib: int = DEFAULT_RESIZE_DELTA_MIB
    with_reset: bool = False
    require_msix: bool = False
    require_expect_msi: bool = False
    require_no_recovery: bool = False
    fail_on_recovery: bool = False
    require_no_reset_recovery: bool = False
    fail_on_reset_recovery: bool = False
    require_no_miniport_flags: bool = False
    fail_on_miniport_flags: bool = False
    bootindex: int = 0  # the disk boots first in a run; Windows Setup boots its CD first (install)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("virtio-blk")
        add_vectors_argument(g, "blk", "virtio-blk disk")
        flag(g, "--with-blk-resize", "--with-virtio-blk-resize", "--require-virtio-blk-resize",
             "--enable-virtio-blk-resize",
             help="grow the disk over QMP (block_resize) when the guest says virtio-blk-resize|READY; the "
                  "guest's virtio-blk-resize test must PASS (provision the image with --test-blk-resize)")
        g.add_argument("--blk-resize-delta-mib", type=int, default=DEFAULT_RESIZE_DELTA_MIB, metavar="MIB",
                       help="how much --with-blk-resize grows the disk (default: %(default)s)")
        flag(g, "--with-blk-reset", "--with-virtio-blk-reset", "--require-virtio-blk-reset",
             "--enable-virtio-blk-reset",
             help="the guest's virtio-blk-reset test must PASS (provision the image with --test-blk-reset)")
        flag(g, "--require-virtio-blk-msix", "--require-blk-msix",
             help="the guest's virtio-blk-msix marker must report mode=msix")
        flag(g, "--require-expect-blk-msi",
             help="the guest must have been provisioned with --expect-blk-msi (CONFIG expect_blk_msi=1)")
        flag(g, "--require-no-blk-recovery",
             help="fail when any virtio-blk recovery counter (abort, reset_device, reset_bus, pnp, ioctl_reset) is "
                  "non-zero")
        flag(g, "--fail-on-blk-recovery", help="fail when abort, reset_device or reset_bus is non-zero")
        flag(g, "--require-no-blk-reset-recovery",
             help="fail when reset_detected or hw_reset_bus (virtio-blk-reset-recovery) is non-zero")
        flag(g, "--fail-on-blk-reset-recovery", help="fail when hw_reset_bus is non-zero")
        flag(g, "--require-no-blk-miniport-flags",
             help="fail when a miniport flag (removed, surprise_removed, reset_in_progress, reset_pending) is set")
        flag(g, "--fail-on-blk-miniport-flags", help="fail when removed or surprise_removed is set")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Blk:
        return cls(vectors=args.virtio_blk_vectors, with_resize=args.with_blk_resize,
                   resize_delta_mib=args.blk_resize_delta_mib, with_reset=args.with_blk_reset,
                   require_msix=args.require_virtio_blk_msix, require_expect_msi=args.require_expect_blk_msi,
                   require_no_recovery=args.require_no_blk_recovery, fail_on_recovery=args.fail_on_blk_recovery,
                   require_no_reset_recovery=args.require_no_blk_reset_recovery,
                   fail_on_reset_recovery=args.fail_on_blk_reset_recovery,
                   require_no_miniport_flags=args.require_no_blk_miniport_flags,
                   fail_on_miniport_flags=args.fail_on_blk_miniport_flags)

    def check(self, board: Board) -> None:
        super().check(board)
        if not 0 < self.resize_delta_mib <= MAX_RESIZE_DELTA_MIB:  # with or without the resize
            raise UsageError(f"--blk-resize-delta-mib must be between 1 and {MAX_RESIZE_DELTA_MIB}, "
                             f"not {self.resize_delta_mib}")
        if self.with_resize:
            if board.disk.mode.value == "in-place":
                raise UsageError("--with-blk-resize and --write-to-image exclude each other: the resize would grow "
                                 "your image itself")
        if self.require_msix and board.disable_msix:
            raise UsageError("--virtio-disable-msix and --require-virtio-blk-msix exclude each other")

    # -- QEMU -----------------------------------------------------------------------------------------
    def qemu_args(self, board: Board, written: Mapping[Path, Path]) -> list[str]:
        props: dict[str, object] = {"drive": DRIVE_ID, "id": DEVICE_ID, "bootindex": self.bootindex}
        if board.contract:
            props.update({"disable-legacy": True, "queue-size": CONTRACT_QUEUE_SIZE, "num-queues": 1})
        return ["-drive", drive_option(board.disk), *self.device_arg(board, "virtio-blk-pci", props)]

    def pci(self, board: Board) -> list[ExpectedFunction]:
        if not board.contract:
            return [ExpectedFunction(DEVICE_ID, self.family, (TRANSITIONAL_ID,))]
        return [ExpectedFunction(DEVICE_ID, self.family, (CONTRACT_ID,), needs=AERO_DRIVER_NEEDS)]

    def provisioning(self) -> list[str]:
        return [f for f, on in (("--test-blk-resize", self.with_resize), ("--test-blk-reset", self.with_reset),
                                ("--expect-blk-msi", self.require_expect_msi)) if on]

    def reactions(self, board: Board) -> Sequence[Reaction]:
        if not self.with_resize:
            return []
        from harness.actions import blk_resize_reaction

        return [blk_resize_reaction(DRIVE_ID, self.resize_delta_mib)]

    # -- the verdict ----------------------------------------------------------------------------------
    def rules(self, board: Board) -> Sequence[Rule]:
        rules: list[Rule] = [required(self.family, board, keys=(
            "write_ok", "flush_ok", "read_ok", "write_bytes", "read_bytes", "irq_mode", "irq_message_count"))]
        if self.with_resize:
            rules.append(MarkerRule("virtio-blk-resize", "--with-blk-resize", provision="--test-blk-resize"))
        if self.with_reset:
            rules.append(MarkerRule("virtio-blk-reset", "--with-blk-reset", provision="--test-blk-reset"))
        if self.require_msix:
            rules.append(msix_rule(self.family, "--require-virtio-blk-msix"))
        if self.require_expect_msi:
            rules.append(CheckRule("CONFIG expect_blk_msi=1", _expect_msi))
        gates = ((self.require_no_recovery, _no_recovery), (self.fail_on_recovery, _recovery_detected),
                 (self.require_no_reset_recovery, _no_reset_recovery),
                 (self.fail_on_reset_recovery, _reset_recovery_detected),
                 (self.require_no_miniport_flags, _no_miniport_flags),
                 (self.fail_on_miniport_flags, _miniport_removed))
        rules += [CheckRule(check.__name__.strip("_"), check) for on, check in gates if on]
        return rules

    def config_checks(self, board: Board) -> Sequence[ConfigCheck]:
        return [_expect_msi_at_config] if self.require_expect_msi else []


def drive_option(disk: GuestDisk) -> str:
    return opts(None, {"file": disk.file, "if": "none", "id": DRIVE_ID, "format": disk.format,
                       "snapshot": True if disk.snapshot else None})


# -- CONFIG -----------------------------------------------------------------------------------------

_NOT_PROVISIONED = ("the guest selftest was not provisioned with --expect-blk-msi (CONFIG expect_blk_msi={}); "
                    "re-provision the image with --expect-blk-msi")


def _expect_msi_at_config(config: dict[str, str]) -> Verdict | None:
    if config.get("expect_blk_msi") == "0":
        return Verdict("EXPECT_BLK_MSI_NOT_SET", ExitCode.FAIL, _NOT_PROVISIONED.format("0"))
    return None


def _expect_msi(report: GuestReport) -> Failure | None:
    value = report.config.get("expect_blk_msi")
    if value == "1":
        return None
    return Failure("EXPECT_BLK_MSI_NOT_SET", _NOT_PROVISIONED.format(value if value is not None else "missing"), 0)


# -- recovery and miniport gates (counters from the guest's markers and diagnostic lines) -------------

_SRB = ("abort_srb", "reset_device_srb", "reset_bus_srb", "pnp_srb", "ioctl_reset")
_COUNTERS = ("abort", "reset_device", "reset_bus", "pnp", "ioctl_reset")


def _fields(report: GuestReport, marker: str) -> dict[str, str] | None:
    """A marker's fields, unless it is missing or SKIP (the guest could not tell)."""
    outcome = report.tests.get(marker)
    if outcome is None or outcome.status.value == "SKIP":
        return None
    return outcome.fields


def _listed(values: dict[str, int], keys: tuple[str, ...] | None = None) -> str:
    return " ".join(f"{k}={v}" for k, v in values.items() if keys is None or k in keys)


def _no_recovery(report: GuestReport) -> Failure | None:
    blk = report.tests.get("virtio-blk")
    values = nonzero(blk.fields, _SRB) if blk else None
    if values is None:
        counters = _fields(report, "virtio-blk-counters")
        found = nonzero(counters, _COUNTERS) if counters is not None else None
        values = None if found is None else dict(zip(_SRB, found.values(), strict=False))
    if values is None or not any(values.values()):
        return None
    return Failure("VIRTIO_BLK_RECOVERY_NONZERO", f"virtio-blk recovery counters: {_listed(values)}",
                   order_of(report, "virtio-blk-counters", "virtio-blk"))


def _recovery_detected(report: GuestReport) -> Failure | None:
    keys = ("abort", "reset_device", "reset_bus")
    if "virtio-blk-counters" in report.tests:
        counters = _fields(report, "virtio-blk-counters")
        values = nonzero(counters, keys) if counters is not None else None
    else:
        blk = report.tests.get("virtio-blk")
        legacy = nonzero(blk.fields, _SRB[:3]) if blk else None
        values = None if legacy is None else dict(zip(keys, legacy.values(), strict=False))
    if values is None or not any(values.values()):
        return None
    return Failure("VIRTIO_BLK_RECOVERY_DETECTED", f"virtio-blk recovery detected: {_listed(values)}",
                   order_of(report, "virtio-blk-counters", "virtio-blk"))


def _reset_recovery(report: GuestReport) -> dict[str, int] | None:
    keys = ("reset_detected", "hw_reset_bus")
    fields = _fields(report, "virtio-blk-reset-recovery")
    if fields is None:
        diag = report.diags.get("virtio-blk-miniport-reset-recovery")
        fields = diag.fields if diag is not None and diag.level == "INFO" else None
    return nonzero(fields, keys) if fields is not None else None


def _no_reset_recovery(report: GuestReport) -> Failure | None:
    values = _reset_recovery(report)
    if values is None or not any(values.values()):
        return None
    return Failure("VIRTIO_BLK_RESET_RECOVERY_NONZERO", f"virtio-blk reset recovery: {_listed(values)}",
                   order_of(report, "virtio-blk-reset-recovery"))


def _reset_recovery_detected(report: GuestReport) -> Failure | None:
    values = _reset_recovery(report)
    if values is None or not values["hw_reset_bus"]:
        return None
    return Failure("VIRTIO_BLK_RESET_RECOVERY_DETECTED", f"virtio-blk hardware bus reset: {_listed(values)}",
                   order_of(report, "virtio-blk-reset-recovery"))


_FLAGS = ("raw", "removed", "surprise_removed", "reset_in_progress", "reset_pending")


def _miniport_flags(report: GuestReport) -> dict[str, int] | None:
    diag = report.diags.get("virtio-blk-miniport-flags")
    return nonzero(diag.fields, _FLAGS) if diag is not None and diag.level == "INFO" else None


def _no_miniport_flags(report: GuestReport) -> Failure | None:
    values = _miniport_flags(report)
    if values is None or not any(values[k] for k in _FLAGS[1:]):
        return None
    return Failure("VIRTIO_BLK_MINIPORT_FLAGS_NONZERO",
                   f"virtio-blk miniport flags: raw=0x{values['raw']:08x} {_listed(values, _FLAGS[1:])}",
                   report.diags["virtio-blk-miniport-flags"].seq)


def _miniport_removed(report: GuestReport) -> Failure | None:
    values = _miniport_flags(report)
    if values is None or not (values["removed"] or values["surprise_removed"]):
        return None
    return Failure("VIRTIO_BLK_MINIPORT_FLAGS_REMOVED",
                   f"virtio-blk miniport reports the disk removed: raw=0x{values['raw']:08x} "
                   f"{_listed(values, _FLAGS[1:3])}", report.diags["virtio-blk-miniport-flags"].seq)

