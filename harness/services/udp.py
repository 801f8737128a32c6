"""The selftest's UDP echo: every datagram goes back to its sender unchanged (over 2048 bytes: dropped)."""

from __future__ import annotations

import socket

from harness.services.netlog import NetworkLog

MAX_DATAGRAM = 2048


def bound_udp_socket(host: str, port: int) -> socket.socket:
    """A UDP socket bound to host:port (closed again when the bind fails)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class UdpEcho:
    def __init__(self, host: str, port: int, network_log: NetworkLog) -> None:
        self.sock = bound_udp_socket(host, port)
        self.network_log = network_log
        self.datagrams = 0

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(65535)
            except OSError:
                return  # closed by stop()
            if peer is None:
                return  # shut down by stop()
            if len(data) > MAX_DATAGRAM:
                self.network_log.write("UDP", f"{peer[0]}:{peer[1]} {len(data)} bytes dropped (over {MAX_DATAGRAM})")
                continue
            try:
                self.sock.sendto(data, peer)
            except OSError as err:
                self.network_log.write("UDP", f"{peer[0]}:{peer[1]} {len(data)} bytes not echoed: {err.strerror}")
                continue
            self.datagrams += 1
            self.network_log.write("UDP", f"{peer[0]}:{peer[1]} {len(data)} bytes echoed")

    def stop(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # a UDP socket that never connected may refuse shutdown; close() still wakes recvfrom
        self.sock.close()
