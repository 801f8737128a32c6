"""``case.json``: what a fleet runner writes into a case's out dir beside the harness's artifacts.

It names the case (so a merge knows it whatever the folder is called: a CI artifact, a Kubernetes
index folder), holds the case as the matrix gave it and the command that ran it, and, when the
runner waited for the run (``matrix run``), its exit code, wall time and last verdict line. A run
that died before the harness wrote ``results.json`` is still told apart by it.

    {"name": "snd-on", "case": {...}, "argv": ["aero-win7-docker", ...], "runner": "matrix run",
     "started_at": "2026-01-01T10:00:00+00:00", "wall_s": 48.2, "exit_code": 0,
     "verdict_line": "PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS", "console": "console.log"}
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.fleet.case import Case
from harness.outputs import write_atomically

CASE_JSON = "case.json"
CONSOLE_LOG = "console.log"  # the launcher's stdout and stderr, in a case's out dir (matrix run)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class CaseRecord:
    case: Case
    argv: list[str]
    runner: str
    started_at: str
    wall_s: float | None = None
    exit_code: int | None = None
    verdict_line: str | None = None
    console: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.case.name, "case": self.case.to_json(), "argv": self.argv, "runner": self.runner,
                "started_at": self.started_at, "wall_s": self.wall_s, "exit_code": self.exit_code,
                "verdict_line": self.verdict_line, "console": self.console}

    def write(self, out_dir: Path) -> Path:
        path = out_dir / CASE_JSON
        write_atomically(path, (json.dumps(self.to_json(), indent=2) + "\n").encode())
        return path


def last_verdict_line(lines: Sequence[str]) -> str | None:
    """The last ``PASS: ...`` / ``FAIL: ...`` line: the contract's verdict line."""
    found = [line for line in lines if line.startswith(("PASS: ", "FAIL: "))]
    return found[-1] if found else None
