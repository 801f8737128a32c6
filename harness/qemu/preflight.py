"""The PCI preflight: QEMU starts paused, ``query-pci`` shows what the machine holds, and each
virtio function the layout put there must have the IDs the layout wants before the guest runs.

Extra arguments after ``--`` can replace a device or change its properties (``-global
virtio-blk-pci.disable-legacy=off``); a guest would then meet a device its drivers do not bind,
and fail in a way that points nowhere. The functions found also go into results.json.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.devices import ExpectedFunction
from harness.devices.base import VIRTIO_VENDOR
from harness.errors import PciPreflightFailed
from harness.verdict import GuestReport


@dataclass(frozen=True)
class PciFunction:
    bus: int
    slot: int
    function: int
    vendor: int
    device: int
    subsystem_vendor: int | None
    subsystem: int | None
    class_code: int | None
    irq: int | None
    qdev_id: str
    bars: tuple[dict[str, Any], ...]

    @property
    def address(self) -> str:
        return f"{self.bus:02x}:{self.slot:02x}.{self.function:x}"

    @property
    def ids(self) -> str:
        return f"{self.vendor:04x}:{self.device:04x}"

    def to_json(self) -> dict[str, Any]:
        subsystem = (f"{self.subsystem_vendor:04x}:{self.subsystem:04x}"
                     if self.subsystem_vendor is not None and self.subsystem is not None else None)
        return {"address": self.address, "id": self.ids, "subsystem": subsystem,
                "class": None if self.class_code is None else f"{self.class_code:04x}", "irq": self.irq,
                "qdev_id": self.qdev_id, "bars": list(self.bars)}


def _bars(regions: Iterable[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    bars = []
    for region in regions:
        kind = "io" if region.get("type") == "io" else "memory"
        if kind == "memory":
            kind += "64" if region.get("mem_type_64") else "32"
            if region.get("prefetch"):
                kind += " prefetchable"
        bars.append({"index": region.get("bar"), "type": kind, "size": region.get("size")})
    return tuple(bars)


def functions(answer: Sequence[dict[str, Any]]) -> list[PciFunction]:
    """Every function in a ``query-pci`` answer, behind bridges too."""
    found: list[PciFunction] = []

    def walk(devices: Iterable[dict[str, Any]]) -> None:
        for dev in devices:
            ids = dev.get("id", {})
            found.append(PciFunction(
                bus=int(dev.get("bus", 0)), slot=int(dev.get("slot", 0)), function=int(dev.get("function", 0)),
                vendor=int(ids.get("vendor", 0)), device=int(ids.get("device", 0)),
                subsystem_vendor=ids.get("subsystem-vendor"), subsystem=ids.get("subsystem"),
                class_code=(dev.get("class_info") or {}).get("class"), irq=dev.get("irq"),
                qdev_id=str(dev.get("qdev_id", "")), bars=_bars(dev.get("regions", []))))
            bridge = dev.get("pci_bridge") or {}
            walk((bridge.get("bus") or {}).get("devices", []) or bridge.get("devices", []))

    for bus in answer:
        walk(bus.get("devices", []))
    return found


def mismatches(found: Sequence[PciFunction], expected: Sequence[ExpectedFunction]) -> list[str]:
    """One line for each expected function that is missing or has other IDs."""
    by_id = {f.qdev_id: f for f in found if f.qdev_id}
    problems = []
    for want in expected:
        have = by_id.get(want.qdev_id)
        if have is None:
            problems.append(f"{want.what} ({want.qdev_id}) is not in the machine; the layout wants "
                            f"{want.describe_wanted()}")
        elif have.vendor != want.vendor or have.device not in want.device_ids:
            problems.append(f"{want.what} ({want.qdev_id}, {have.address}) is {have.ids} but the layout wants "
                            f"{want.describe_wanted()}")
    return problems


def check(found: Sequence[PciFunction], expected: Sequence[ExpectedFunction], layout: str) -> None:
    problems = mismatches(found, expected)
    if problems:
        raise PciPreflightFailed(f"{'; '.join(problems)} ({layout} layout; extra QEMU arguments after -- can "
                                 "replace a device or change its properties)")


def extra_virtio(found: Sequence[PciFunction], expected: Sequence[ExpectedFunction]) -> list[PciFunction]:
    """Virtio functions the layout did not put there (extra arguments after ``--``): the guest meets
    them too, and its tests may pick one of them rather than the layout's."""
    ours = {want.qdev_id for want in expected}
    return [f for f in virtio(found) if f.qdev_id not in ours]


def virtio(found: Sequence[PciFunction]) -> list[PciFunction]:
    return [f for f in found if f.vendor == VIRTIO_VENDOR]


@dataclass(frozen=True)
class DriverNote:
    """A function that has the IDs its Aero driver binds but lacks something else the driver needs."""

    qdev_id: str
    family: str  # "virtio-net": whose free-text lines tell whether the guest found a working device
    problem: str  # "registers_not_in_bar0", "subsystem_not_bound"
    text: str  # without the qdev id: the keyboard's and the mouse's notes say the same
    explains: tuple[str, ...]
    absent_words: tuple[str, ...]

    def explains_failure(self, token: str, report: GuestReport) -> bool:
        """A silent guest's end (QEMU exit, timeout) when it said nothing at all; the family's own
        failure when the guest's words say it found no working device."""
        if token not in self.explains:
            return False
        if token in ("QEMU_EXITED", "TIMEOUT"):
            return not report.records
        if not self.absent_words:  # the token itself says the driver is not there (a bind failure)
            return True
        return any(word in line for line in report.text_lines(self.family) for word in self.absent_words)

    def to_json(self) -> dict[str, Any]:
        return {"qdev_id": self.qdev_id, "problem": self.problem, "text": self.text}


def driver_notes(found: Sequence[PciFunction], expected: Sequence[ExpectedFunction]) -> list[DriverNote]:
    """What the families' Aero drivers need of their functions and QEMU did not build."""
    by_id = {f.qdev_id: f for f in found if f.qdev_id}
    notes = []
    for want in expected:
        have, needs = by_id.get(want.qdev_id), want.needs
        if have is None or needs is None:
            continue
        if needs.registers_in_bar0 and not _memory_bar0(have):
            text = (f"{want.what} has no memory BAR0: QEMU puts the virtio registers in BAR4, "
                    f"contract v1 in BAR0, the only place the Aero {want.what} driver accepts, so the driver "
                    "does not start on this QEMU")
            if needs.consequence:
                text += f": {needs.consequence}"
            notes.append(DriverNote(want.qdev_id, want.what, "registers_not_in_bar0", text, needs.explains,
                                    needs.absent_words))
        if needs.subsystems and (have.subsystem_vendor != VIRTIO_VENDOR or have.subsystem not in needs.subsystems):
            bound = " or ".join(f"SUBSYS_{s:04X}{VIRTIO_VENDOR:04X}" for s in needs.subsystems)
            seen = (f"{have.subsystem_vendor:04x}:{have.subsystem:04x}"
                    if have.subsystem_vendor is not None and have.subsystem is not None else "none")
            text = f"{want.what} has subsystem {seen}; the Aero INF binds only {bound}"
            if needs.remedy:
                text += f": {needs.remedy}"
            notes.append(DriverNote(want.qdev_id, want.what, "subsystem_not_bound", text, needs.explains,
                                    needs.absent_words))
    return notes


def _memory_bar0(function: PciFunction) -> bool:
    return any(b["index"] == 0 and str(b["type"]).startswith("memory") for b in function.bars)
