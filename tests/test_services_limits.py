"""The guest services stay bounded whatever a client does: memory, threads, idle connections, log size.

The services run in a child process of their own, so that its peak memory (VmHWM) and its thread
count can be read from /proc, as they would be for a real run.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.services.http import MAX_CONNECTIONS, MAX_UPLOAD

PATH = "/aero-virtio-selftest"
CHILD = """
import json, sys, time
from pathlib import Path
from harness.services import guest_services
from harness.services import http
http.SelftestHandler.timeout = float(sys.argv[2])
with guest_services(0, "/aero-virtio-selftest", 0, Path(sys.argv[1])) as ends:
    print(json.dumps({"http": ends.http_port, "udp": ends.udp_port}), flush=True)
    sys.stdin.read()  # until the test closes our stdin
"""


@dataclass
class Services:
    proc: subprocess.Popen[str]
    http_port: int
    udp_port: int
    log: Path

    def status(self, key: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    @property
    def peak_rss_mb(self) -> float:
        return self.status("VmHWM") / 1024

    @property
    def threads(self) -> int:
        return self.status("Threads")


def start_services(tmp_path: Path, idle_timeout: float = 30.0) -> Services:
    log = tmp_path / "http.log"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(log), str(idle_timeout)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
    assert proc.stdout is not None
    ports = json.loads(proc.stdout.readline())
    return Services(proc, ports["http"], ports["udp"], log)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    svc = start_services(tmp_path)
    yield svc
    svc.proc.communicate(input="", timeout=30)


def post_stream(port: int, chunks: Iterator[bytes], chunked: bool, length: int | None = None) -> tuple[int, int]:
    """POST a body from ``chunks``; (status, bytes sent before the server stopped reading)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = f"POST {PATH}-large HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
    head += "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {length}\r\n"
    sock.sendall((head + "\r\n").encode())
    sent = 0
    try:
        for chunk in chunks:
            frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk
            sock.sendall(frame)
            sent += len(chunk)
    except OSError:
        pass  # the server closed the connection once it had enough
    try:
        answer = sock.recv(4096)
    except OSError:
        answer = b""
    sock.close()
    status = int(answer.split()[1]) if answer.startswith(b"HTTP/") else 0
    return status, sent


def megabytes(total_mb: int) -> Iterator[bytes]:
    block = bytes(1 << 20)
    for _ in range(total_mb):
        yield block


@pytest.mark.attack
def test_a_chunked_gigabyte_is_refused_at_the_limit_without_buffering(services: Services) -> None:
    status, sent = post_stream(services.http_port, megabytes(1024), chunked=True)
    assert status == 413
    assert sent < 64 * (1 << 20)  # the server stopped reading soon after MAX_UPLOAD
    assert services.peak_rss_mb < 60


@pytest.mark.attack
def test_a_huge_content_length_is_refused_before_reading(services: Services) -> None:
    status, sent = post_stream(services.http_port, megabytes(0), chunked=False, length=10 * 1024 ** 3)
    assert status == 413 and sent == 0


def concurrent_uploads(services: Services, clients: int) -> tuple[list[int], int]:
    """``clients`` uploads of 4 MiB at once: their answers, and the most threads the services ran."""
    statuses: list[int] = []
    lock = threading.Lock()

    def upload() -> None:
        status, _ = post_stream(services.http_port, megabytes(4), chunked=False, length=4 << 20)
        with lock:
            statuses.append(status)

    workers = [threading.Thread(target=upload) for _ in range(clients)]
    for worker in workers:
        worker.start()
    peak_threads = 0
    while any(w.is_alive() for w in workers):
        peak_threads = max(peak_threads, services.threads)
        time.sleep(0.01)
    return statuses, peak_threads


@pytest.mark.attack
def test_200_concurrent_4_mib_uploads_stay_under_100_mb(services: Services) -> None:
    statuses, peak_threads = concurrent_uploads(services, 200)
    assert len(statuses) == 200
    assert statuses.count(400) >= MAX_CONNECTIONS // 2  # served: the right size, the wrong content (zeros)
    assert services.peak_rss_mb < 100, services.peak_rss_mb
    assert peak_threads <= MAX_CONNECTIONS + 8
    assert MAX_UPLOAD == 4 << 20


@pytest.mark.attack
def test_idle_connections_are_capped_and_closed(tmp_path: Path) -> None:
    svc = start_services(tmp_path, idle_timeout=1.0)
    try:
        idle = [socket.create_connection(("127.0.0.1", svc.http_port)) for _ in range(300)]
        time.sleep(0.3)
        assert svc.threads <= MAX_CONNECTIONS + 8
        time.sleep(1.5)  # past the idle timeout: every served connection was closed
        for sock in idle:
            sock.settimeout(2)
            assert sock.recv(1) == b""
            sock.close()
        conn = http.client.HTTPConnection("127.0.0.1", svc.http_port, timeout=10)
        conn.request("GET", PATH)
        assert conn.getresponse().status == 200  # and the guest is served again
        conn.close()
    finally:
        svc.proc.communicate(input="", timeout=30)


@pytest.mark.attack
def test_a_udp_flood_costs_a_bounded_number_of_log_lines(services: Services) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.001)
    started = time.monotonic()
    for i in range(5000):
        sock.sendto(b"x" * 32, ("127.0.0.1", services.udp_port))
        if i % 50 == 0:
            try:
                while sock.recv(64):
                    pass
            except OSError:
                pass
    seconds = time.monotonic() - started
    time.sleep(1.2)
    sock.sendto(b"last", ("127.0.0.1", services.udp_port))  # a line after the flood carries the summary
    time.sleep(0.3)
    sock.close()
    lines = services.log.read_text().splitlines()
    udp = [line for line in lines if " UDP " in line]
    assert len(udp) <= 20 * (int(seconds) + 3) + 10
    assert any("more not logged" in line for line in udp)
