"""Live progress of a run on stderr: where it is, how long it has been going, how much is left.

On a terminal: one status line, redrawn in place by rich (log lines print above it); off a terminal
(CI logs, ``docker run`` without ``-t``): a plain line every ``--progress-interval`` seconds and at
every phase change, never a carriage-return animation. The verdict path only notes facts here; the
drawing happens on the event loop's next turn, after the verdict's own work, so progress costs the
verdict nothing measurable. Everything stops before the verdict line is printed.
"""

from __future__ import annotations

import asyncio
import io
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from rich.console import Console
from rich.control import Control
from rich.live import Live
from rich.segment import ControlType
from rich.text import Text

from harness.logsetup import get_logger
from harness.textsafe import visible

Mode = Literal["terminal", "plain", "off"]
TERMINAL_REFRESH_S = 1.0
log = get_logger("progress")


def choose_mode(quiet: bool, follow_serial: bool) -> Mode:
    if quiet:
        return "off"
    # COM1 streamed to the same terminal would tear an in-place line: plain lines then.
    return "terminal" if sys.stderr.isatty() and not follow_serial else "plain"


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60:02d}:{seconds % 60:02d}" if seconds < 3600 else \
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _size(count: int) -> str:
    for unit, scale in (("MB", 1 << 20), ("KB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


@dataclass
class Progress:
    mode: Mode
    timeout_s: float
    interval_s: float = 30.0
    accel: str = "?"
    required: frozenset[str] = frozenset()
    phase_name: str = "starting"
    seen: set[str] = field(default_factory=set)
    last_marker: str = ""
    serial_bytes: Callable[[], int] = lambda: 0
    actions: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    _live: Live | None = None
    _ticker: asyncio.Task[None] | None = None
    _pending: bool = False
    _stderr: object = None

    # -- what the run tells it (cheap: no drawing here) ---------------------------------------------
    def phase(self, name: str) -> None:
        if name != self.phase_name:
            self.phase_name = name
            self._soon()

    def marker(self, name: str, status: str) -> None:
        self.last_marker = visible(f"{name} {status}")[:80]
        if status in ("PASS", "FAIL", "SKIP") and name in self.required and name not in self.seen:
            self.seen.add(name)
            self._soon()

    def action(self, name: str) -> None:
        self.actions.append(name)
        self._soon()

    # -- drawing ---------------------------------------------------------------------------------------
    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        parts = [f"{_clock(elapsed)}/{_clock(self.timeout_s)}", self.phase_name]
        if self.required:
            parts.append(f"{len(self.seen)} of {len(self.required)} required markers")
        if self.actions:
            parts.append(f"actions: {', '.join(self.actions)}")
        if self.last_marker:
            parts.append(f"last: {self.last_marker}")
        parts += [f"serial {_size(self.serial_bytes())}", self.accel]
        return " | ".join(parts)

    def _text(self) -> Text:
        return Text(self.line(), no_wrap=True, overflow="ellipsis")

    def start(self) -> None:
        if self.mode == "off":
            return
        if self.mode == "terminal":
            console = Console(file=sys.stderr)
            self._live = Live(self._text(), console=console, auto_refresh=False, transient=True,
                              redirect_stdout=False, redirect_stderr=False)
            self._live.start()
            self._stderr = sys.stderr
            sys.stderr = _AboveTheLine(console)
        else:
            log.info("progress: %s", self.line())
        self._ticker = asyncio.ensure_future(self._tick())

    async def _tick(self) -> None:
        period = TERMINAL_REFRESH_S if self.mode == "terminal" else self.interval_s
        while True:
            await asyncio.sleep(period)
            self._draw()

    def _soon(self) -> None:
        """Draw on the loop's next turn: after what the current callback (the verdict's) set going."""
        if self.mode == "off" or self._pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._pending = True
        loop.call_soon(self._draw)

    def _draw(self) -> None:
        self._pending = False
        if self.mode == "terminal" and self._live is not None:
            self._live.update(self._text(), refresh=True)
        elif self.mode == "plain":
            log.info("progress: %s", self.line())

    def stop(self) -> None:
        """Before the verdict line: the status line is gone, nothing more is drawn."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._live is not None:
            _take_down(self._live)
            self._live = None
            sys.stderr = self._stderr
        self.mode = "off"


def _take_down(live: Live) -> None:
    """Erase the status line and give the terminal back, on the verdict's path. ``Live.stop`` would
    render one last frame first and then erase it (0.3 ms on a pseudo-terminal, three times what the
    rest of the verdict path costs); the line is one row (``no_wrap``), so going back to its start and
    erasing it is the same on the screen. The Live is never used again."""
    console = live.console
    console.control(Control.move_to_column(0), Control((ControlType.ERASE_IN_LINE, 2)), Control.show_cursor(True))
    console.clear_live()
    console.pop_render_hook()


class _AboveTheLine(io.TextIOBase):
    """stderr while the status line shows: each whole line printed above it, as it is (never re-wrapped)."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._partial = ""

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._console.print(Text(line), soft_wrap=True, highlight=False, markup=False)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True
