"""The guest's name server over real UDP sockets: what it answers, what it refuses, what it costs."""

from __future__ import annotations

import socket
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib import RCODE, DNSRecord

from harness.devices.net import Net
from harness.errors import UsageError
from harness.outputs import open_new
from harness.services.dns import DnsResponder, NameTable, parse_record
from harness.services.netlog import NetworkLog
from tests.rulesets import device_set


@pytest.fixture
def responder(tmp_path: Path) -> Iterator[tuple[DnsResponder, Path]]:
    log_path = tmp_path / "http.log"
    with open_new(log_path, text=True) as stream:
        server = DnsResponder("127.0.0.1", 0, NameTable({"build.lab": "10.0.2.50"}), NetworkLog(stream))
        server.table.add("win7-selftest.corp")  # what a CONFIG dns_host adds
        thread = threading.Thread(target=server.serve, daemon=True)
        thread.start()
        yield server, log_path
        server.stop()
        thread.join(timeout=2)


def ask(server: DnsResponder, name: str, qtype: str = "A", raw: bytes | None = None) -> DNSRecord | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        sock.sendto(raw if raw is not None else DNSRecord.question(name, qtype).pack(), server.address)
        try:
            return DNSRecord.parse(sock.recv(4096))
        except TimeoutError:
            return None


@pytest.mark.parametrize(("name", "address"), [("host.lan", "10.0.2.2"), ("GATEWAY.lan.", "10.0.2.2"),
                                              ("dns.lan", "10.0.2.2"), ("win7-selftest.corp", "10.0.2.2"),
                                              ("build.lab", "10.0.2.50")])
def test_the_guests_names_answer(responder: tuple[DnsResponder, Path], name: str, address: str) -> None:
    reply = ask(responder[0], name)
    assert reply is not None and reply.header.rcode == RCODE.NOERROR
    assert [str(rr.rdata) for rr in reply.rr] == [address]


def test_every_other_name_is_nxdomain_and_a_known_name_has_no_aaaa(responder: tuple[DnsResponder, Path]) -> None:
    server, log_path = responder
    for name in ("example.com", "windowsupdate.microsoft.com", "host.lan.evil"):
        reply = ask(server, name)
        assert reply is not None and reply.header.rcode == RCODE.NXDOMAIN and not reply.rr
    aaaa = ask(server, "host.lan", "AAAA")
    assert aaaa is not None and aaaa.header.rcode == RCODE.NOERROR and not aaaa.rr  # the name exists
    lines = log_path.read_text().splitlines()
    assert any("DNS" in line and "example.com. A -> NXDOMAIN" in line for line in lines)
    assert any("host.lan. AAAA -> NOERROR, no record of that type" in line for line in lines)


@pytest.mark.attack
def test_a_malformed_packet_is_dropped_not_answered(responder: tuple[DnsResponder, Path]) -> None:
    server, log_path = responder
    assert ask(server, "", raw=b"\x12\x34garbage") is None
    reply = DNSRecord.question("host.lan").reply()  # a response, not a query
    assert ask(server, "", raw=reply.pack()) is None
    assert server.malformed == 2
    assert ask(server, "host.lan") is not None  # and it still answers
    assert "malformed query of 9 bytes dropped" in log_path.read_text()


@pytest.mark.attack
def test_a_query_over_512_bytes(responder: tuple[DnsResponder, Path]) -> None:
    names = [".".join([letter * 60] * 4) + ".example" for letter in "abc"]  # three 250-byte names
    query = DNSRecord.question(names[0])
    for name in names[1:]:  # (distinct, so that no compression shrinks them): the packet passes 512
        query.add_question(DNSRecord.question(name, "TXT").q)
    packet = query.pack()
    assert len(packet) > 512
    reply = ask(responder[0], "", raw=packet)
    assert reply is not None and reply.header.rcode == RCODE.NXDOMAIN


@pytest.mark.attack
def test_a_burst_of_1000_queries_costs_bounded_memory(responder: tuple[DnsResponder, Path]) -> None:
    server, log_path = responder
    tracemalloc.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2.0)
            answers = 0
            for i in range(1000):
                sock.sendto(DNSRecord.question(f"n{i}.example", "A").pack(), server.address)
                if i % 50 == 49:
                    try:
                        while True:
                            sock.settimeout(0.2)
                            sock.recv(4096)
                            answers += 1
                    except TimeoutError:
                        pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answers > 500 and peak < 5 * 1024 * 1024
    assert len(log_path.read_text().splitlines()) < 200  # the network log is rate-limited, not flooded


@pytest.mark.bad_input
@pytest.mark.parametrize(("text", "needle"), [("nohost", "must be NAME=IPV4"), ("=1.2.3.4", "must be NAME=IPV4"),
                                              ("a.lan=999.1.1.1", "is not an IPv4 address"),
                                              ("a.lan=::1", "is not an IPv4 address")])
def test_bad_dns_records(text: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        parse_record(text)
    with pytest.raises(UsageError, match=needle):
        device_set("--dns-record", text)


@pytest.mark.bad_input
def test_a_dns_host_that_is_no_host_name_is_usage() -> None:
    with pytest.raises(UsageError, match="--dns-host must be a host name"):
        device_set("--dns-host", "bad name!")
    net = device_set("--dns-host", "selftest.lab", "--dns-record", "other.lab=10.0.2.77").get(Net)
    assert isinstance(net, Net)
    assert net.names.lookup("selftest.lab") == "10.0.2.2" and net.names.lookup("other.lab") == "10.0.2.77"
    assert net.reaches_host("selftest.lab") and not net.reaches_host("other.lab")  # the URL check knows the names
