"""A running QEMU: the process, its QMP connection, and a clean way to end it.

QEMU connects to a QMP socket this side listens on (no race on start-up), runs in its own session
(a Ctrl-C in the terminal reaches the harness, which then quits QEMU through QMP so a WAV capture
is finalised), and dies with the harness even if the harness is killed outright (PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

from qemu.qmp import QMPClient, QMPError

from harness.logsetup import get_logger
from harness.outputs import open_new
from harness.qemu.binary import die_with_parent

QMP_CONNECT_TIMEOUT_S = 30.0
QUIT_GRACE_S = 10.0
EXIT_AFTER_QMP_LOSS_S = 3.0
TERM_GRACE_S = 5.0
HURRIED_GRACE_S = 0.4  # after a signal: how long QEMU gets to quit through QMP (a WAV header) before SIGKILL
log = get_logger("qemu")



class QemuEndedEarly(Exception):
    """QEMU exited before its QMP connection came up."""

    def __init__(self, returncode: int | None) -> None:
        super().__init__(f"QEMU exited during start-up (exit code {returncode})")
        self.returncode = returncode


def tail_of(path: Path, max_lines: int = 3) -> str:
    """The last non-empty lines of a log file, joined into one line."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-max_lines:])[:500]


class QemuMachine:
    def __init__(self, argv: list[str], qmp_socket: Path, stderr_path: Path) -> None:
        self.argv = argv
        self.qmp_socket = qmp_socket
        self.stderr_path = stderr_path
        self.qmp = QMPClient("aero-win7-harness")
        self.proc: asyncio.subprocess.Process | None = None
        self._stderr: IO[bytes] | None = None
        self._events: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()  # set by a signal: end QEMU at once, with a brief chance to quit

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    async def start(self) -> None:
        """Start QEMU and wait for its QMP greeting; QemuEndedEarly if it exits first."""
        await self.qmp.start_server(str(self.qmp_socket))
        self._stderr = open_new(self.stderr_path)
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr,
            start_new_session=True, preexec_fn=die_with_parent)
        log.info("QEMU started", extra={"pid": self.proc.pid})
        accept = asyncio.ensure_future(self.qmp.accept())
        exited = asyncio.ensure_future(self.proc.wait())
        done, _ = await asyncio.wait({accept, exited}, timeout=QMP_CONNECT_TIMEOUT_S,
                                     return_when=asyncio.FIRST_COMPLETED)
        if accept in done and accept.exception() is None:
            exited.cancel()
            return
        accept.cancel()
        await asyncio.gather(accept, return_exceptions=True)
        try:  # a QEMU that dropped the QMP connection is usually exiting: give it a moment
            await asyncio.wait_for(exited, timeout=EXIT_AFTER_QMP_LOSS_S)
        except TimeoutError:
            pass
        returncode = self.returncode  # None: still running, its QMP never answered
        if self.running:
            await self.shutdown()
        raise QemuEndedEarly(returncode)

    async def wait(self) -> int:
        assert self.proc is not None
        return await self.proc.wait()

    def watch_events(self, on_event: Callable[[str, dict[str, Any]], Awaitable[None] | None]) -> None:
        """Call ``on_event(name, data)`` for every QMP event QEMU sends (BLOCK_IO_ERROR, STOP, ...)."""

        async def pump() -> None:
            async for event in self.qmp.events:
                data: dict[str, Any] = event.get("data") or {}  # type: ignore[assignment]
                log.debug("QMP event %s", event.get("event"), extra={"qmp_event": event.get("event"), "data": data})
                pending = on_event(str(event.get("event")), dict(data))
                if pending is not None:
                    await pending

        self._events = asyncio.ensure_future(pump())

    async def execute(self, command: str, arguments: dict[str, object] | None = None,
                      timeout: float = 10.0) -> object:
        """One QMP command; its QMPError/timeouts propagate to the caller."""
        return await asyncio.wait_for(self.qmp.execute(command, arguments), timeout=timeout)

    def hurry(self) -> None:
        """A signal arrived: a shutdown in progress (or the next one) gives QEMU a fraction of a second."""
        self._hurry.set()

    def kill(self) -> None:
        """End QEMU now (a second Ctrl-C)."""
        self._signal(signal.SIGKILL)

    async def screendump(self, path: Path, png: bool = True) -> bool:
        """Save the guest's screen; False (logged) when QEMU cannot."""
        if not self.running:
            return False
        arguments: dict[str, object] = {"filename": str(path)}
        if png:
            arguments["format"] = "png"
        try:
            await self._unless_hurried(self.qmp.execute("screendump", arguments), 10)
        except (TimeoutError, QMPError, OSError) as err:
            log.warning("screendump failed: %s", err)
            return False
        log.debug("screendump written to %s", path)
        return True

    async def shutdown(self) -> None:
        """End QEMU: QMP quit (so audio captures are finalised), then SIGTERM, then SIGKILL. After
        ``hurry()`` (a signal) QEMU gets HURRIED_GRACE_S to quit before it is killed."""
        try:
            unanswered = False
            if self.running and self.qmp.runstate.name == "RUNNING":
                try:
                    await self._unless_hurried(self.qmp.execute("quit"), 5)
                except (TimeoutError, QMPError, OSError, EOFError) as err:
                    log.debug("QMP quit did not complete: %r", err)
                    unanswered = isinstance(err, TimeoutError)
            # Hurried, a QEMU that did not even answer quit gets no second grace period: it is killed.
            if not (unanswered and self._hurry.is_set()) and await self._wait_exit(QUIT_GRACE_S):
                return
            if not self._hurry.is_set():
                log.warning("QEMU did not quit through QMP; terminating it")
                self._signal(signal.SIGTERM)
                if await self._wait_exit(TERM_GRACE_S):
                    return
                log.warning("QEMU ignored SIGTERM; killing it")
            self._signal(signal.SIGKILL)
            await self._wait_exit(None)
        finally:
            if self._events is not None:
                self._events.cancel()
                await asyncio.gather(self._events, return_exceptions=True)
            await self._close_qmp()
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.returncode is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass  # exited in between

    async def _unless_hurried(self, work: Awaitable[Any], timeout: float) -> Any:
        """``work`` within ``timeout``, cut to HURRIED_GRACE_S once ``hurry()`` is called."""
        task = asyncio.ensure_future(work)
        hurried = asyncio.ensure_future(self._hurry.wait())
        try:
            done, _ = await asyncio.wait({task, hurried}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if task not in done:
                await asyncio.wait({task}, timeout=HURRIED_GRACE_S if hurried in done else 0)
            if not task.done():
                raise TimeoutError
            return task.result()
        finally:
            hurried.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _wait_exit(self, timeout: float | None) -> bool:
        if self.proc is None:
            return True
        try:
            if timeout is None:
                await self.proc.wait()
            else:
                await self._unless_hurried(self.proc.wait(), timeout)
        except TimeoutError:
            return False
        log.info("QEMU exited", extra={"returncode": self.proc.returncode})
        return True

    async def _close_qmp(self) -> None:
        try:
            await asyncio.wait_for(self.qmp.disconnect(), timeout=5)
        except (TimeoutError, QMPError, OSError, EOFError) as err:
            log.debug("QMP disconnect: %r", err)
