"""Interrupt modes, across the families of a run: contract v1 makes INTx mandatory and MSI-X optional,
and driver developers test both.

The vectors themselves are each family's QEMU property (``vectors=N``; ``--virtio-disable-msix``
is ``vectors=0`` everywhere). This module holds the check across devices: ``--require-intx`` and
``--require-msi`` compare the mode each attached device's guest test reports (its diagnostic line
``virtio-<dev>-irq|INFO|mode=...``, else the marker's ``irq_mode=``) with the one asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from harness.rules import CheckRule, order_of
from harness.verdict import Failure, GuestReport

Family = Literal["intx", "msi"]


def normalised(mode: str | None) -> str | None:
    if mode is None:
        return None
    mode = mode.strip().lower().replace("_", "-")
    return "msix" if mode in ("msi-x", "msix") else mode


def family_of(mode: str | None) -> Family | None:
    if mode == "intx":
        return "intx"
    if mode in ("msi", "msix"):
        return "msi"
    return None


def reported_mode(report: GuestReport, marker: str, diag: str) -> str | None:
    line = report.diags.get(diag)
    if line is not None and line.fields.get("mode"):
        return normalised(line.fields["mode"])
    outcome = report.tests.get(marker)
    if outcome is None:
        return None
    for key in ("irq_mode", "mode", "interrupt_mode"):
        mode = normalised(outcome.fields.get(key))
        if mode is not None and (key == "irq_mode" or family_of(mode)):
            return mode
    return None


def irq_mode_rule(want: Family, sources: Sequence[tuple[str, str]]) -> CheckRule:
    """IRQ_MODE_MISMATCH unless every (marker, diagnostic line) pair reports ``want``'s family."""

    def check(report: GuestReport) -> Failure | None:
        for marker, diag in sources:
            mode = reported_mode(report, marker, diag)
            if family_of(mode) != want:
                return Failure("IRQ_MODE_MISMATCH", f"{marker} expected={want} got={mode or 'unknown'} "
                                                    f"(--require-{want})", order_of(report, marker))
        return None

    return CheckRule(f"--require-{want}", check)
