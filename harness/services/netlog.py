"""The network log (``http.log``): one line for each request, datagram and name lookup the guest made.

Lines come from several service threads, so writes are serialised. A guest (or anything else on
the run's loopback) can send far more than anyone will read: each kind of line is rate-limited,
and what a limit holds back is counted and summed up in one line once the kind may write again,
so a flood costs a line a second, never the disk. The file as a whole is bounded too.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO

from harness.textsafe import visible

LINES_PER_SECOND = 20  # per kind (HTTP, UDP, DNS): a real guest makes a handful
MAX_LOG_BYTES = 16 * 1024 * 1024


@dataclass
class _Budget:
    window_start: float = 0.0
    used: int = 0
    held_back: int = 0
    held_back_since: float = 0.0


@dataclass
class NetworkLog:
    """The shared ``http.log``: one line a request, datagram or query; safe across threads."""

    stream: IO[str]
    lines_per_second: int = LINES_PER_SECOND
    max_bytes: int = MAX_LOG_BYTES
    written: int = 0
    truncated: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _budgets: dict[str, _Budget] = field(default_factory=dict)

    def write(self, kind: str, text: str) -> None:
        now = time.monotonic()
        with self._lock:
            if self.stream.closed:  # a handler thread finishing after the run ended
                return
            budget = self._budgets.setdefault(kind, _Budget(window_start=now))
            if now - budget.window_start >= 1.0:
                budget.window_start, budget.used = now, 0
            if budget.used >= self.lines_per_second:
                if not budget.held_back:
                    budget.held_back_since = now
                budget.held_back += 1
                return
            budget.used += 1
            if budget.held_back:
                self._emit(f"{kind} {budget.held_back} more not logged in the last "
                           f"{now - budget.held_back_since:.1f} s (over {self.lines_per_second} lines a second)")
                budget.held_back = 0
            self._emit(f"{kind} {visible(text)}")

    def _emit(self, line: str) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        data = f"{stamp} {line}\n"
        if self.written + len(data) > self.max_bytes:
            if not self.truncated:
                self.truncated = True
                self.stream.write(f"{stamp} log full ({self.max_bytes} bytes): nothing more is logged\n")
                self.stream.flush()
            return
        self.written += len(data)
        self.stream.write(data)
        self.stream.flush()

    def close(self) -> None:
        with self._lock:
            for kind, budget in self._budgets.items():
                if budget.held_back and not self.stream.closed:
                    self._emit(f"{kind} {budget.held_back} more not logged (over {self.lines_per_second} a second)")
                    budget.held_back = 0
