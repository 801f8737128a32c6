"""The selftest's HTTP endpoints (protocol page): ``GET <path>`` -> ``OK``, ``GET <path>-large`` ->
1 MiB of 0..255 repeating, ``POST <path>-large`` -> checked by SHA-256.

Bounded whatever a client does: a request body is hashed as it streams in (nothing is buffered),
whatever its transfer encoding, and refused past MAX_UPLOAD; at most MAX_CONNECTIONS connections
are served at once (more are closed at once); a connection idle for IDLE_TIMEOUT_S is closed.
"""

from __future__ import annotations

import hashlib
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any

from harness.logsetup import get_logger
from harness.services.netlog import NetworkLog

LARGE_SIZE = 1 << 20
LARGE_BODY = bytes(range(256)) * (LARGE_SIZE // 256)
LARGE_SHA256 = hashlib.sha256(LARGE_BODY).hexdigest()
FNV64_OFFSET, FNV64_PRIME = 0xCBF29CE484222325, 0x100000001B3
LARGE_FNV1A64 = 0x8505AE4435522325  # of LARGE_BODY, per the protocol page; a test recomputes it
MAX_UPLOAD = 4 * LARGE_SIZE  # a body larger than this is refused (413) whatever its encoding
MAX_CONNECTIONS = 32
IDLE_TIMEOUT_S = 30.0
READ_CHUNK = 64 * 1024
MAX_CHUNK_LINE = 1024
log = get_logger("services.http")


def fnv1a64(data: bytes) -> int:
    value = FNV64_OFFSET
    for byte in data:
        value = ((value ^ byte) * FNV64_PRIME) & 0xFFFFFFFFFFFFFFFF
    return value


class BodyError(Exception):
    """The request body is malformed (``status`` 400) or too large (413)."""

    def __init__(self, status: HTTPStatus, why: str) -> None:
        super().__init__(why)
        self.status = status


class _Digest:
    """A body's length and SHA-256, computed as it streams past."""

    def __init__(self) -> None:
        self.size = 0
        self.sha = hashlib.sha256()

    def add(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > MAX_UPLOAD:
            raise BodyError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_UPLOAD} bytes")
        self.sha.update(data)


def _read_exactly(rfile: IO[bytes], size: int, digest: _Digest) -> None:
    while size > 0:
        data = rfile.read(min(READ_CHUNK, size))
        if not data:
            raise BodyError(HTTPStatus.BAD_REQUEST, "body ended early")
        digest.add(data)
        size -= len(data)


def _read_chunked(rfile: IO[bytes], digest: _Digest) -> None:
    while True:
        line = rfile.readline(MAX_CHUNK_LINE + 1)
        if len(line) > MAX_CHUNK_LINE or not line.endswith(b"\n"):
            raise BodyError(HTTPStatus.BAD_REQUEST, "bad chunk size line")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BodyError(HTTPStatus.BAD_REQUEST, "bad chunk size") from None
        if size < 0 or digest.size + size > MAX_UPLOAD:
            raise BodyError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_UPLOAD} bytes")
        if size == 0:
            for _ in range(100):  # trailers, then the blank line
                trailer = rfile.readline(MAX_CHUNK_LINE + 1)
                if not trailer.strip():
                    return
            raise BodyError(HTTPStatus.BAD_REQUEST, "too many trailers")
        _read_exactly(rfile, size, digest)
        rfile.readline(MAX_CHUNK_LINE)  # the CRLF after each chunk


class SelftestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and the server answers ``Expect: 100-continue``
    timeout = IDLE_TIMEOUT_S  # socket timeout: an idle or stalled connection is closed
    server: SelftestHttpServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._answer_get(with_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer_get(with_body=False)

    def handle_expect_100(self) -> bool:
        length = self._declared_length()
        if length is not None and length > MAX_UPLOAD:
            self._refuse_body(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, time.monotonic(), 0)
            return False
        return super().handle_expect_100()

    def do_POST(self) -> None:  # noqa: N802
        started = time.monotonic()
        digest = _Digest()
        try:
            self._read_body(digest)
        except BodyError as err:
            self._refuse_body(err.status, started, digest.size, note=str(err))
            return
        if self.path != self.server.large_path:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain", started, digest.size)
            return
        ok = digest.size == LARGE_SIZE and digest.sha.hexdigest() == LARGE_SHA256
        note = "match" if ok else f"mismatch sha256={digest.sha.hexdigest()[:16]}"
        self._send(HTTPStatus.OK if ok else HTTPStatus.BAD_REQUEST, b"OK\n" if ok else b"mismatch\n",
                   "text/plain", started, digest.size, note=note)

    def _declared_length(self) -> int | None:
        try:
            return int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return None

    def _read_body(self, digest: _Digest) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            _read_chunked(self.rfile, digest)  # type: ignore[arg-type]
            return
        length = self._declared_length()
        if length is None or length < 0:
            raise BodyError(HTTPStatus.BAD_REQUEST, "bad Content-Length")
        if length > MAX_UPLOAD:
            raise BodyError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"Content-Length {length} over {MAX_UPLOAD}")
        _read_exactly(self.rfile, length, digest)  # type: ignore[arg-type]

    def _refuse_body(self, status: HTTPStatus, started: float, received: int, note: str = "") -> None:
        self.close_connection = True  # the rest of the body is never read
        self._send(status, f"{status.phrase}\n".encode(), "text/plain", started, received,
                   note=note or status.phrase, headers={"Connection": "close"})

    def _answer_get(self, *, with_body: bool) -> None:
        started = time.monotonic()
        if self.path == self.server.small_path:
            self._send(HTTPStatus.OK, b"OK\n", "text/plain", started, 0, with_body=with_body)
        elif self.path == self.server.large_path:
            self._send(HTTPStatus.OK, LARGE_BODY, "application/octet-stream", started, 0, with_body=with_body,
                       headers={"ETag": f'"0x{LARGE_FNV1A64:016x}"', "Cache-Control": "no-store"})
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain", started, 0, with_body=with_body)

    def _send(self, status: HTTPStatus, body: bytes, ctype: str, started: float, received: int, *,
              with_body: bool = True, headers: dict[str, str] | None = None, note: str = "") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if with_body:
            self.wfile.write(body)
        ms = (time.monotonic() - started) * 1000
        sent = len(body) if with_body else 0
        self.server.network_log.write(
            "HTTP", f"{self.client_address[0]} {self.command} {self.path[:300]} {status.value} "
                    f"in={received} out={sent} {ms:.1f}ms{' ' + note if note else ''}")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("http: " + format, *args)


class SelftestHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # TIME_WAIT from a previous run must not block the port
    request_queue_size = 64  # listen backlog: a burst of connections is accepted (and refused) at once

    def __init__(self, host: str, port: int, http_path: str, network_log: NetworkLog) -> None:
        self.small_path = http_path
        self.large_path = http_path + "-large"
        self.network_log = network_log
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.refused = 0
        super().__init__((host, port), SelftestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self.network_log.write("HTTP", f"{client_address[0]} connection refused: "
                                           f"{MAX_CONNECTIONS} connections already open")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: object, client_address: object) -> None:
        # Typically the guest's connection dying with QEMU mid-transfer: worth a log line, not a traceback.
        log.debug("HTTP request from %s ended in an error", client_address, exc_info=True)
