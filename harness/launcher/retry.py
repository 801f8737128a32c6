"""The retry policy for Docker engine calls: transient failures only, bounded, exponential back-off.

Transient: the engine cannot be reached or dropped the connection (refused, reset, a missing
socket), a timeout, a 5xx answer, or a 409 name conflict left by a create whose answer was lost.
Everything else (a 404 image, a 400 bad request) fails at once. Only engine calls go through
here; a test's verdict is the container's exit code, a value, and is never retried.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import docker.errors
import requests.exceptions
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from harness.logsetup import get_logger

T = TypeVar("T")
log = get_logger("launcher.retry")


class NameConflict(Exception):
    """The container name is taken (by our own container whose create answer was lost)."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    backoff_s: float = 0.5  # the first wait; it doubles each retry
    max_backoff_s: float = 8.0


def _causes(err: BaseException) -> list[BaseException]:
    """The error, its causes and the exceptions carried in their arguments (urllib3 nests them)."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [err]
    while todo and len(seen) < 20:
        current = todo.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        todo += [a for a in current.args if isinstance(a, BaseException)]
        todo += [nested for a in current.args if isinstance(a, tuple)
                 for nested in a if isinstance(nested, BaseException)]
        todo += [c for c in (current.__cause__, current.__context__) if c is not None]
    return seen


def is_transient(err: BaseException) -> bool:
    for cause in _causes(err):
        if isinstance(cause, NameConflict):
            return True
        if isinstance(cause, docker.errors.APIError):
            return cause.status_code is not None and cause.status_code >= 500
        if isinstance(cause, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                              ConnectionError, TimeoutError, FileNotFoundError)):
            return True
    return False


def short_reason(err: BaseException) -> str:
    """A one-line reason: the innermost OS error when there is one (e.g. 'Connection refused')."""
    for cause in reversed(_causes(err)):
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
    if isinstance(err, docker.errors.APIError):
        return " ".join(f"{err.status_code} {err.explanation or ''}".split())[:300]
    return " ".join(str(err).split())[:300] or type(err).__name__


def _log_retry(what: str, policy: RetryPolicy) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        err = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        reason = short_reason(err) if err is not None else "unknown"
        log.warning("docker engine call '%s' failed (%s); retry %d of %d in %.1f s", what, reason,
                    state.attempt_number, policy.attempts - 1, wait,
                    extra={"call": what, "attempt": state.attempt_number, "attempts": policy.attempts,
                           "wait_s": round(wait, 3), "reason": reason, "error": type(err).__name__})
    return before_sleep


def call(policy: RetryPolicy, what: str, fn: Callable[[], T]) -> T:
    """``fn()``, retried on transient engine failures; the last error propagates unchanged."""
    retrying = Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(max(1, policy.attempts)),
        wait=wait_exponential(multiplier=policy.backoff_s, min=policy.backoff_s, max=policy.max_backoff_s),
        before_sleep=_log_retry(what, policy),
        reraise=True,
    )
    return retrying(fn)
