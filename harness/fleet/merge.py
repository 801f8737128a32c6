"""Many runs -> one report: ``junit.xml`` (a testsuite per case), ``results.json`` (cases, verdicts,
durations, the slowest markers of each run), ``summary.md`` (a GitHub job summary) and
``index.html`` (a page linking each case's report.html). The exit code is the worst case's
(``harness.fleet.ranking``).

Merged ``results.json``::

    {"verdict": "FAIL", "token": "TIMEOUT", "exit_code": 5,
     "detail": "1 of 6 cases failed; the worst: snd-timeout: TIMEOUT (exit 5)",
     "worst_case": "snd-timeout", "counts": {"cases": 6, "passed": 5, "failed": 1},
     "cases": [{"name": "ref-contract", "folder": "ref-contract", "verdict": "PASS", "token": null,
                "exit_code": 0, "detail": "", "source": "results.json", "duration_s": 46.6, "wall_s": 57.1,
                "accel": "tcg", "layout": "contract", "tests": {"virtio-blk": "PASS", ...},
                "slowest_markers": [{"marker": "virtio-net-udp", "at_s": 45.9, "took_s": 13.8}, ...],
                "report": "ref-contract/report.html"}, ...],
     "exit_code_order": [0, 4, 1, 5, 3, 130, 6, 2], "version": "0.1.0", "merged_at": "..."}
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from junitparser import Error, Failure, JUnitXml, TestCase, TestSuite

from harness import __version__
from harness.artifacts import test_result
from harness.errors import ExitCode, UsageError
from harness.fleet import ranking
from harness.fleet.record import now
from harness.fleet.runs import RunOutcome, missing, read_run
from harness.outputs import JUNIT, REPORT_HTML, RESULTS, write_atomically
from harness.rules import token_base
from harness.textsafe import visible, visible_lines

SUMMARY_MD = "summary.md"
INDEX_HTML = "index.html"


@dataclass
class Merged:
    outcomes: list[RunOutcome]
    out_dir: Path

    @property
    def worst(self) -> RunOutcome | None:
        failed = [o for o in self.outcomes if not o.passed]
        return ranking.worst_of(failed, lambda o: o.exit_code)

    @property
    def exit_code(self) -> ExitCode:
        return ranking.worst(o.exit_code for o in self.outcomes)

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if not o.passed)

    def verdict_line(self) -> str:
        total = len(self.outcomes)
        worst = self.worst
        if worst is None:
            return f"PASS: {total} of {total} cases passed"
        return f"FAIL: {worst.token}: {self.detail()}"

    def detail(self) -> str:
        worst = self.worst
        total = len(self.outcomes)
        if worst is None:
            return f"{total} of {total} cases passed"
        return f"{self.failed} of {total} cases failed; the worst: {worst.name}: {worst.token} (exit {worst.exit_code})"

    def href(self, outcome: RunOutcome, name: str) -> str | None:
        """A relative link from the merge's folder to a file of a run, when that file exists."""
        if outcome.folder is None or not (outcome.folder / name).is_file():
            return None
        return quote(Path(os.path.relpath(outcome.folder / name, self.out_dir)).as_posix())

    def folder(self, outcome: RunOutcome) -> str | None:
        if outcome.folder is None:
            return None
        return Path(os.path.relpath(outcome.folder, self.out_dir)).as_posix()


def collect(paths: Sequence[Path], expected: Sequence[str] = (), *, by_index: bool = False) -> list[RunOutcome]:
    """The runs in ``paths``, the expected cases first (in their order, missing ones as
    RUN_MISSING), then the others in the order given. Two runs of one case are a UsageError.
    ``by_index``: ``paths[i]`` is the run of ``expected[i]`` whatever it holds (the Kubernetes
    layout, where index I writes case-I/ and a pod that never started leaves no case.json)."""
    if by_index and len(paths) != len(expected):
        raise UsageError(f"--by-index: {len(paths)} run folder(s) for {len(expected)} expected case(s)")
    outcomes = [read_run(path, expected[i] if by_index else None) for i, path in enumerate(paths)]
    by_name: dict[str, RunOutcome] = {}
    for outcome in outcomes:
        if outcome.name in by_name:
            raise UsageError(f"two runs of case '{outcome.name}': {by_name[outcome.name].folder} and {outcome.folder}")
        by_name[outcome.name] = outcome
    ordered = [by_name.pop(name) if name in by_name else missing(name, None, "no run folder was given for this case")
               for name in dict.fromkeys(expected)]
    return ordered + [o for o in outcomes if o.name in by_name]


# -- results.json -----------------------------------------------------------------------------------


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _tests(results: Mapping[str, Any] | None) -> dict[str, str]:
    tests = (results or {}).get("tests")
    if not isinstance(tests, Mapping):
        return {}
    return {str(name): str(t.get("status", "?")) if isinstance(t, Mapping) else "?" for name, t in tests.items()}


def case_document(merged: Merged, outcome: RunOutcome) -> dict[str, Any]:
    results = outcome.results or {}
    return {
        "name": outcome.name, "folder": merged.folder(outcome), "verdict": outcome.verdict, "token": outcome.token,
        "exit_code": outcome.exit_code, "detail": outcome.detail, "source": outcome.source,
        "duration_s": outcome.duration_s, "wall_s": outcome.wall_s, "accel": results.get("accel"),
        "layout": results.get("layout"), "tests": _tests(outcome.results),
        "slowest_markers": outcome.slowest, "report": merged.href(outcome, REPORT_HTML),
    }


def results_document(merged: Merged) -> dict[str, Any]:
    worst = merged.worst
    return {
        "verdict": "PASS" if worst is None else "FAIL",
        "token": None if worst is None else worst.token,
        "exit_code": int(merged.exit_code),
        "detail": merged.detail(),
        "worst_case": None if worst is None else worst.name,
        "counts": {"cases": len(merged.outcomes), "passed": len(merged.outcomes) - merged.failed,
                   "failed": merged.failed},
        "cases": [case_document(merged, o) for o in merged.outcomes],
        "exit_code_order": [int(code) for code in ranking.ORDER],
        "version": __version__,
        "merged_at": now(),
    }


# -- junit.xml --------------------------------------------------------------------------------------


def _testcase(case: str, name: str, outcome: Mapping[str, Any], required: bool, skip_allowed: bool) -> TestCase:
    shown = visible(name)
    test = TestCase(shown, classname=case)
    status = str(outcome.get("status", "?"))
    fields = _mapping(outcome.get("fields"))
    detail = visible(str(outcome.get("reason") or " ".join(f"{k}={v}" for k, v in fields.items())))
    test.result = test_result(shown, visible(status), detail, required, skip_allowed)
    test.system_out = visible_lines(f"status={visible(status)}" + (f"\n{detail}" if detail else ""))
    return test


def _suite(outcome: RunOutcome) -> TestSuite:
    suite = TestSuite(outcome.name)
    for key, value in (("verdict", outcome.verdict), ("token", outcome.token or ""), ("exit_code", outcome.exit_code),
                       ("source", outcome.source)):
        suite.add_property(key, str(value))
    results = outcome.results or {}
    tests = _mapping(results.get("tests"))
    required = [str(r) for r in results.get("required_tests") or [] if isinstance(r, str)]
    skip_allowed = {str(r) for r in results.get("skip_allowed") or [] if isinstance(r, str)}
    for name, test in tests.items():
        suite.add_testcase(_testcase(outcome.name, str(name), test if isinstance(test, Mapping) else {},
                                     name in required, name in skip_allowed))
    for name in required:
        if name not in tests:
            test = TestCase(visible(name), classname=outcome.name)
            test.result = [Failure(f"no TEST marker for required test {visible(name)}", f"MISSING_{token_base(name)}")]
            suite.add_testcase(test)
    overall = TestCase("overall", classname=outcome.name, time=outcome.duration_s or 0.0)
    if not outcome.passed:
        guest_failure = outcome.exit_code in (ExitCode.FAIL, ExitCode.AUDIO_SILENT)
        overall.result = [(Failure if guest_failure else Error)(visible(outcome.line()), outcome.token)]
    overall.system_out = visible(outcome.line())
    suite.add_testcase(overall)
    return suite


def junit_document(merged: Merged) -> JUnitXml:
    xml = JUnitXml("aero-win7-harness matrix")
    for outcome in merged.outcomes:
        xml.add_testsuite(_suite(outcome))
    return xml


# -- writing ----------------------------------------------------------------------------------------


def _check_out_dir(out_dir: Path, outcomes: Sequence[RunOutcome]) -> None:
    for outcome in outcomes:
        if outcome.folder is not None and outcome.folder.is_dir() and outcome.folder.resolve() == out_dir.resolve():
            raise UsageError(f"--out-dir {out_dir} is the folder of run '{outcome.name}': its results.json would be "
                             "replaced; write the merge elsewhere (a run's parent folder is fine)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create the merge's --out-dir {out_dir}: {err.strerror}") from err


def write(merged: Merged) -> dict[str, Path]:
    """Write the four files into the merge's folder; returns them by name."""
    from harness.fleet.index import render_index
    from harness.fleet.summary import render_summary

    _check_out_dir(merged.out_dir, merged.outcomes)
    buffer = io.BytesIO()
    junit_document(merged).write(buffer, pretty=True)
    files = {
        RESULTS: (json.dumps(results_document(merged), indent=2) + "\n").encode(),
        JUNIT: buffer.getvalue(),
        SUMMARY_MD: render_summary(merged).encode("utf-8"),
        INDEX_HTML: render_index(merged).encode("utf-8"),
    }
    written = {}
    for name, data in files.items():
        write_atomically(merged.out_dir / name, data)
        written[name] = merged.out_dir / name
    return written


def merge(paths: Sequence[Path], out_dir: Path, expected: Sequence[str] = (), *,
          by_index: bool = False) -> tuple[Merged, dict[str, Path]]:
    merged = Merged(collect(paths, expected, by_index=by_index), out_dir)
    return merged, write(merged)


def console_lines(merged: Merged) -> list[str]:
    """One line a case, then the verdict line (the last line, as for a single run)."""
    lines = []
    for outcome in merged.outcomes:
        took = outcome.duration_s if outcome.duration_s is not None else outcome.wall_s
        timing = f", {took:.1f} s" if took is not None else ""
        lines.append(f"case {outcome.name}: {visible(outcome.line())} (exit {outcome.exit_code}{timing})")
    return [*lines, visible(merged.verdict_line())]
