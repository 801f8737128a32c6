"""``aero-win7-harness selfcheck``: run the harness on the Linux reference guest.

The reference guest speaks the selftest protocol against the real virtio devices, so a PASS proves
that this host's QEMU, networking, COM1 capture (and, in the container, Docker) all work before a
Windows image is brought in.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from harness.commands.run import add_run_options
from harness.errors import UsageError

HELP = "run the harness on the bundled Linux reference guest: a PASS proves the host setup works"
GUEST_ENV = "AERO_REFERENCE_GUEST"  # the container image sets it to the baked-in guest
LOCAL_BUILD = Path("build/reference-guest.qcow2")  # what `make reference-guest` writes
DEFAULT_TIMEOUT_S = 300.0  # a TCG boot takes seconds; leave room for a loaded machine


def find_reference_guest(explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit
    from_env = os.environ.get(GUEST_ENV)
    if from_env:
        return Path(from_env)
    if LOCAL_BUILD.is_file():
        return LOCAL_BUILD
    raise UsageError(f"no reference guest: build one with `make reference-guest` ({LOCAL_BUILD}), "
                     f"set {GUEST_ENV}, or pass --disk-image")


def configure(parser: argparse.ArgumentParser) -> None:
    add_run_options(parser, disk_required=False)
    parser.set_defaults(timeout_seconds=DEFAULT_TIMEOUT_S)


def execute(args: argparse.Namespace) -> int:
    from harness.options import options_from_args
    from harness.runner import run

    guest = find_reference_guest(args.disk_image)
    # The reference guest is ours and disposable: its writes are always thrown away.
    return run(options_from_args(args, disk_image=guest, snapshot=True, write_to_image=False))
