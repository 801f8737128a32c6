"""The argument parser of both console scripts: a bad argument is the contract's one USAGE line."""

from __future__ import annotations

import argparse
import re
import sys

from harness.errors import ExitCode, UsageError

# A single dash and a word: how QEMU's options look (-device, -smp, -m), unlike ours (--smp).
_QEMU_LIKE = re.compile(r"(?:^|\s)-[a-z][a-z0-9-]*\b")


class UsageParser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one ``FAIL: USAGE: ...`` line on stdout (exit 2), with a
    hint when what it did not recognise looks like a QEMU option."""

    quiet = False  # True: raise UsageError instead of printing (flags checked by a program, not a person)

    def error(self, message: str) -> None:  # type: ignore[override]
        if message.startswith("unrecognized arguments") and _QEMU_LIKE.search(message.partition(":")[2]):
            message += " (QEMU arguments go after --, e.g. -- -device virtio-rng-pci)"
        if self.quiet:
            raise UsageError(message)
        print(f"{self.prog}: see {self.prog} --help for every flag", file=sys.stderr, flush=True)
        print(f"FAIL: USAGE: {message}", flush=True)
        raise SystemExit(ExitCode.USAGE)


class QuietUsageParser(UsageParser):
    quiet = True
