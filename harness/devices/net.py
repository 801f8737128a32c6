"""virtio-net: the guest's NIC on QEMU user networking, and the services the guest's network test
talks to on the host (HTTP, UDP echo, its name server).

Contract layout: ``virtio-net-pci,disable-legacy=on`` (1AF4:1041, revision 01); transitional:
QEMU's default 1AF4:1000. The NIC's id (``nic0``) is what QMP ``set_link`` names.
"""

from __future__ import annotations

import argparse
import urllib.parse
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.devices.base import (
    Board,
    ConfigCheck,
    ConfigHint,
    Device,
    DriverNeeds,
    ExpectedFunction,
    Output,
    add_vectors_argument,
    flag,
    msix_rule,
    provisioned_for,
    provisioned_without,
    required,
    requires_msix_but_intx,
)
from harness.errors import ExitCode, UsageError
from harness.hostnames import is_host_name
from harness.outputs import HTTP_LOG, output_path
from harness.protocol import Status
from harness.qemu.cmdline import opts
from harness.rules import CheckRule, MarkerRule, counter, order_of
from harness.services.dns import NameTable, parse_record
from harness.verdict import NOT_REPORTED, Failure, GuestReport, Rule, Verdict

if TYPE_CHECKING:
    from harness.actions import Reaction

NETDEV_ID = "net0"
DEVICE_ID = "nic0"  # what QMP set_link names
CONTRACT_ID, TRANSITIONAL_ID = 0x1041, 0x1000
# The Aero net miniport shares the blk miniport's transport code: virtio capabilities in BAR0 only.
AERO_DRIVER_NEEDS = DriverNeeds(
    registers_in_bar0=True, consequence="the guest has no network adapter",
    explains=("VIRTIO_NET_FAILED", "VIRTIO_NET_UDP_FAILED"), absent_words=("no virtio net adapters detected",))
GUEST_HOST = "10.0.2.2"  # the host, as QEMU user networking shows it to the guest
DEFAULT_HTTP_PORT, DEFAULT_UDP_PORT = 18080, 18081
DEFAULT_HTTP_PATH = "/aero-virtio-selftest"
DEFAULT_LINK_DOWN_S = 3.0
CSUM_MARKER = "virtio-net-offload-csum"


@dataclass(frozen=True)
class Net(Device):
    family = "virtio-net"
    short = "net"
    vectors: int | None = None
    http_port: int = DEFAULT_HTTP_PORT
    http_path: str = DEFAULT_HTTP_PATH
    udp_port: int = DEFAULT_UDP_PORT
    disable_udp: bool = False
    http_log: Path | None = None
    with_link_flap: bool = False
    link_down_s: float = DEFAULT_LINK_DOWN_S
    require_msix: bool = False
    require_csum_offload: bool = False
    require_udp_csum_offload: bool = False
    dns_host: str | None = None
    dns_records: tuple[tuple[str, str], ...] = ()
    names: NameTable = field(default_factory=lambda: NameTable({}), compare=False)  # what the name server answers

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("virtio-net and the guest services (on 127.0.0.1; 10.0.2.2 inside the guest)")
        g.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT, metavar="PORT",
                       help="(default: %(default)s)")
        g.add_argument("--http-path", default=DEFAULT_HTTP_PATH, metavar="PATH", help="(default: %(default)s)")
        g.add_argument("--udp-port", type=int, default=DEFAULT_UDP_PORT, metavar="PORT",
                       help="UDP echo port (default: %(default)s)")
        flag(g, "--disable-udp", help="start no UDP echo and do not require the guest's virtio-net-udp test")
        g.add_argument("--http-log", type=output_path, default=None, metavar="PATH",
                       help=f"where the network log goes (default: OUT_DIR/{HTTP_LOG})")
        add_vectors_argument(g, "net", "virtio-net NIC")
        flag(g, "--with-net-link-flap", "--with-virtio-net-link-flap", "--require-virtio-net-link-flap",
             "--enable-virtio-net-link-flap",
             help="take the NIC's link down and up over QMP (set_link) when the guest says "
                  "virtio-net-link-flap|READY; the guest's test must PASS (provision the image with "
                  "--test-net-link-flap)")
        g.add_argument("--net-link-flap-down-seconds", type=float, default=DEFAULT_LINK_DOWN_S, metavar="S",
                       help="how long --with-net-link-flap holds the link down (default: %(default)s)")
        flag(g, "--require-virtio-net-msix", "--require-net-msix",
             help="the guest's virtio-net-msix marker must report mode=msix")
        flag(g, "--require-net-csum-offload", "--require-virtio-net-csum-offload",
             help="the guest's virtio-net-offload-csum marker must PASS with tx_csum > 0")
        flag(g, "--require-net-udp-csum-offload", "--require-virtio-net-udp-csum-offload",
             help="... and with UDP checksums offloaded (tx_udp > 0)")
        g.add_argument("--dns-host", default=None, metavar="NAME",
                       help="the name the guest was provisioned to resolve (besides host.lan, gateway.lan, dns.lan, "
                            "which always answer 10.0.2.2; the guest's CONFIG dns_host is added too)")
        g.add_argument("--dns-record", action="append", default=[], metavar="NAME=IPV4",
                       help="one more name the guest's name server answers (repeatable); every other name is "
                            "NXDOMAIN")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Net:
        return cls(vectors=args.virtio_net_vectors, http_port=args.http_port, http_path=args.http_path,
                   udp_port=args.udp_port, disable_udp=args.disable_udp, http_log=args.http_log,
                   with_link_flap=args.with_net_link_flap, link_down_s=args.net_link_flap_down_seconds,
                   require_msix=args.require_virtio_net_msix, require_csum_offload=args.require_net_csum_offload,
                   require_udp_csum_offload=args.require_net_udp_csum_offload, dns_host=args.dns_host,
                   dns_records=tuple(_records(args.dns_record)),
                   names=NameTable(dict(_records(args.dns_record)) | ({args.dns_host: GUEST_HOST} if args.dns_host
                                                                    and is_host_name(args.dns_host) else {})))

    def check(self, board: Board) -> None:
        super().check(board)
        for name, port in (("--http-port", self.http_port), ("--udp-port", self.udp_port)):
            if not 1 <= port <= 65535:
                raise UsageError(f"{name} must be between 1 and 65535, not {port}")
        if not self.http_path.startswith("/") or any(c.isspace() for c in self.http_path):
            raise UsageError(f"--http-path must start with '/' and hold no spaces: {self.http_path!r}")
        if not 0 < self.link_down_s <= 600:  # checked with or without the flap: a script's typo shows at once
            raise UsageError(f"--net-link-flap-down-seconds must be more than 0 and at most 600, "
                             f"not {self.link_down_s:g}")
        if self.require_msix and board.disable_msix:
            raise UsageError("--virtio-disable-msix and --require-virtio-net-msix exclude each other")
        if self.dns_host is not None and not is_host_name(self.dns_host):
            raise UsageError(f"--dns-host must be a host name (letters, digits, '-' and dots), not {self.dns_host!r}")

    def log_path(self, out_dir: Path) -> Path:
        return self.http_log if self.http_log is not None else out_dir / HTTP_LOG

    def outputs(self, out_dir: Path) -> list[Output]:
        return [Output("network_log", "--http-log" if self.http_log else "--out-dir", self.log_path(out_dir))]

    # -- QEMU -----------------------------------------------------------------------------------------
    def qemu_args(self, board: Board, written: Mapping[Path, Path]) -> list[str]:
        props: dict[str, object] = {"netdev": NETDEV_ID, "id": DEVICE_ID}
        if board.contract:
            props["disable-legacy"] = True
        return ["-netdev", opts("user", id=NETDEV_ID), *self.device_arg(board, "virtio-net-pci", props)]

    def pci(self, board: Board) -> list[ExpectedFunction]:
        if not board.contract:
            return [ExpectedFunction(DEVICE_ID, self.family, (TRANSITIONAL_ID,))]
        return [ExpectedFunction(DEVICE_ID, self.family, (CONTRACT_ID,), needs=AERO_DRIVER_NEEDS)]

    def provisioning(self) -> list[str]:
        words = ["--http-url", self.served_url(), "--udp-port", str(self.udp_port)]
        if self.dns_host:
            words += ["--dns-host", self.dns_host]
        return words + (["--test-net-link-flap"] if self.with_link_flap else [])

    # -- the host --------------------------------------------------------------------------------------
    def services(self, board: Board) -> AbstractContextManager[Any]:
        from harness.services import guest_services

        return guest_services(self.http_port, self.http_path, None if self.disable_udp else self.udp_port,
                              self.log_path(board.out_dir), self.names)

    def reactions(self, board: Board) -> Sequence[Reaction]:
        if not self.with_link_flap:
            return []
        from harness.actions import link_flap_reaction

        return [link_flap_reaction(DEVICE_ID, self.link_down_s)]

    # -- the verdict ----------------------------------------------------------------------------------
    def rules(self, board: Board) -> Sequence[Rule]:
        rules: list[Rule] = [required(self.family, board, keys=(
            "large_ok", "large_bytes", "large_fnv1a64", "upload_ok", "upload_bytes", "dns_name", "irq_mode"),
            fail_hint=self._without_udp_echo if self.disable_udp else None)]
        if board.contract and not self.disable_udp:
            rules.append(MarkerRule("virtio-net-udp", f"{board.because()} (unless --disable-udp)",
                                    keys=("bytes", "small_bytes", "mtu_bytes", "wsa")))
        if self.with_link_flap:
            rules.append(MarkerRule("virtio-net-link-flap", "--with-net-link-flap", provision="--test-net-link-flap",
                                    keys=("down_sec", "up_sec", "http_attempts")))
        if self.require_msix:
            rules.append(msix_rule(self.family, "--require-virtio-net-msix"))
        if self.require_csum_offload or self.require_udp_csum_offload:
            rules.append(CheckRule(CSUM_MARKER, self._csum))
        return rules

    def config_checks(self, board: Board) -> Sequence[ConfigCheck]:
        checks: list[ConfigCheck] = [self._learn_dns_host, self._http_url]
        if not self.disable_udp:
            checks.append(self._udp_port)
        return checks

    def config_hints(self, board: Board) -> Sequence[ConfigHint]:
        hints: list[ConfigHint] = []
        hint = provisioned_without if self.with_link_flap else provisioned_for
        hints.append(hint("test_net_link_flap", "--test-net-link-flap", "--with-net-link-flap", "virtio-net-link-flap"))
        if board.disable_msix:
            hints.append(requires_msix_but_intx("require_net_msix", self.family))
        return hints

    @staticmethod
    def _without_udp_echo(report: GuestReport) -> str | None:
        """The real guest always sends its UDP datagrams first and gives up its network test when no
        echo comes: with --disable-udp that is the likely cause."""
        udp = report.tests.get("virtio-net-udp")
        if udp is None or udp.status is not Status.FAIL:
            return None
        return ("the UDP echo is off (--disable-udp) and this guest stops its network test when the echo fails: "
                "run it without --disable-udp")

    def served_url(self) -> str:
        return f"http://{GUEST_HOST}:{self.http_port}{self.http_path}"

    def _learn_dns_host(self, config: dict[str, str]) -> Verdict | None:
        """The name the guest was provisioned to resolve first answers 10.0.2.2 too."""
        name = config.get("dns_host")
        if name and is_host_name(name):
            self.names.add(name)
        return None

    def _udp_port(self, config: dict[str, str]) -> Verdict | None:
        value = config.get("udp_port")
        if value is None or not value.isdigit() or int(value) == self.udp_port:
            return None
        return Verdict("UDP_PORT_MISMATCH", ExitCode.FAIL,
                       f"the guest was provisioned for UDP port {value} (CONFIG udp_port={value}) but the harness "
                       f"echoes on {self.udp_port}: pass --udp-port {value}, or re-provision the image with "
                       f"--udp-port {self.udp_port}")

    def _http_url(self, config: dict[str, str]) -> Verdict | None:
        url = config.get("http_url")
        if not url:
            return None
        mismatch = url_mismatch(url, self.http_port, self.http_path, self.reaches_host)
        if mismatch is None:
            return None
        return Verdict("HTTP_URL_MISMATCH", ExitCode.FAIL,
                       f"the guest was provisioned with http_url={url} but the harness serves {self.served_url()}: "
                       f"{mismatch}")

    def reaches_host(self, host: str) -> bool:
        """Whether the guest reaches the harness's services by this name or address."""
        return host == GUEST_HOST or self.names.lookup(host) == GUEST_HOST

    def _csum(self, report: GuestReport) -> Failure | None:
        udp_only = not self.require_csum_offload
        base = "VIRTIO_NET_UDP_CSUM_OFFLOAD" if udp_only else "VIRTIO_NET_CSUM_OFFLOAD"
        outcome = report.tests.get(CSUM_MARKER)
        if outcome is None:
            return Failure(f"MISSING_{base}", f"no {CSUM_MARKER} marker (the guest selftest may be too old)",
                           NOT_REPORTED)
        order = order_of(report, CSUM_MARKER)
        if outcome.status.value != "PASS":
            return Failure(f"{base}_FAILED", f"{CSUM_MARKER} {outcome.status.value} (status={outcome.status.value})",
                           order)
        fields = outcome.fields
        if self.require_csum_offload:
            tx = counter(fields.get("tx_csum"))
            if tx is None:
                return Failure("VIRTIO_NET_CSUM_OFFLOAD_MISSING_FIELDS", f"{CSUM_MARKER} has no tx_csum counter",
                               order)
            if tx <= 0:
                return Failure("VIRTIO_NET_CSUM_OFFLOAD_ZERO", f"no checksum was offloaded (tx_csum={tx} "
                                                               f"rx_csum={fields.get('rx_csum', '?')} "
                                                               f"fallback={fields.get('fallback', '?')})", order)
        if self.require_udp_csum_offload:
            udp = counter(fields.get("tx_udp"))
            if udp is None:
                parts = [counter(fields.get("tx_udp4")), counter(fields.get("tx_udp6"))]
                if all(p is None for p in parts):
                    return Failure("VIRTIO_NET_UDP_CSUM_OFFLOAD_MISSING_FIELDS",
                                   f"{CSUM_MARKER} has no tx_udp (or tx_udp4/tx_udp6) counter", order)
                udp = sum(p or 0 for p in parts)
            if udp <= 0:
                return Failure("VIRTIO_NET_UDP_CSUM_OFFLOAD_ZERO",
                               f"no UDP checksum was offloaded (tx_udp={udp} tx_udp4={fields.get('tx_udp4', '?')} "
                               f"tx_udp6={fields.get('tx_udp6', '?')} fallback={fields.get('fallback', '?')})", order)
        return None


def _records(texts: Sequence[str]) -> list[tuple[str, str]]:
    try:
        return [parse_record(text) for text in texts]
    except ValueError as err:
        raise UsageError(str(err)) from None


def url_mismatch(url: str, port: int, path: str, reaches: Any) -> str | None:
    """What differs between the guest's provisioned URL and what the harness serves, with the fix."""
    try:
        parts = urllib.parse.urlsplit(url)
        guest_port = parts.port or (80 if parts.scheme == "http" else 443)
    except ValueError:
        return "the guest's URL cannot be read; re-provision the image with --http-url"
    if parts.scheme != "http":
        return f"the harness serves plain http, not {parts.scheme}; re-provision the image with an http:// URL"
    host = parts.hostname or ""
    if not reaches(host):
        return (f"the guest reaches the harness only at {GUEST_HOST} (QEMU user networking), not at {host}; "
                f"re-provision the image with --http-url http://{GUEST_HOST}:{guest_port}{parts.path}")
    fixes = []
    if guest_port != port:
        fixes.append(f"--http-port {guest_port}")
    if (parts.path or "/") != path:
        fixes.append(f"--http-path {parts.path or '/'}")
    return f"pass {' '.join(fixes)} to match the image" if fixes else None
