"""The device set and rules a run gets for given flags, without starting QEMU (for the verdict and
report tests)."""

from __future__ import annotations

from harness.devices import DeviceSet
from harness.flagcheck import check_run_flags
from harness.protocol import Scanner
from harness.qemu.capabilities import Capabilities
from harness.verdict import GuestReport, Verdict, judge
from tests.transcripts import as_bytes

QEMU_10 = Capabilities(devices=frozenset({"virtio-sound-pci", "virtio-blk-pci", "virtio-net-pci"}),
                       cpu_max={"pc": 255})


def device_set(*flags: str) -> DeviceSet:
    """The device set a run with these flags gets (a QEMU with virtio-sound; no QEMU is started)."""
    return check_run_flags(flags, "/images/guest.qcow2", QEMU_10)[1]


def report_of(lines: list[str]) -> GuestReport:
    report = GuestReport()
    for record in Scanner().feed(as_bytes(lines)):
        report.add(record)
    return report


def verdict_of(lines: list[str], *flags: str) -> Verdict:
    return judge(report_of(lines), device_set(*flags).rules())


