"""Whether a set of ``run`` flags would be accepted, without QEMU, files or a guest: what a matrix
file or a CI configuration can check before it starts anything."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.devices import DeviceSet
from harness.disk import GuestDisk, WriteMode
from harness.errors import UsageError
from harness.options import RunOptions, options_from_args
from harness.qemu.capabilities import PROBED_DEVICES, Capabilities

# What the checks assume of QEMU: every device the harness may attach (the Docker image's QEMU 10).
ANY_QEMU = Capabilities(devices=frozenset(PROBED_DEVICES), cpu_max={"pc": 255})


def check_run_flags(flags: Sequence[str], disk_image: str = "image.qcow2",
                    caps: Capabilities = ANY_QEMU) -> tuple[RunOptions, DeviceSet]:
    """The options and device set these flags give; UsageError (one line) when they would be refused."""
    from harness.cli import build_parser  # late: the parser imports every subcommand
    from harness.runner import board_for

    if "--disk-image" in flags:
        raise UsageError("--disk-image is given by the case, not among its flags")
    args = build_parser(quiet=True).parse_args(["run", "--disk-image", disk_image, *flags])
    opts = options_from_args(args)
    opts.check()
    disk = GuestDisk(Path(disk_image).absolute(), "qcow2", snapshot=opts.snapshot,
                     mode=WriteMode.SNAPSHOT if opts.snapshot else WriteMode.OVERLAY)
    devices = DeviceSet(opts.devices, board_for(opts, caps, disk), opts.require_irq)
    devices.check()
    return opts, devices
