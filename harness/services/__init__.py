"""The services the guest reaches on the host: the selftest HTTP endpoints, the UDP echo and the
guest's name server.

Inside the guest the host is 10.0.2.2 (QEMU user networking); here they listen on 127.0.0.1 only.
The name server listens where QEMU sends the guest's queries (the first nameserver of
resolv.conf), when that is a loopback address: in the run's own network namespace or in the
container, 127.0.0.1:53. Every request, datagram and query is written to the network log
(``http.log``), one line each.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.errors import InfraError, UsageError
from harness.logsetup import get_logger
from harness.outputs import open_new
from harness.services.dns import DnsResponder, NameTable, first_nameserver
from harness.services.http import LARGE_BODY, LARGE_FNV1A64, LARGE_SIZE, SelftestHttpServer, fnv1a64
from harness.services.netlog import NetworkLog
from harness.services.udp import UdpEcho

__all__ = ["LARGE_BODY", "LARGE_FNV1A64", "LARGE_SIZE", "LISTEN_HOST", "ServiceEndpoints", "fnv1a64",
           "guest_services"]

LISTEN_HOST = "127.0.0.1"
SHUTDOWN_POLL_S = 0.02  # how often serve_forever checks for shutdown: bounds the teardown delay
log = get_logger("services")


DNS_PORT = 53


@dataclass(frozen=True)
class ServiceEndpoints:
    http_port: int
    udp_port: int | None
    dns: str | None = None  # where the name server answers ("127.0.0.1:53"), None when it does not
    dns_note: str = ""  # why not, or how hermetic it is


def _start_dns(names: NameTable, network_log: NetworkLog, port: int) -> tuple[DnsResponder | None, str]:
    nameserver = first_nameserver()
    if nameserver is None or not nameserver.startswith("127."):
        from harness.netns import in_container  # late: netns reads resolv.conf with this package's helper

        fix = ("give the container --dns 127.0.0.1 (and --network none), as aero-win7-docker does" if in_container()
               else "isolate the run, or use the container")
        return None, (f"the guest's name lookups go to {nameserver or 'no nameserver'} (this process's resolv.conf), "
                      f"not to the harness: they are not hermetic ({fix})")
    try:
        return DnsResponder(nameserver, port, names, network_log), f"answering on {nameserver}:{port}"
    except OSError as err:
        return None, (f"cannot answer the guest's name lookups on {nameserver}:{port} ({err.strerror}); they go to "
                      "whatever listens there")


def _check_port(port: int, what: str) -> None:
    if not 0 <= port <= 65535:
        raise UsageError(f"{what} must be between 1 and 65535, not {port}")


def _bind_error(err: OSError, what: str, port: int) -> InfraError:
    if err.errno == errno.EADDRINUSE:
        return InfraError(f"{what} {port} on {LISTEN_HOST} is already in use (another run, or pass a free port)")
    return InfraError(f"cannot listen on {LISTEN_HOST}:{port} for {what}: {err.strerror}")


@contextmanager
def guest_services(http_port: int, http_path: str, udp_port: int | None, log_path: Path,
                   names: NameTable | None = None, dns_port: int = DNS_PORT) -> Iterator[ServiceEndpoints]:
    """Run the HTTP server, the UDP echo (none when ``udp_port`` is None: --disable-udp) and, with
    ``names``, the name server, for the life of the block; ports 0 pick free ones."""
    _check_port(http_port, "--http-port")
    if udp_port is not None:
        _check_port(udp_port, "--udp-port")
    if not http_path.startswith("/"):
        raise UsageError(f"--http-path must start with '/': {http_path}")
    with open_new(log_path, text=True) as stream:
        network_log = NetworkLog(stream)
        try:
            http = SelftestHttpServer(LISTEN_HOST, http_port, http_path, network_log)
        except OSError as err:
            raise _bind_error(err, "HTTP port", http_port) from err
        udp = None
        if udp_port is not None:
            try:
                udp = UdpEcho(LISTEN_HOST, udp_port, network_log)
            except OSError as err:
                http.server_close()
                raise _bind_error(err, "UDP port", udp_port) from err
        dns, dns_note = _start_dns(names, network_log, dns_port) if names is not None else (None, "")
        threads = [threading.Thread(target=http.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL_S},
                                    name="http", daemon=True)]
        if udp is not None:
            threads.append(threading.Thread(target=udp.serve, name="udp-echo", daemon=True))
        if dns is not None:
            threads.append(threading.Thread(target=dns.serve, name="dns", daemon=True))
        for thread in threads:
            thread.start()
        endpoints = ServiceEndpoints(http.server_address[1], udp.port if udp is not None else None,
                                     f"{dns.address[0]}:{dns.address[1]}" if dns is not None else None, dns_note)
        log.info("guest services on %s: http://%s:%d%s, %s", LISTEN_HOST, LISTEN_HOST, endpoints.http_port,
                 http_path, f"UDP echo {endpoints.udp_port}" if udp is not None else "no UDP echo (--disable-udp)")
        if names is not None:
            from harness.netns import fallback_warned  # late, as above

            # Not hermetic is a warning, unless the isolation's own warning already said so.
            (log.warning if dns is None and not fallback_warned() else log.info)("guest name server: %s", dns_note)
        try:
            yield endpoints
        finally:
            http.shutdown()
            http.server_close()
            if udp is not None:
                udp.stop()
            if dns is not None:
                dns.stop()
            for thread in threads:
                thread.join(timeout=2)
            network_log.close()
