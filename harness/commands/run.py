"""``aero-win7-harness run``: boot the image, serve the guest, watch COM1, return the verdict."""

from __future__ import annotations

import argparse
from typing import NoReturn

from harness.devices import Layout
from harness.devices import add_arguments as add_device_arguments
from harness.errors import UsageError
from harness.options import OUT_DIR_ENV
from harness.outputs import output_path, path_arg
from harness.qemu.binary import DEFAULT_QEMU_SYSTEM

HELP = "boot a prepared image under QEMU and report the guest selftest's verdict (the default)"


def add_run_options(parser: argparse.ArgumentParser, *, disk_required: bool = True) -> None:
    """The options of a run; shared by ``run`` and ``selfcheck`` (which brings its own disk)."""
    g = parser.add_argument_group("guest and QEMU")
    g.add_argument("--qemu-system", default=DEFAULT_QEMU_SYSTEM, metavar="PATH",
                   help="QEMU system emulator, a name on PATH or a path (default: %(default)s)")
    g.add_argument("--disk-image", type=path_arg, required=disk_required, metavar="PATH",
                   help="the prepared guest image (qcow2, raw, ...); it is never modified unless --write-to-image")
    g.add_argument("--snapshot", action="store_true",
                   help="let QEMU discard the guest's writes (snapshot=on) instead of keeping an overlay in --out-dir")
    g.add_argument("--write-to-image", action="store_true",
                   help="let the guest write into --disk-image itself (changes the image; off by default)")
    g.add_argument("--memory-mb", type=int, default=2048, metavar="MB", help="guest memory (default: %(default)s)")
    g.add_argument("--smp", type=int, default=2, metavar="N", help="guest CPUs (default: %(default)s)")
    g.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                   help="auto uses KVM only when it can really run a guest, else TCG (default: %(default)s)")
    g.add_argument("--timeout-seconds", type=float, default=600.0, metavar="S",
                   help="give up when no RESULT line came within this time (default: %(default)s)")
    g.add_argument("--network-isolation", choices=("auto", "on", "off"), default="auto",
                   help="run QEMU and the guest's services in a network namespace of their own (own loopback, own "
                        "resolv.conf: hermetic DNS, no host service reachable, no port clash between runs); auto "
                        "falls back with one warning where namespaces are unavailable, on makes that an error "
                        "(default: %(default)s)")
    g.add_argument("--dry-run", "--print-qemu", "--print-qemu-cmd", dest="dry_run", action="store_true",
                   help="print the QEMU command line (a JSON array, then a shell line, last) and start nothing")
    g.add_argument("qemu_extra", nargs=argparse.REMAINDER, metavar="-- QEMU-ARGS",
                   help="arguments after -- are passed to QEMU last")

    d = parser.add_argument_group("device layout and interrupts")
    d.add_argument("--virtio-layout", choices=[layout.value for layout in Layout], default=Layout.CONTRACT.value,
                   help="contract: the modern-only virtio devices the Aero drivers bind (1AF4:1042/1041/1052/1059, "
                        "revision 01) and a virtio keyboard and mouse; transitional: QEMU's default virtio-blk and "
                        "virtio-net (1AF4:1001/1000), for older drivers (default: %(default)s)")
    d.add_argument("--virtio-transitional", dest="virtio_layout", action="store_const",
                   const=Layout.TRANSITIONAL.value, help="the same as --virtio-layout transitional")
    d.add_argument("--virtio-msix-vectors", type=int, default=None, metavar="N",
                   help="MSI-X vectors of every virtio device (QEMU's vectors=N); per device: --virtio-<dev>-vectors")
    d.add_argument("--virtio-disable-msix", "--force-intx", "--intx-only", dest="virtio_disable_msix",
                   action="store_true", help="no MSI-X at all (vectors=0): every virtio device uses INTx")
    d.add_argument("--require-intx", action="store_true",
                   help="every attached virtio device's guest test must report INTx (IRQ_MODE_MISMATCH otherwise)")
    d.add_argument("--require-msi", action="store_true",
                   help="every attached virtio device's guest test must report MSI or MSI-X")
    d.add_argument("--no-qemu-preflight-pci", action="store_true",
                   help="skip the PCI check (query-pci before the guest runs) that each virtio function has the "
                        "IDs the layout wants")
    d.add_argument("--qemu-preflight-pci", "--qmp-preflight-pci", dest="qemu_preflight_pci", action="store_true",
                   help="accepted for the upstream harness's scripts: the PCI preflight always runs")

    add_device_arguments(parser)

    o = parser.add_argument_group("output")
    o.add_argument("--out-dir", type=path_arg, default=None, metavar="DIR",
                   help=f"artifacts folder, created if missing (default: ${OUT_DIR_ENV} or ./out)")
    o.add_argument("--serial-log", type=output_path, default=None, metavar="PATH",
                   help="where COM1 is written (default: OUT_DIR/serial.log)")
    o.add_argument("--follow-serial", action="store_true",
                   help="stream COM1 to stdout while waiting (control bytes shown as \\xNN)")
    o.add_argument("--raw-serial", action="store_true",
                   help="with --follow-serial: pass COM1 through byte for byte, escape sequences included")
    o.add_argument("--stop-on-stdin-eof", action="store_true",
                   help="stop the run, as on SIGTERM, when standard input closes (a launcher keeps it open for "
                        "as long as it lives, so the run cannot outlive it)")
    o.add_argument("--quiet", action="store_true",
                   help="no progress and no informational log lines on the console: the verdict line, warnings and "
                        "errors only")
    o.add_argument("--progress-interval", type=float, default=30.0, metavar="S",
                   help="off a terminal, a progress line every S seconds and at each phase change (default: "
                        "%(default)s)")
    o.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="console log format; harness.log is always JSON (default: %(default)s)")


def configure(parser: argparse.ArgumentParser) -> None:
    add_run_options(parser)


def execute(args: argparse.Namespace) -> int:
    from harness.runner import run_from_args

    return run_from_args(args)


class _Lenient(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ValueError(message)


def discard_after_refusal(argv: list[str]) -> None:
    """A run (or selfcheck) refused for bad input: the out-dir its arguments name (or the default)
    loses its earlier reports all the same (``outputs.discard_reports``); a dry run writes none, so
    it removes none."""
    from harness.options import default_out_dir
    from harness.outputs import discard_reports

    finder = _Lenient(add_help=False, allow_abbrev=False)
    finder.add_argument("--out-dir", type=path_arg, default=None)
    finder.add_argument("--dry-run", "--print-qemu", "--print-qemu-cmd", action="store_true")
    try:
        known, _ = finder.parse_known_args(argv)
        folder = known.out_dir if known.out_dir is not None else default_out_dir()
    except (ValueError, UsageError):
        return
    if not known.dry_run:
        discard_reports(folder)
