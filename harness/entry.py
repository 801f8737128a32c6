"""What both console scripts do around their work: the contract's one-line ending, whatever happens.

A HarnessError prints its ``FAIL: <TOKEN>: ...`` line and exits with its code; SIGINT and SIGTERM
become ``FAIL: INTERRUPTED`` (130); anything unforeseen is one INFRA line (6), its traceback only in
the debug log. Never a traceback on the console.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType

from harness.errors import ExitCode, HarnessError, InfraError
from harness.logsetup import get_logger


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def guarded(work: Callable[[], int]) -> int:
    """Run ``work`` with SIGINT and SIGTERM as an interrupt (until an event loop installs its own
    handlers) and every ending mapped to one stdout line and a contract exit code.

    SIGINT is set explicitly: a process started in the background of a non-interactive shell (a CI
    step, ``nohup sh -c '... &'``) inherits it ignored, and a CI system's cancel or a deliberate
    ``kill -INT`` must still stop the run and clean up."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        return work()
    except HarnessError as err:
        print(err.verdict_line(), flush=True)
        return int(err.exit_code)
    except KeyboardInterrupt as stop:
        print(f"FAIL: INTERRUPTED: stopped by {stop.args[0] if stop.args else 'SIGINT'}", flush=True)
        return int(ExitCode.INTERRUPTED)
    except Exception as err:  # noqa: BLE001 - the contract: one line, never a traceback
        get_logger("entry").debug("internal error", exc_info=True)
        print(InfraError(f"internal error: {type(err).__name__}: {err}").verdict_line(), flush=True)
        return int(ExitCode.INFRA)


