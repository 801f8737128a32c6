"""What the guest said so far, and the verdict rules of the old harness (protocol page)."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.errors import ExitCode
from harness.textsafe import visible
from harness.protocol import Kind, Record, Status, TestMarker, as_test_marker, parse_key_values, result_of

BASE_REQUIRED_TESTS = ("virtio-blk", "virtio-net")
SND_TEST = "virtio-snd"


@dataclass
class TestOutcome:
    """The latest word on one guest test: its final status, or READY/INFO if none came yet."""

    status: Status
    fields: dict[str, str] = field(default_factory=dict)
    reason: str | None = None
    notes: list[str] = field(default_factory=list)  # READY/INFO records, in order

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"status": self.status.value, "fields": dict(self.fields)}
        if self.reason:
            out["reason"] = self.reason
        if self.notes:
            out["notes"] = list(self.notes)
        return out


@dataclass
class GuestReport:
    """Accumulates the records of one guest run."""

    started: bool = False
    start_fields: dict[str, str] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)
    tests: dict[str, TestOutcome] = field(default_factory=dict)
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
        elif record.kind == Kind.TEST:
            marker = as_test_marker(record)
            if marker is not None:
                self._add_test(marker, record.text)
        elif record.kind == Kind.RESULT and self.result is None:
            self.result = result_of(record)

    def _add_test(self, marker: TestMarker, text: str) -> None:
        current = self.tests.get(marker.name)
        if marker.status.is_final or current is None:
            notes = current.notes if current else []
            self.tests[marker.name] = TestOutcome(marker.status, dict(marker.fields), marker.reason, notes)
            current = self.tests[marker.name]
        if not marker.status.is_final:
            current.notes.append(text)


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
        # One line whatever the guest sent, its control bytes shown as \xNN rather than obeyed.
        return f"FAIL: {self.token}: {visible(' '.join(self.detail.split()))}"


PASS = Verdict("PASS", ExitCode.PASS, "AERO_VIRTIO_SELFTEST|RESULT|PASS")


def required_tests(with_snd: bool) -> tuple[str, ...]:
    return BASE_REQUIRED_TESTS + ((SND_TEST,) if with_snd else ())


def _describe(name: str, outcome: TestOutcome) -> str:
    extra = outcome.reason or ", ".join(f"{k}={v}" for k, v in outcome.fields.items())
    return f"{name} {outcome.status.value}" + (f" ({extra})" if extra else "")


def judge(report: GuestReport, required: tuple[str, ...]) -> Verdict:
    """The verdict once the RESULT record arrived (the guest's run is complete)."""
    assert report.result is not None, "judge() needs the RESULT record"
    outcomes = {name: report.tests.get(name) for name in required}
    failed = [_describe(n, o) for n, o in outcomes.items() if o is not None and o.status is Status.FAIL]
    if failed:
        return Verdict("TEST_FAILED", ExitCode.FAIL, "; ".join(failed))
    skipped = [_describe(n, o) for n, o in outcomes.items() if o is not None and o.status is Status.SKIP]
    if skipped:
        return Verdict("TEST_SKIPPED", ExitCode.FAIL, "required test skipped: " + "; ".join(skipped))
    missing = [n for n, o in outcomes.items() if o is None or not o.status.is_final]
    if missing:
        return Verdict("MISSING_TEST_MARKER", ExitCode.FAIL,
                       f"RESULT|{report.result} without a PASS marker for: {', '.join(missing)}")
    if report.result == "FAIL":
        others = [_describe(n, o) for n, o in report.tests.items() if o.status is Status.FAIL]
        why = "; ".join(others) if others else "no failing TEST marker named"
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
