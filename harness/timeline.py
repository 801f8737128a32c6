"""When things happened in a run, in seconds since QEMU started: each guest record, and the phases
(QEMU up, first serial byte, START, each required marker, RESULT, QEMU ended).

Recording costs an append on the verdict path; the timeline keeps the first MAX_RECORDS records
and counts the rest, so a guest that floods COM1 cannot grow it without bound.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from harness.protocol import Kind, Record

MAX_RECORDS = 5000
PHASE_NAMES = {"qemu_started": "QEMU started", "qemu_up": "QEMU up (QMP)", "guest_running": "guest running",
               "first_serial_byte": "first COM1 byte", "start": "selftest START", "config": "CONFIG",
               "result": "RESULT", "qemu_ended": "QEMU ended"}


def phase_label(key: str) -> str:
    """How a phase of ``Timeline.phases`` is called where people read it."""
    if key in PHASE_NAMES:
        return PHASE_NAMES[key]
    return f"{key.removeprefix('marker:')} (required)" if key.startswith("marker:") else key


@dataclass
class Timeline:
    origin: float | None = None  # time.monotonic() when QEMU started
    phases: dict[str, float] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    dropped: int = 0
    required: frozenset[str] = frozenset()

    def start(self, now: float) -> None:
        self.origin = now
        self.phases["qemu_started"] = 0.0

    def at(self, now: float) -> float:
        return round(now - self.origin, 3) if self.origin is not None else 0.0

    def phase(self, name: str, now: float) -> None:
        """The first time a phase is reached; later ones do not move it."""
        self.phases.setdefault(name, self.at(now))

    def add(self, records: Iterable[Record], received: float) -> None:
        at = self.at(received)
        for record in records:
            if record.kind == Kind.TEXT:
                continue  # free text: in the serial log, not the timeline
            if len(self.records) < MAX_RECORDS:
                entry: dict[str, Any] = {"at_s": at, "kind": str(record.kind.value if isinstance(record.kind, Kind)
                                                                  else record.kind)}
                if record.kind in (Kind.TEST, Kind.DIAG) and record.parts:
                    entry["name"] = record.parts[0]
                    if len(record.parts) > 1:
                        entry["status"] = record.parts[1]
                self.records.append(entry)
            else:
                self.dropped += 1
            if record.kind == Kind.START:
                self.phases.setdefault("start", at)
            elif record.kind == Kind.CONFIG:
                self.phases.setdefault("config", at)
            elif record.kind == Kind.RESULT:
                self.phases.setdefault("result", at)
            elif record.kind == Kind.TEST and len(record.parts) > 1 and record.parts[0] in self.required \
                    and record.parts[1] in ("PASS", "FAIL", "SKIP"):
                self.phases.setdefault(f"marker:{record.parts[0]}", at)

    def to_json(self) -> dict[str, Any]:
        return {"phases": dict(sorted(self.phases.items(), key=lambda item: item[1])), "records": self.records,
                "records_dropped": self.dropped}
