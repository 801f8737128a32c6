"""``aero-win7-harness selfcheck``: run the harness on the Linux reference guest.

The reference guest speaks the selftest protocol against the real virtio devices, so a PASS proves
that this host's QEMU, networking, COM1 capture (and, in the container, Docker) all work before a
Windows image is brought in.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

from harness.commands.run import add_run_options
from harness.devices import Layout
from harness.errors import UsageError
from harness.options import RunOptions

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


GUEST_ARGS_FW_CFG = "opt/org.aero/selftest-args"  # the reference guest reads extra selftest flags here


def guest_arguments(opts: RunOptions) -> list[str]:
    """The selftest flags an image would have been provisioned with for this run's flags: the
    reference guest takes them at boot from QEMU's fw_cfg, so one image serves every run."""
    flags = [flag for device in opts.devices for flag in device.provisioning()]
    if opts.layout is Layout.TRANSITIONAL:
        flags.append("--allow-transitional")  # it then behaves like older drivers, which bind those IDs
    return flags


def execute(args: argparse.Namespace) -> int:
    from harness.options import options_from_args
    from harness.qemu.cmdline import opts as qemu_opts
    from harness.runner import run

    guest = find_reference_guest(args.disk_image)
    # The reference guest is ours and disposable: its writes are always thrown away.
    options = options_from_args(args, disk_image=guest, snapshot=True, write_to_image=False)
    flags = guest_arguments(options)
    if flags:
        fw_cfg = qemu_opts(None, {"name": GUEST_ARGS_FW_CFG, "string": " ".join(flags)})
        options = replace(options, qemu_extra=(*options.qemu_extra, "-fw_cfg", fw_cfg))
    return run(options)
