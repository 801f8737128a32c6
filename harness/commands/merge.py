"""``aero-win7-harness merge DIR...``: many runs' out dirs -> one junit.xml, results.json,
summary.md and index.html (``harness.fleet.merge``).

The exit code is the worst case's: 0 < 4 < 1 < 5 < 3 < 130 < 6 < 2 (``harness.fleet.ranking``).
A folder without results.json, or with one that cannot be read, is a failing case with a token
of its own (RESULTS_MISSING, RESULTS_UNREADABLE); a case of ``--expect-cases`` with no folder is
RUN_MISSING.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.errors import UsageError

HELP = "fold many runs' out dirs into one junit.xml, results.json, job summary and index page; exit: the worst case's"
DEFAULT_OUT = Path("out/merged")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", type=Path, nargs="*", metavar="DIR",
                        help="a run's out dir (or its results.json); the case's name is its case.json's, else "
                             "the folder's")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT, metavar="DIR",
                        help="where the merged files go; links in index.html are relative to it "
                             "(default: %(default)s)")
    parser.add_argument("--expect-cases", type=Path, default=None, metavar="CASES.json",
                        help="the cases that should be there (matrix list --format json): those without a folder "
                             "are reported as RUN_MISSING, and the cases are listed in its order")
    parser.add_argument("--by-index", action="store_true",
                        help="with --expect-cases: the I-th DIR is the run of the I-th case, whatever it holds (the "
                             "Kubernetes layout: index I writes case-I/)")


def _expected(path: Path | None) -> list[str]:
    if path is None:
        return []
    from harness.fleet.case import cases_from_json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UsageError(f"cannot read --expect-cases {path}: {err.strerror}") from err
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UsageError(f"--expect-cases {path}: not JSON ({err})") from err
    return [case.name for case in cases_from_json(data)]


def execute(args: argparse.Namespace) -> int:
    from harness.fleet.merge import console_lines, merge

    expected = _expected(args.expect_cases)
    if not args.runs and not expected:
        raise UsageError("nothing to merge: give the runs' out dirs (or --expect-cases)")
    if args.by_index and args.expect_cases is None:
        raise UsageError("--by-index needs --expect-cases")
    merged, _files = merge(args.runs, args.out_dir, expected, by_index=args.by_index)
    print("\n".join(console_lines(merged)), flush=True)
    return int(merged.exit_code)
