"""What the guest said so far, and the verdict once it said RESULT.

The rules themselves are declared by the device modules (``harness/devices/``) as ``Rule`` objects;
``judge`` is generic: a failing rule names its token, and when several fail, the one whose marker
the guest reported first is named (a missing marker comes after every reported one).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from harness.errors import ExitCode
from harness.protocol import Kind, Record, Status, TestMarker, as_test_marker, parse_key_values, result_of
from harness.textsafe import visible

MAX_TEXT_LINES = 20  # free-text lines kept per device (the causes of a SKIP)
MAX_NAMES = 256  # distinct test, diagnostic and text names kept: a guest cannot grow the report without bound


@dataclass
class TestOutcome:
    """The latest word on one guest test: its final status, or READY/INFO if none came yet."""

    status: Status
    fields: dict[str, str] = field(default_factory=dict)
    reason: str | None = None
    notes: list[str] = field(default_factory=list)  # READY/INFO records, in order
    seq: int = 0  # the number of the record that set this status (the guest's order)
    at_s: float | None = None  # when that record arrived, in seconds since QEMU started

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"status": self.status.value, "fields": dict(self.fields)}
        if self.at_s is not None:
            out["at_s"] = self.at_s
        if self.reason:
            out["reason"] = self.reason
        if self.notes:
            out["notes"] = list(self.notes)
        return out

    @property
    def why(self) -> str | None:
        """The guest's reason: ``reason=`` or the bare word after the status ("-" means none)."""
        reason = self.fields.get("reason") or self.reason
        return None if reason in (None, "", "-") else reason


@dataclass(frozen=True)
class DiagLine:
    """A ``virtio-<name>|INFO|...`` line (no prefix): interrupt modes, miniport counters."""

    level: str
    fields: dict[str, str]
    seq: int


@dataclass
class GuestReport:
    """Accumulates the records of one guest run."""

    started: bool = False
    start_fields: dict[str, str] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)
    config_seen: bool = False
    tests: dict[str, TestOutcome] = field(default_factory=dict)
    diags: dict[str, DiagLine] = field(default_factory=dict)
    texts: dict[str, deque[str]] = field(default_factory=dict)
    result: str | None = None  # PASS / FAIL once the RESULT record arrived
    records: int = 0

    def add(self, record: Record) -> None:
        self.records += 1
        if record.kind == Kind.START:
            self.started = True
            self.start_fields, _ = parse_key_values(record.parts)
        elif record.kind == Kind.CONFIG:
            fields, _ = parse_key_values(record.parts)
            self.config.update(fields)
            self.config_seen = True
        elif record.kind == Kind.TEST:
            marker = as_test_marker(record)
            if marker is not None:
                self._add_test(marker, record.text)
        elif record.kind == Kind.DIAG:
            if record.parts[0] in self.diags or len(self.diags) < MAX_NAMES:
                fields, _ = parse_key_values(record.parts[2:])
                self.diags[record.parts[0]] = DiagLine(record.parts[1], fields, self.records)
        elif record.kind == Kind.TEXT:
            if record.parts[0] in self.texts or len(self.texts) < MAX_NAMES:
                self.texts.setdefault(record.parts[0], deque(maxlen=MAX_TEXT_LINES)).append(record.parts[1])
        elif record.kind == Kind.RESULT and self.result is None:
            self.result = result_of(record)

    def _add_test(self, marker: TestMarker, text: str) -> None:
        current = self.tests.get(marker.name)
        if current is None and len(self.tests) >= MAX_NAMES:
            return
        if marker.status.is_final or current is None or not current.status.is_final:
            # A final status replaces what came before; READY/INFO only until there is one (the last
            # INFO's fields are the current counters of an INFO-only marker).
            notes = current.notes if current else []
            self.tests[marker.name] = TestOutcome(marker.status, dict(marker.fields), marker.reason, notes,
                                                  self.records)
            current = self.tests[marker.name]
        if not marker.status.is_final and len(current.notes) < MAX_TEXT_LINES:
            current.notes.append(text)

    def text_lines(self, device: str) -> list[str]:
        return list(self.texts.get(device, ()))


@dataclass(frozen=True)
class Verdict:
    token: str  # "PASS" or the contract's failure token
    exit_code: ExitCode
    detail: str

    @property
    def passed(self) -> bool:
        return self.exit_code == ExitCode.PASS

    def line(self) -> str:
        if self.passed:
            return "PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS"
        # One line whatever the guest sent, its control bytes shown as \\xNN rather than obeyed.
        return f"FAIL: {self.token}: {visible(' '.join(self.detail.split()))}"


PASS = Verdict("PASS", ExitCode.PASS, "AERO_VIRTIO_SELFTEST|RESULT|PASS")
NOT_REPORTED = 1 << 62  # the order of a failure whose marker never came: after every reported one


@dataclass(frozen=True)
class Failure:
    token: str
    detail: str
    order: int  # the guest's record number of the marker at fault (NOT_REPORTED when missing)


class Rule(Protocol):
    """One condition of the verdict, declared by a device module."""

    def evaluate(self, report: GuestReport) -> Failure | None: ...


def describe(name: str, outcome: TestOutcome, keys: Sequence[str] = ()) -> str:
    """``name STATUS (reason, key=value ...)`` for a verdict line."""
    # The fields worth knowing (all of them when none of those is there), and always the guest's error
    # code and, for a device its driver did not bind, the IDs it has and the ones the driver wants.
    shown = [k for k in dict.fromkeys((*keys, "err", "pci_id", "rev", "expected")) if k in outcome.fields]
    shown = shown or list(outcome.fields)
    fields = [f"{k}={outcome.fields[k]}" for k in shown if k != "reason"]
    reason = outcome.why
    extra = ", ".join(([f"reason={reason}"] if reason else []) + fields)
    return f"{name} {outcome.status.value}" + (f" ({extra})" if extra else "")


def judge(report: GuestReport, rules: Sequence[Rule]) -> Verdict:
    """The verdict once the RESULT record arrived (the guest's run is complete)."""
    assert report.result is not None, "judge() needs the RESULT record"
    failures = [failure for rule in rules if (failure := rule.evaluate(report)) is not None]
    if failures:
        first = min(enumerate(failures), key=lambda item: (item[1].order, item[0]))[1]
        return Verdict(first.token, ExitCode.FAIL, first.detail)
    if report.result == "FAIL":
        failed = [describe(n, o) for n, o in report.tests.items() if o.status is Status.FAIL]
        why = "; ".join(failed) if failed else "no failing TEST marker named"
        return Verdict("SELFTEST_FAILED", ExitCode.FAIL, f"guest reported AERO_VIRTIO_SELFTEST|RESULT|FAIL ({why})")
    return PASS


def timeout_verdict(report: GuestReport, seconds: float) -> Verdict:
    seen = "no selftest output" if not report.records else f"last seen: {_progress(report)}"
    return Verdict("TIMEOUT", ExitCode.TIMEOUT, f"no RESULT line within {seconds:g} s ({seen})")


def qemu_exited_verdict(report: GuestReport, returncode: int | None, stderr_tail: str) -> Verdict:
    how = f"exit code {returncode}" if returncode is not None else "unknown status"
    detail = f"QEMU ended ({how}) before a RESULT line"
    if stderr_tail:
        detail += f": {stderr_tail}"
    elif returncode == 0:
        detail += " (guest power-off, reboot or crash; -no-reboot turns a reset into an exit)"
    detail += f"; {_progress(report)}" if report.records else "; no selftest output"
    return Verdict("QEMU_EXITED", ExitCode.QEMU_EXITED, detail)


def audio_silent_verdict(detail: str) -> Verdict:
    return Verdict("AUDIO_SILENT", ExitCode.AUDIO_SILENT, detail)


def _progress(report: GuestReport) -> str:
    if not report.tests:
        return "START seen, no TEST marker" if report.started else "records seen, no START"
    return ", ".join(f"{name}={o.status.value}" for name, o in report.tests.items())
