#!/usr/bin/env python3
"""How many bad inputs, faults and attacks the test suite covers (each parametrised case counts once).

Each such test carries one of three markers (registered in pyproject.toml), put there by whoever
wrote it, so the count is what the tests say they do, not a guess from their names:

  bad_input  it feeds the harness, the launcher, provision or the matrix a wrong argument, path,
             file or value and expects one line, the documented exit code, nothing booted or changed
  fault      the machinery fails under it: a signal, a killed launcher or harness, a frozen or
             vanished engine or QEMU, a full disk, a corrupt image, QEMU refusing a host action
  attack     hostile input from the guest, a network client or another local user: escape
             sequences and control bytes, floods, huge or slow uploads, planted links, a shared cache

Usage: .venv/bin/python bench/audit.py [--list]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KINDS = {"bad_input": "bad inputs", "fault": "faults", "attack": "attacks"}


def collected(marker: str | None = None) -> list[str]:
    argv = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    if marker:
        argv += ["-m", marker]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
    if proc.returncode not in (0, 5):  # 5: nothing collected
        sys.exit(f"pytest --collect-only failed:\n{proc.stdout}{proc.stderr}")
    return [line for line in proc.stdout.splitlines() if "::" in line]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="also list the tests of each kind")
    args = parser.parse_args()
    total = len(collected())
    found = {kind: collected(kind) for kind in KINDS}
    print(f"{total} test cases; " + ", ".join(f"{KINDS[k]} {len(v)}" for k, v in found.items()))
    if args.list:
        for kind, nodes in found.items():
            print(f"\n{KINDS[kind]}:")
            print("\n".join(f"  {node}" for node in nodes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
