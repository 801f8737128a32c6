"""The guest services over real sockets: the HTTP endpoints and the UDP echo of the protocol page."""

from __future__ import annotations

import http.client
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import InfraError, UsageError
from harness.services import LARGE_BODY, LARGE_FNV1A64, ServiceEndpoints, fnv1a64, guest_services

PATH = "/aero-virtio-selftest"


@pytest.fixture
def services(tmp_path: Path) -> Iterator[tuple[ServiceEndpoints, Path]]:
    log = tmp_path / "http.log"
    with guest_services(0, PATH, 0, log) as endpoints:
        yield endpoints, log


def log_lines(log: Path, count: int, timeout: float = 5.0) -> list[str]:
    """The log's lines once it has ``count`` of them: the server logs a request after answering it."""
    deadline = time.monotonic() + timeout
    while True:
        lines = log.read_text().splitlines()
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.01)


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_the_pattern_hash_is_the_documented_one() -> None:
    assert len(LARGE_BODY) == 1048576 and LARGE_BODY[:3] == b"\x00\x01\x02" and LARGE_BODY[256] == 0
    assert LARGE_FNV1A64 == 0x8505AE4435522325 == fnv1a64(LARGE_BODY)


def test_small_get_and_head(services: tuple[ServiceEndpoints, Path]) -> None:
    endpoints, log = services
    status, headers, body = request(endpoints.http_port, "GET", PATH)
    assert (status, body, headers["content-type"]) == (200, b"OK\n", "text/plain")
    status, headers, body = request(endpoints.http_port, "HEAD", PATH)
    assert (status, body, headers["content-length"]) == (200, b"", "3")
    lines = log_lines(log, 2)
    assert len(lines) == 2 and f"GET {PATH} 200" in lines[0] and f"HEAD {PATH} 200" in lines[1]


def test_large_get(services: tuple[ServiceEndpoints, Path]) -> None:
    endpoints, _ = services
    status, headers, body = request(endpoints.http_port, "GET", PATH + "-large")
    assert status == 200 and body == LARGE_BODY
    assert headers["content-length"] == "1048576" and headers["content-type"] == "application/octet-stream"
    assert headers["etag"] == '"0x8505ae4435522325"' and headers["cache-control"] == "no-store"


def test_large_post_checked_by_sha256(services: tuple[ServiceEndpoints, Path]) -> None:
    endpoints, log = services
    assert request(endpoints.http_port, "POST", PATH + "-large", LARGE_BODY)[:3:2] == (200, b"OK\n")
    corrupt = bytearray(LARGE_BODY)
    corrupt[4242] ^= 1
    assert request(endpoints.http_port, "POST", PATH + "-large", bytes(corrupt))[0] == 400
    assert request(endpoints.http_port, "POST", PATH + "-large", LARGE_BODY[:-1])[0] == 400
    text = "\n".join(log_lines(log, 3))
    assert "in=1048576 out=3" in text and "match" in text and "mismatch" in text


def test_post_with_expect_100_continue_over_a_raw_socket(services: tuple[ServiceEndpoints, Path]) -> None:
    endpoints, _ = services
    with socket.create_connection(("127.0.0.1", endpoints.http_port), timeout=10) as sock:
        sock.sendall(f"POST {PATH}-large HTTP/1.1\r\nHost: 10.0.2.2\r\nContent-Length: 1048576\r\n"
                     "Expect: 100-continue\r\n\r\n".encode())
        interim = sock.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 Continue")  # before any byte of the body was sent
        sock.sendall(LARGE_BODY)
        reply = b""
        while b"OK\n" not in reply:
            chunk = sock.recv(4096)
            assert chunk, reply
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200")


def test_chunked_upload(services: tuple[ServiceEndpoints, Path]) -> None:
    endpoints, _ = services
    body = b"".join(b"%x\r\n" % len(part) + part + b"\r\n" for part in
                    (LARGE_BODY[i:i + 65536] for i in range(0, len(LARGE_BODY), 65536))) + b"0\r\n\r\n"
    status, _, reply = request(endpoints.http_port, "POST", PATH + "-large", body,
                               {"Transfer-Encoding": "chunked"})
    assert (status, reply) == (200, b"OK\n")


@pytest.mark.parametrize(("method", "path"), [("GET", "/"), ("GET", PATH + "-other"), ("POST", PATH),
                                              ("GET", PATH + "-large/x")])
def test_anything_else_is_404(services: tuple[ServiceEndpoints, Path], method: str, path: str) -> None:
    assert request(services[0].http_port, method, path, b"x" if method == "POST" else None)[0] == 404


@pytest.mark.attack
def test_udp_echo_and_oversized_datagrams_are_dropped(services: tuple[ServiceEndpoints, Path]) -> None:
    endpoints, log = services
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        for payload in (b"ping", bytes(range(256)) * 8):  # 4 and 2048 bytes: both echoed unchanged
            sock.sendto(payload, ("127.0.0.1", endpoints.udp_port))
            assert sock.recvfrom(4096)[0] == payload
        sock.sendto(b"x" * 2049, ("127.0.0.1", endpoints.udp_port))
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recvfrom(4096)
    text = "\n".join(log_lines(log, 3))
    assert "4 bytes echoed" in text and "2048 bytes echoed" in text and "2049 bytes dropped" in text


@pytest.mark.fault
def test_a_taken_port_is_an_infra_error_naming_it(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(InfraError, match=f"HTTP port {port} "), guest_services(port, PATH, 0, tmp_path / "l"):
            pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy_udp:
        busy_udp.bind(("127.0.0.1", 0))
        port = busy_udp.getsockname()[1]
        with pytest.raises(InfraError, match=f"UDP port {port} "), guest_services(0, PATH, port, tmp_path / "l"):
            pass


def test_the_services_listen_on_loopback_only(services: tuple[ServiceEndpoints, Path]) -> None:
    endpoints, _ = services
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.2", endpoints.http_port), timeout=2).close()


@pytest.mark.bad_input
def test_bad_path_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError), guest_services(0, "no-slash", 0, tmp_path / "l"):
        pass


@pytest.mark.fault
def test_a_guest_dying_mid_download_is_logged_not_a_traceback(services: tuple[ServiceEndpoints, Path],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    endpoints, log = services
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", endpoints.http_port), timeout=5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(f"GET {PATH}-large HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, like a killed QEMU
        sock.close()
    assert request(endpoints.http_port, "GET", PATH)[0] == 200  # the server goes on serving
    assert "Traceback" not in capsys.readouterr().err
