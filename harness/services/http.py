"""The services the guest reaches on the host: the selftest HTTP endpoints and a UDP echo.

Inside the guest the host is 10.0.2.2 (QEMU user networking); here both listen on 127.0.0.1 only.
Every request and datagram is written to ``http.log``, one line each.
"""

from __future__ import annotations

import errno
import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO

from harness.errors import InfraError, UsageError
from harness.logsetup import get_logger

LISTEN_HOST = "127.0.0.1"
LARGE_SIZE = 1 << 20
LARGE_BODY = bytes(range(256)) * (LARGE_SIZE // 256)
LARGE_SHA256 = hashlib.sha256(LARGE_BODY).hexdigest()
FNV64_OFFSET, FNV64_PRIME = 0xCBF29CE484222325, 0x100000001B3
MAX_UPLOAD = 4 * LARGE_SIZE  # refuse to buffer more than this
MAX_DATAGRAM = 2048
SHUTDOWN_POLL_S = 0.02  # how often serve_forever checks for shutdown: bounds the teardown delay
log = get_logger("services")


def fnv1a64(data: bytes) -> int:
    value = FNV64_OFFSET
    for byte in data:
        value = ((value ^ byte) * FNV64_PRIME) & 0xFFFFFFFFFFFFFFFF
    return value


LARGE_FNV1A64 = 0x8505AE4435522325  # of LARGE_BODY, per the protocol page; a test recomputes it


class RequestLog:
    """The shared ``http.log``: one line a request or datagram, safe across threads."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        with self._lock:
            if self._stream.closed:  # a handler thread finishing after the run ended
                return
            self._stream.write(f"{stamp} {text}\n")
            self._stream.flush()


def _read_chunked(rfile: IO[bytes], limit: int) -> bytes | None:
    """Read a chunked request body; None when it is malformed or larger than ``limit``."""
    body = bytearray()
    while True:
        size_line = rfile.readline(1024).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            return None
        if size == 0:
            while rfile.readline(1024).strip():  # trailers, then the blank line
                pass
            return bytes(body)
        if len(body) + size > limit:
            return None
        body += rfile.read(size)
        rfile.readline(8)  # the CRLF after each chunk


class SelftestHandler(BaseHTTPRequestHandler):
    """GET/HEAD ``<path>`` -> OK; GET ``<path>-large`` -> 1 MiB pattern; POST ``<path>-large`` -> check."""

    protocol_version = "HTTP/1.1"  # keep-alive, and the server answers ``Expect: 100-continue``
    server: _HttpServer

    def do_GET(self) -> None:
        self._answer_get(with_body=True)

    def do_HEAD(self) -> None:
        self._answer_get(with_body=False)

    def do_POST(self) -> None:
        started = time.monotonic()
        body = self._read_body()
        if self.path != self.server.large_path:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain", started, len(body or b""))
            return
        if body is None:
            self._send(HTTPStatus.BAD_REQUEST, b"bad body\n", "text/plain", started, 0, note="unreadable")
            return
        ok = len(body) == LARGE_SIZE and hashlib.sha256(body).hexdigest() == LARGE_SHA256
        status = HTTPStatus.OK if ok else HTTPStatus.BAD_REQUEST
        note = "match" if ok else f"mismatch sha256={hashlib.sha256(body).hexdigest()[:16]}"
        self._send(status, b"OK\n" if ok else b"mismatch\n", "text/plain", started, len(body), note=note)

    def _answer_get(self, *, with_body: bool) -> None:
        started = time.monotonic()
        if self.path == self.server.small_path:
            self._send(HTTPStatus.OK, b"OK\n", "text/plain", started, 0, with_body=with_body)
        elif self.path == self.server.large_path:
            self._send(HTTPStatus.OK, LARGE_BODY, "application/octet-stream", started, 0, with_body=with_body,
                       headers={"ETag": f'"0x{LARGE_FNV1A64:016x}"', "Cache-Control": "no-store"})
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain", started, 0, with_body=with_body)

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return _read_chunked(self.rfile, MAX_UPLOAD)
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return None
        if length < 0 or length > MAX_UPLOAD:
            self.close_connection = True
            return None
        return self.rfile.read(length)

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
        self.server.request_log.write(
            f"HTTP {self.client_address[0]} {self.command} {self.path} {status.value} "
            f"in={received} out={sent} {ms:.1f}ms{' ' + note if note else ''}")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        log.debug("http: " + format, *args)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # TIME_WAIT from a previous run must not block the port

    def handle_error(self, request: object, client_address: object) -> None:
        # Typically the guest's connection dying with QEMU mid-transfer: worth a log line, not a traceback.
        log.debug("HTTP request from %s ended in an error", client_address, exc_info=True)

    def __init__(self, port: int, http_path: str, request_log: RequestLog) -> None:
        self.small_path = http_path
        self.large_path = http_path + "-large"
        self.request_log = request_log
        super().__init__((LISTEN_HOST, port), SelftestHandler)


class _UdpEcho:
    def __init__(self, port: int, request_log: RequestLog) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LISTEN_HOST, port))
        self.request_log = request_log
        self.datagrams = 0

    def serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(65535)
            except OSError:
                return  # closed by stop()
            if peer is None:
                return  # shut down by stop()
            if len(data) > MAX_DATAGRAM:
                self.request_log.write(f"UDP {peer[0]}:{peer[1]} {len(data)} bytes dropped (over {MAX_DATAGRAM})")
                continue
            self.sock.sendto(data, peer)
            self.datagrams += 1
            self.request_log.write(f"UDP {peer[0]}:{peer[1]} {len(data)} bytes echoed")

    def stop(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # a UDP socket that never connected may refuse shutdown; close() still wakes recvfrom
        self.sock.close()


@dataclass(frozen=True)
class ServiceEndpoints:
    http_port: int
    udp_port: int


def _check_port(port: int, what: str) -> None:
    if not 0 <= port <= 65535:
        raise UsageError(f"{what} must be between 1 and 65535, not {port}")


def _bind_error(err: OSError, what: str, port: int) -> InfraError:
    if err.errno == errno.EADDRINUSE:
        return InfraError(f"{what} {port} on {LISTEN_HOST} is already in use (another run, or pass a free port)")
    return InfraError(f"cannot listen on {LISTEN_HOST}:{port} for {what}: {err.strerror}")


@contextmanager
def guest_services(http_port: int, http_path: str, udp_port: int, log_path: Path) -> Iterator[ServiceEndpoints]:
    """Run the HTTP server and the UDP echo for the life of the block; ports 0 pick free ones."""
    _check_port(http_port, "--http-port")
    _check_port(udp_port, "--udp-port")
    if not http_path.startswith("/"):
        raise UsageError(f"--http-path must start with '/': {http_path}")
    with log_path.open("w", encoding="utf-8") as stream:
        request_log = RequestLog(stream)
        try:
            http = _HttpServer(http_port, http_path, request_log)
        except OSError as err:
            raise _bind_error(err, "HTTP port", http_port) from err
        try:
            udp = _UdpEcho(udp_port, request_log)
        except OSError as err:
            http.server_close()
            raise _bind_error(err, "UDP port", udp_port) from err
        threads = [threading.Thread(target=http.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL_S},
                                    name="http", daemon=True),
                   threading.Thread(target=udp.serve, name="udp-echo", daemon=True)]
        for thread in threads:
            thread.start()
        endpoints = ServiceEndpoints(http.server_address[1], udp.sock.getsockname()[1])
        log.info("guest services on %s: http://%s:%d%s, UDP echo %d", LISTEN_HOST, LISTEN_HOST,
                 endpoints.http_port, http_path, endpoints.udp_port)
        try:
            yield endpoints
        finally:
            http.shutdown()
            http.server_close()
            udp.stop()
            for thread in threads:
                thread.join(timeout=2)
