"""COM1 capture: QEMU's serial chardev connects to a Unix socket this side listens on.

Every chunk is appended to the serial log byte for byte, optionally echoed to stdout, and fed to
the protocol scanner at once: the reader wakes on data (no polling), and each chunk's receive time
is kept for the records it completes.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from harness.logsetup import get_logger
from harness.protocol import Record, Scanner

READ_SIZE = 64 * 1024
log = get_logger("serial")

RecordSink = Callable[[list[Record], float], None]


class SerialCapture:
    def __init__(self, socket_path: Path, log_path: Path, on_records: RecordSink, follow: bool = False) -> None:
        self.socket_path = socket_path
        self.log_path = log_path
        self.on_records = on_records
        self.follow = follow
        self.scanner = Scanner()
        self.bytes_received = 0
        self.connected = asyncio.Event()
        self.closed = asyncio.Event()
        self._log: IO[bytes] | None = None
        self._server: asyncio.AbstractServer | None = None
        self._at_line_start = True

    async def start(self) -> None:
        self._log = self.log_path.open("wb")
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
        self.bytes_received += len(chunk)
        assert self._log is not None
        self._log.write(chunk)
        self._log.flush()
        if self.follow:
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            self._at_line_start = chunk.endswith(b"\n")
        records = self.scanner.feed(chunk)
        if records:
            self.on_records(records, received)

    def stop_following(self) -> None:
        """Stop echoing COM1; end the echoed text's last line so the verdict starts its own."""
        if self.follow and not self._at_line_start:
            sys.stdout.buffer.write(b"\n")
            sys.stdout.buffer.flush()
        self.follow = False

    async def drain(self, timeout: float) -> None:
        """After QEMU exited: wait briefly for the last bytes and EOF."""
        if self.connected.is_set():
            try:
                await asyncio.wait_for(self.closed.wait(), timeout)
            except asyncio.TimeoutError:
                log.debug("COM1 did not close within %.1f s", timeout)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._log is not None:
            self._log.close()
            self._log = None
