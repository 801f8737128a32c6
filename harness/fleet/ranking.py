"""Which exit code of many runs is the worst: the exit code of a fleet run and of a merge.

From best to worst::

    0 PASS < 4 AUDIO_SILENT < 1 test failed < 5 TIMEOUT < 3 QEMU_EXITED
           < 130 INTERRUPTED < 6 INFRA < 2 USAGE

- any failure beats a pass;
- among the runs the guest took part in, the less that was learnt the worse: a silent capture (all
  tests passed) < a test that failed < no result at all (timeout) < QEMU gone (crash, bugcheck);
- a run that says nothing about the drivers is worse than any test outcome: interrupted (stopped
  by someone) < INFRA (the machinery; a retry may pass) < USAGE (the case itself is wrong: nothing
  passes until the matrix is fixed);
- a code outside the contract counts as INFRA; ties go to the first case in matrix order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from harness.errors import ExitCode

ORDER: tuple[ExitCode, ...] = (ExitCode.PASS, ExitCode.AUDIO_SILENT, ExitCode.FAIL, ExitCode.TIMEOUT,
                               ExitCode.QEMU_EXITED, ExitCode.INTERRUPTED, ExitCode.INFRA, ExitCode.USAGE)
_RANK = {int(code): rank for rank, code in enumerate(ORDER)}

T = TypeVar("T")


def contract_code(code: int) -> ExitCode:
    """The code as the contract knows it; anything else is INFRA."""
    return ExitCode(code) if code in _RANK else ExitCode.INFRA


def rank(code: int) -> int:
    return _RANK[int(contract_code(code))]


def worst(codes: Iterable[int]) -> ExitCode:
    """The worst code (PASS for none)."""
    return max((contract_code(c) for c in codes), key=rank, default=ExitCode.PASS)


def worst_of(items: Sequence[T], code_of: Callable[[T], int]) -> T | None:
    """The first item with the worst code, or None for no items."""
    best: T | None = None
    for item in items:
        if best is None or rank(code_of(item)) > rank(code_of(best)):
            best = item
    return best
