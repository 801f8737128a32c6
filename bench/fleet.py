#!/usr/bin/env python3
"""Fleet figures: ``matrix run`` of N reference-guest selfcheck cases with --jobs 1, 2, 4 on this
machine, against N sequential ``aero-win7-docker selfcheck`` runs (the baseline).

For each way it prints the wall time (start to exit), the PASS count, and the mean of the cases'
own durations (the harness's duration_s: how much each case slows down when they share the
cores). Everything runs in the harness image (no QEMU on the host needed).

Usage: .venv/bin/python bench/fleet.py [--cases 8] [--jobs 1 2 4] [--image aero-win7-harness:latest]
       [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def tool(name: str) -> list[str]:
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return [str(beside)]
    module = {"aero-win7-harness": "harness", "aero-win7-docker": "harness.launcher.cli"}[name]
    return [sys.executable, "-m", module]


def sequential(cases: int, image: str, work: Path) -> dict[str, object]:
    durations: list[float] = []
    passed = 0
    started = time.perf_counter()
    for i in range(cases):
        out = work / "sequential" / f"ref-{i + 1}"
        proc = subprocess.run([*tool("aero-win7-docker"), "--image", image, "selfcheck", "--out-dir", str(out)],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        passed += proc.returncode == 0
        try:
            durations.append(float(json.loads((out / "results.json").read_text())["duration_s"]))
        except (OSError, ValueError, KeyError):
            pass
    wall = time.perf_counter() - started
    mean = round(statistics.mean(durations), 1) if durations else None
    return {"way": f"{cases} x aero-win7-docker selfcheck, one after another", "wall_s": round(wall, 1),
            "passed": passed, "cases": cases, "mean_case_s": mean}


def matrix_run(cases: int, jobs: int, image: str, work: Path) -> dict[str, object]:
    matrix = work / "matrix.yaml"
    matrix.write_text("version: 1\ncases:\n" + "".join(f"  - {{name: ref-{i + 1}, selfcheck: true}}\n"
                                                       for i in range(cases)), encoding="utf-8")
    out = work / f"jobs-{jobs}"
    started = time.perf_counter()
    proc = subprocess.run([*tool("aero-win7-harness"), "matrix", "run", str(matrix), "--jobs", str(jobs),
                           "--out-dir", str(out), "--image", image], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, check=False)
    wall = time.perf_counter() - started
    merged = json.loads((out / "results.json").read_text())
    durations = [float(c["duration_s"]) for c in merged["cases"] if c.get("duration_s") is not None]
    return {"way": f"matrix run --jobs {jobs}", "wall_s": round(wall, 1), "passed": merged["counts"]["passed"],
            "cases": cases, "mean_case_s": round(statistics.mean(durations), 1) if durations else None,
            "exit_code": proc.returncode}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--image", default=os.environ.get("AERO_WIN7_IMAGE") or "aero-win7-harness:latest")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="aero-fleet-bench-") as tmp:
        work = Path(tmp)
        rows.append(sequential(args.cases, args.image, work))
        print(rows[-1], file=sys.stderr, flush=True)
        for jobs in args.jobs:
            rows.append(matrix_run(args.cases, jobs, args.image, work))
            print(rows[-1], file=sys.stderr, flush=True)
    base = float(rows[0]["wall_s"])  # type: ignore[arg-type]
    print(f"{os.cpu_count()} cores, image {args.image}, {args.cases} reference-guest selfcheck cases")
    print("| way | wall time | PASS | mean case duration | vs sequential |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        wall = float(row["wall_s"])  # type: ignore[arg-type]
        print(f"| {row['way']} | {wall:.1f} s | {row['passed']}/{row['cases']} | {row['mean_case_s']} s | "
              f"{base / wall:.2f}x |")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
