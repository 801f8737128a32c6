"""The device set and rules a run gets for given flags, without starting QEMU (for the verdict and
report tests)."""

from __future__ import annotations

from pathlib import Path

from harness.cli import build_parser
from harness.devices import DeviceSet
from harness.disk import GuestDisk, WriteMode
from harness.options import options_from_args
from harness.protocol import Scanner
from harness.qemu.capabilities import Capabilities
from harness.runner import board_for
from harness.verdict import GuestReport, Verdict, judge
from tests.transcripts import as_bytes

QEMU_10 = Capabilities(devices=frozenset({"virtio-sound-pci", "virtio-blk-pci", "virtio-net-pci"}),
                       cpu_max={"pc": 255})


def device_set(*flags: str) -> DeviceSet:
    """The device set a run with these flags gets (a QEMU with virtio-sound; no QEMU is started)."""
    args = build_parser().parse_args(["run", "--disk-image", "guest.qcow2", *flags])
    opts = options_from_args(args)
    disk = GuestDisk(Path("/images/guest.qcow2"), "qcow2", snapshot=True, mode=WriteMode.SNAPSHOT)
    devices = DeviceSet(opts.devices, board_for(opts, QEMU_10, disk), opts.require_irq)
    devices.check()
    return devices


def report_of(lines: list[str]) -> GuestReport:
    report = GuestReport()
    for record in Scanner().feed(as_bytes(lines)):
        report.add(record)
    return report


def verdict_of(lines: list[str], *flags: str) -> Verdict:
    return judge(report_of(lines), device_set(*flags).rules())


