"""The argument parser of both console scripts: a bad argument is the contract's one USAGE line."""

from __future__ import annotations

import argparse
import re
import sys

from harness.errors import ExitCode

# A single dash and a word: how QEMU's options look (-device, -smp, -m), unlike ours (--smp).
_QEMU_LIKE = re.compile(r"(?:^|\s)-[a-z][a-z0-9-]*\b")


class UsageParser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one ``FAIL: USAGE: ...`` line on stdout (exit 2), with a
    hint when what it did not recognise looks like a QEMU option."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        if message.startswith("unrecognized arguments") and _QEMU_LIKE.search(message.partition(":")[2]):
            message += " (QEMU arguments go after --, e.g. -- -device virtio-rng-pci)"
        print(f"FAIL: USAGE: {message}", flush=True)
        raise SystemExit(ExitCode.USAGE)
