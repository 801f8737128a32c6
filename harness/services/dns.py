"""The guest's name server: the names the real guest's network test resolves, and nothing else.

The guest asks QEMU's user-network DNS (10.0.2.3); QEMU sends the query to the first nameserver of
its own /etc/resolv.conf. Where that is this responder (a private network namespace, or the
container with ``--dns 127.0.0.1``), the lookups are hermetic: host.lan, gateway.lan, dns.lan and
the guest's provisioned ``dns_host`` answer 10.0.2.2 (the host, where the services are),
``--dns-record`` adds names, and every other name is NXDOMAIN, so nothing leaks outside. A name we
know but a type we do not hold (AAAA) gets an empty answer, not NXDOMAIN: the name exists.

Queries are parsed and answered with dnslib; a malformed packet is dropped (and counted), never
answered from a guess.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterable, Mapping

from dnslib import QTYPE, RCODE, RR, A, DNSError, DNSRecord

from harness.services.netlog import NetworkLog
from harness.services.udp import bound_udp_socket

GUEST_HOST = "10.0.2.2"
DEFAULT_NAMES = ("host.lan", "gateway.lan", "dns.lan")
TTL_S = 60
MAX_PACKET = 4096  # a UDP DNS query larger than this is not one


def normalised(name: str) -> str:
    return name.rstrip(".").lower()


class NameTable:
    """The names the responder answers; thread-safe (a CONFIG line adds the guest's dns_host)."""

    def __init__(self, records: Mapping[str, str], default_names: Iterable[str] = DEFAULT_NAMES) -> None:
        self._lock = threading.Lock()
        self._records = {normalised(n): GUEST_HOST for n in default_names}
        self._records.update({normalised(n): ip for n, ip in records.items()})

    def add(self, name: str, address: str = GUEST_HOST) -> None:
        with self._lock:
            self._records.setdefault(normalised(name), address)

    def lookup(self, name: str) -> str | None:
        with self._lock:
            return self._records.get(normalised(name))

    def names(self) -> dict[str, str]:
        with self._lock:
            return dict(self._records)


class DnsResponder:
    def __init__(self, host: str, port: int, table: NameTable, network_log: NetworkLog) -> None:
        self.sock = bound_udp_socket(host, port)
        self.table = table
        self.network_log = network_log
        self.answered = 0
        self.malformed = 0

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def answer(self, packet: bytes) -> tuple[bytes | None, str]:
        """The reply to one query and a line for the log (no reply to what is no query)."""
        try:
            query = DNSRecord.parse(packet)
        except (DNSError, ValueError, IndexError, UnicodeError) as err:
            self.malformed += 1
            return None, f"malformed query of {len(packet)} bytes dropped ({type(err).__name__})"
        if query.header.qr or not query.questions:
            self.malformed += 1
            return None, "not a query: dropped"
        reply = query.reply()
        question = query.q
        name = str(question.qname)
        qtype = QTYPE.get(question.qtype, str(question.qtype))
        address = self.table.lookup(name)
        if address is None:
            reply.header.rcode = RCODE.NXDOMAIN
            outcome = "NXDOMAIN"
        elif question.qtype in (QTYPE.A, QTYPE.ANY):
            reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(address), ttl=TTL_S))
            outcome = f"A {address}"
        else:
            outcome = "NOERROR, no record of that type"
        return reply.pack(), f"{name} {qtype} -> {outcome}"

    def serve(self) -> None:
        while True:
            try:
                packet, peer = self.sock.recvfrom(MAX_PACKET)
            except OSError:
                return  # closed by stop()
            if peer is None:
                return
            data, line = self.answer(packet)
            self.network_log.write("DNS", f"{peer[0]}:{peer[1]} {line}")
            if data is not None:
                try:
                    self.sock.sendto(data, peer)
                    self.answered += 1
                except OSError:
                    continue

    def stop(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def parse_record(text: str) -> tuple[str, str]:
    """``NAME=IPV4`` of ``--dns-record``; ValueError naming what is wrong."""
    name, sep, address = text.partition("=")
    name = normalised(name.strip())
    if not sep or not name or len(name) > 253 or any(not label or len(label) > 63 for label in name.split(".")):
        raise ValueError(f"--dns-record must be NAME=IPV4, not {text!r}")
    try:
        ipaddress.IPv4Address(address.strip())
    except ValueError:
        raise ValueError(f"--dns-record {text!r}: {address!r} is not an IPv4 address") from None
    return name, address.strip()


def first_nameserver(resolv_conf: str = "/etc/resolv.conf") -> str | None:
    """Where QEMU's user networking sends the guest's queries: the first nameserver it reads."""
    try:
        with open(resolv_conf, encoding="utf-8", errors="replace") as stream:
            for line in stream:
                words = line.split()
                if len(words) >= 2 and words[0] == "nameserver":
                    return words[1]
    except OSError:
        return None
    return None
