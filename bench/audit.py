#!/usr/bin/env python3
"""How many bad inputs, faults and attacks the test suite covers (each parametrised case counts once).

A test counts as:
  bad input  it feeds the harness, the launcher or provision a wrong argument, path or file and
             expects one line and exit 2 (test_bad_input.py, and provision/launcher tests whose name
             says it is refused)
  fault      the machinery fails under it: signals, a killed launcher, a frozen or vanished engine,
             a full disk, a corrupt image, QEMU exiting or refusing (test_hardening.py,
             test_docker_launcher.py, and e2e tests named for a failure)
  attack     hostile input from the guest or a client: escape sequences, floods, huge or slow
             uploads, planted symlinks, a shared cache (names that say so, test_services_limits.py)

Usage: .venv/bin/python bench/audit.py
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ATTACK = re.compile(r"hostile|escape|inert|flood|symlink|planted|chunked|upload|slow|idle|control|cache|"
                    r"mounts_only|root_caller|traceback|xml|script|injected|others", re.I)
FAULT = re.compile(r"signal|sigterm|sigint|killed|kill|engine|dockerd|full|fills|corrupt|truncated|block_io|"
                   r"disk_error|stale|lock|exited|refuses|refused_by_qemu|interrupt|lifeline|leftover|stray", re.I)
BAD = re.compile(r"refused|rejected|usage|bad|invalid|unknown|must|one_line|exit_2|not_a|missing|conflict", re.I)


def collected() -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                          cwd=REPO, capture_output=True, text=True, check=True)
    return [line for line in proc.stdout.splitlines() if "::" in line]


def kind(node: str) -> str | None:
    path, name = node.split("::", 1)
    if path.endswith("test_bad_input.py"):
        return "attack" if ATTACK.search(name) else "bad input"
    if path.endswith(("test_services_limits.py",)):
        return "attack"
    if path.endswith(("test_hardening.py", "test_docker_launcher.py")):
        if ATTACK.search(name):
            return "attack"
        return "fault" if FAULT.search(name) else "bad input" if BAD.search(name) else "fault"
    if ATTACK.search(name) and ("report" in path or "launcher" in path or "accel" in path or "protocol" in path):
        return "attack"
    if FAULT.search(name) and ("e2e" in path or "qemu" in path or "run" in path or "actions" in path):
        return "fault"
    if BAD.search(name) and ("provision" in path or "launcher" in path or "install" in path or "fleet" in path):
        return "bad input"
    return None


def main() -> int:
    nodes = collected()
    counts = Counter(k for k in map(kind, nodes) if k is not None)
    print(f"{len(nodes)} test cases; bad inputs {counts['bad input']}, faults {counts['fault']}, "
          f"attacks {counts['attack']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
