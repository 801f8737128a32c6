"""The kinds of verdict rules a device module declares.

- ``MarkerRule``: a guest marker that must PASS (or, with ``accept_skip``, PASS or SKIP). Its tokens
  are upstream's: ``VIRTIO_<TEST>_FAILED``, ``VIRTIO_<TEST>_SKIPPED``, ``MISSING_VIRTIO_<TEST>`` with
  TEST the marker name upper-cased, ``-`` as ``_``.
- ``CheckRule``: any other condition (a marker's fields, a diagnostic line, the CONFIG line), as a
  function of the report that returns the failure or None.

A device module returns the rules that apply to a run; ``harness.verdict.judge`` evaluates them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.protocol import Status
from harness.verdict import NOT_REPORTED, Failure, GuestReport, TestOutcome, describe

FLAG_NOT_SET = "flag_not_set"


def token_base(marker: str) -> str:
    """``virtio-net-udp`` -> ``VIRTIO_NET_UDP``."""
    return marker.upper().replace("-", "_")


SkipCause = Callable[[GuestReport, TestOutcome], "str | None"]


@dataclass(frozen=True)
class MarkerRule:
    marker: str
    because: str  # what makes it required: "the contract layout", "--with-input-events", ...
    accept_skip: bool = False
    keys: tuple[str, ...] = ()  # the fields worth showing in the verdict line (all when empty)
    provision: str | None = None  # the guest flag that enables the test, for a SKIP|flag_not_set
    skip_cause: SkipCause | None = None  # names the cause of a SKIP from the guest's text lines
    fail_hint: Callable[[GuestReport], str | None] | None = None  # what the run's flags have to do with a FAIL

    def evaluate(self, report: GuestReport) -> Failure | None:
        outcome = report.tests.get(self.marker)
        base = token_base(self.marker)
        if outcome is None or not outcome.status.is_final:
            last = f" (last: {outcome.status.value})" if outcome is not None else ""
            return Failure(f"MISSING_{base}", f"RESULT|{report.result} without a final {self.marker} marker{last}; "
                                              f"required by {self.because}", NOT_REPORTED)
        if outcome.status is Status.FAIL:
            hint = self.fail_hint(report) if self.fail_hint else None
            detail = describe(self.marker, outcome, self.keys) + (f"; {hint}" if hint else "")
            return Failure(f"{base}_FAILED", detail, outcome.seq)
        if outcome.status is Status.SKIP and not self.accept_skip:
            cause = (self.skip_cause(report, outcome) if self.skip_cause else None) or outcome.why or "no reason given"
            hint = (f"; provision the guest with {self.provision}" if self.provision and FLAG_NOT_SET in cause
                    else "")
            return Failure(f"{base}_SKIPPED", f"{self.marker} SKIP ({cause}) but it must PASS: required by "
                                              f"{self.because}{hint}", outcome.seq)
        return None


@dataclass(frozen=True)
class CheckRule:
    """A condition of the verdict as a function: the failure, or None when it holds."""

    name: str  # what it checks, for the docs and the logs
    check: Callable[[GuestReport], Failure | None]

    def evaluate(self, report: GuestReport) -> Failure | None:
        return self.check(report)


def order_of(report: GuestReport, *markers: str) -> int:
    """Where the first of ``markers`` stands in what the guest reported (NOT_REPORTED when none did)."""
    seqs = [report.tests[m].seq for m in markers if m in report.tests]
    return min(seqs) if seqs else NOT_REPORTED


def counter(value: str | None) -> int | None:
    """A counter field (decimal or 0x...); None when absent, negative or not a number."""
    if value is None:
        return None
    try:
        number = int(value, 0)
    except ValueError:
        return None
    return number if number >= 0 else None


def nonzero(fields: dict[str, str], keys: Sequence[str]) -> dict[str, int] | None:
    """The counters ``keys`` when every one is present (None otherwise: the gate cannot judge)."""
    values = {key: counter(fields.get(key)) for key in keys}
    if any(v is None for v in values.values()):
        return None
    return {k: v for k, v in values.items() if v is not None}
