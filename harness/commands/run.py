"""``aero-win7-harness run``: boot the image, serve the guest, watch COM1, return the verdict."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.options import OUT_DIR_ENV
from harness.qemu.binary import DEFAULT_QEMU_SYSTEM

HELP = "boot a prepared image under QEMU and report the guest selftest's verdict (the default)"


def add_run_options(parser: argparse.ArgumentParser, *, disk_required: bool = True) -> None:
    """The options of a run; shared by ``run`` and ``selfcheck`` (which brings its own disk)."""
    g = parser.add_argument_group("guest and QEMU")
    g.add_argument("--qemu-system", default=DEFAULT_QEMU_SYSTEM, metavar="PATH",
                   help="QEMU system emulator, a name on PATH or a path (default: %(default)s)")
    g.add_argument("--disk-image", type=Path, required=disk_required, metavar="PATH",
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
    g.add_argument("--dry-run", action="store_true", help="print the QEMU command line and start nothing")
    g.add_argument("qemu_extra", nargs=argparse.REMAINDER, metavar="-- QEMU-ARGS",
                   help="arguments after -- are passed to QEMU last")

    s = parser.add_argument_group("guest services (on 127.0.0.1; 10.0.2.2 inside the guest)")
    s.add_argument("--http-port", type=int, default=18080, metavar="PORT", help="(default: %(default)s)")
    s.add_argument("--http-path", default="/aero-virtio-selftest", metavar="PATH", help="(default: %(default)s)")
    s.add_argument("--udp-port", type=int, default=18081, metavar="PORT", help="UDP echo port (default: %(default)s)")

    a = parser.add_argument_group("virtio-snd")
    a.add_argument("--enable-virtio-snd", "--with-virtio-snd", dest="enable_virtio_snd", action="store_true",
                   help="attach virtio-sound-pci (QEMU 8.2+) and require the guest's virtio-snd test to pass")
    a.add_argument("--virtio-snd-audio-backend", choices=("none", "wav"), default="none",
                   help="QEMU audio backend of the sound device (default: %(default)s)")
    a.add_argument("--virtio-snd-wav-path", type=Path, default=None, metavar="PATH",
                   help="where the wav backend writes (default: OUT_DIR/virtio-snd.wav)")
    a.add_argument("--audio-peak-threshold", type=int, default=200, metavar="N",
                   help="the capture is not silent when its peak exceeds this (16-bit scale; default: %(default)s)")
    a.add_argument("--audio-rms-threshold", type=float, default=50.0, metavar="N",
                   help="... or when its RMS exceeds this (16-bit scale; default: %(default)s)")

    o = parser.add_argument_group("output")
    o.add_argument("--out-dir", type=Path, default=None, metavar="DIR",
                   help=f"artifacts folder, created if missing (default: ${OUT_DIR_ENV} or ./out)")
    o.add_argument("--serial-log", type=Path, default=None, metavar="PATH",
                   help="where COM1 is written (default: OUT_DIR/serial.log)")
    o.add_argument("--follow-serial", action="store_true",
                   help="stream COM1 to stdout while waiting (control bytes shown as \\xNN)")
    o.add_argument("--raw-serial", action="store_true",
                   help="with --follow-serial: pass COM1 through byte for byte, escape sequences included")
    o.add_argument("--stop-on-stdin-eof", action="store_true",
                   help="stop the run, as on SIGTERM, when standard input closes (a launcher keeps it open for "
                        "as long as it lives, so the run cannot outlive it)")
    o.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="console log format; harness.log is always JSON (default: %(default)s)")


def configure(parser: argparse.ArgumentParser) -> None:
    add_run_options(parser)


def execute(args: argparse.Namespace) -> int:
    from harness.runner import run_from_args

    return run_from_args(args)
