"""COM1 capture: QEMU's serial chardev connects to a Unix socket this side listens on.

Every chunk is appended to the serial log byte for byte, optionally echoed to stdout, and fed to
the protocol scanner at once: the reader wakes on data (no polling), and each chunk's receive time
is kept for the records it completes. The scanner comes first and nothing can stop it: a serial log
that cannot be written (a full disk) is reported once and given up, the records still count.
The echo shows guest control bytes as ``\\xNN`` unless the raw stream was asked for.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from harness.logsetup import get_logger
from harness.outputs import open_new
from harness.protocol import Record, Scanner
from harness.textsafe import SerialEcho

READ_SIZE = 64 * 1024
log = get_logger("serial")

RecordSink = Callable[[list[Record], float], None]


class SerialCapture:
    def __init__(self, socket_path: Path, log_path: Path, on_records: RecordSink, follow: bool = False,
                 raw: bool = False) -> None:
        self.socket_path = socket_path
        self.log_path = log_path
        self.on_records = on_records
        self.follow = follow
        self.echo = None if raw else SerialEcho()
        self.scanner = Scanner()
        self.bytes_received = 0
        self.first_byte_at: float | None = None
        self.log_error: str | None = None  # why the serial log stopped being written, if it did
        self.connected = asyncio.Event()
        self.closed = asyncio.Event()
        self._log: IO[bytes] | None = None
        self._server: asyncio.AbstractServer | None = None
        self._at_line_start = True

    async def start(self) -> None:
        self._log = open_new(self.log_path)
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.socket_path))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connected.is_set():  # only QEMU's one chardev connection is COM1
            writer.close()
            return
        self.connected.set()
        try:
            while chunk := await reader.read(READ_SIZE):
                self._take(chunk, time.monotonic())
            tail = self.scanner.flush()
            if tail:
                self.on_records(tail, time.monotonic())
        except ConnectionError as err:
            log.warning("COM1 connection lost: %s", err)
        finally:
            writer.close()
            self.closed.set()

    def _take(self, chunk: bytes, received: float) -> None:
        if self.first_byte_at is None:
            self.first_byte_at = received
        self.bytes_received += len(chunk)
        records = self.scanner.feed(chunk)
        if records:
            self.on_records(records, received)
        self._write_log(chunk)
        if self.follow:
            self._echo(chunk)

    def _write_log(self, chunk: bytes) -> None:
        if self._log is None:
            return
        try:
            self._log.write(chunk)
            self._log.flush()
        except OSError as err:
            self.log_error = f"{err.strerror or err} after {self.bytes_received - len(chunk)} bytes"
            log.warning("the serial log %s can no longer be written (%s); the run goes on without it",
                        self.log_path, self.log_error)
            self._close_log()

    def _echo(self, chunk: bytes) -> None:
        text = chunk if self.echo is None else self.echo.feed(chunk).encode("utf-8", "backslashreplace")
        if not text:
            return
        sys.stdout.buffer.write(text)
        sys.stdout.buffer.flush()
        self._at_line_start = text.endswith(b"\n")

    def _close_log(self) -> None:
        stream, self._log = self._log, None
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass  # the data that could not be written is lost either way

    def stop_following(self) -> None:
        """Stop echoing COM1; end the echoed text's last line so the verdict starts its own."""
        if self.follow and self.echo is not None:
            tail = self.echo.flush().encode("utf-8", "backslashreplace")
            if tail:
                sys.stdout.buffer.write(tail)
                self._at_line_start = tail.endswith(b"\n")
        if self.follow and not self._at_line_start:
            sys.stdout.buffer.write(b"\n")
            sys.stdout.buffer.flush()
        self.follow = False

    async def drain(self, timeout: float) -> None:
        """After QEMU exited: wait briefly for the last bytes and EOF."""
        if self.connected.is_set():
            try:
                await asyncio.wait_for(self.closed.wait(), timeout)
            except TimeoutError:
                log.debug("COM1 did not close within %.1f s", timeout)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self._close_log()
