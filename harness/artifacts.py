"""The run's report files: ``results.json`` and ``junit.xml``."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from junitparser import Error, Failure, JUnitXml, Skipped, TestCase, TestSuite

from harness import __version__
from harness.outputs import JUNIT, RESULTS, write_atomically
from harness.protocol import Status
from harness.rules import token_base
from harness.textsafe import visible, visible_lines
from harness.verdict import GuestReport, Verdict

SUITE_NAME = "aero-virtio-selftest"
FINAL = tuple(s.value for s in Status if s.is_final)  # PASS, FAIL, SKIP


@dataclass
class RunRecord:
    """Everything the report files say about one run."""

    verdict: Verdict
    report: GuestReport
    required: tuple[str, ...]
    accel: str | None
    qemu_version: str | None
    qemu_argv: list[str]
    duration_s: float
    extra: dict[str, Any] = field(default_factory=dict)  # timing, audio, disk, artifacts...
    skip_allowed: tuple[str, ...] = ()  # required markers for which the guest's SKIP is fine too


def results_document(run: RunRecord) -> dict[str, Any]:
    return {
        "verdict": "PASS" if run.verdict.passed else "FAIL",
        "token": run.verdict.token,
        "exit_code": int(run.verdict.exit_code),
        "detail": run.verdict.detail,
        "tests": {name: outcome.to_json() for name, outcome in run.report.tests.items()},
        "required_tests": list(run.required),
        "skip_allowed": list(run.skip_allowed),
        "guest": {"started": run.report.started, "config": run.report.config, "result": run.report.result},
        "accel": run.accel,
        "qemu": {"version": run.qemu_version, "argv": run.qemu_argv},
        "duration_s": round(run.duration_s, 3),
        "version": __version__,
        **run.extra,
    }


def write_results(run: RunRecord, out_dir: Path) -> Path:
    path = out_dir / RESULTS
    write_atomically(path, (json.dumps(results_document(run), indent=2) + "\n").encode())
    return path


def test_result(shown: str, status: str, detail: str, required: bool, skip_allowed: bool) -> list[Any]:
    """The junit result of one guest test (nothing: it passed): a FAIL fails; a SKIP is skipped, or
    fails when the run requires the test to PASS; a test the run requires that never reached a final
    status fails; an informational one (INFO only) passes. Shared by junit.xml and the fleet's merge."""
    if status == "FAIL":
        return [Failure(f"{shown} FAIL{': ' + detail if detail else ''}", f"{token_base(shown)}_FAILED")]
    if status == "SKIP":
        if required and not skip_allowed:
            return [Failure(f"required test skipped{': ' + detail if detail else ''}", f"{token_base(shown)}_SKIPPED")]
        return [Skipped(detail or "skipped by the guest")]
    if status not in FINAL and required:
        return [Failure(f"no final status (last: {status})", f"MISSING_{token_base(shown)}")]
    return []


def _case_for_test(name: str, run: RunRecord) -> TestCase:
    outcome = run.report.tests[name]
    shown = visible(name)  # guest text: XML 1.0 cannot carry control characters, a reader must see them
    case = TestCase(shown, classname=SUITE_NAME)
    detail = visible(outcome.reason or " ".join(f"{k}={v}" for k, v in outcome.fields.items()))
    case.result = test_result(shown, outcome.status.value, detail, name in run.required, name in run.skip_allowed)
    case.system_out = visible_lines("\n".join([f"status={outcome.status.value}",
                                                *(f"{k}={v}" for k, v in outcome.fields.items()), *outcome.notes]))
    return case


def junit_document(run: RunRecord) -> JUnitXml:
    suite = TestSuite(SUITE_NAME)
    for name in run.report.tests:
        suite.add_testcase(_case_for_test(name, run))
    for name in run.required:
        if name not in run.report.tests:
            missing = TestCase(name, classname=SUITE_NAME)
            missing.result = [Failure(f"no TEST marker for required test {name}", f"MISSING_{token_base(name)}")]
            suite.add_testcase(missing)
    overall = TestCase("overall", classname=SUITE_NAME, time=round(run.duration_s, 3))
    if not run.verdict.passed:
        kind = Failure if run.verdict.exit_code == 1 or run.verdict.token == "AUDIO_SILENT" else Error
        overall.result = [kind(run.verdict.line(), run.verdict.token)]
    overall.system_out = run.verdict.line()
    suite.add_testcase(overall)
    xml = JUnitXml()
    xml.add_testsuite(suite)
    return xml


def write_junit(run: RunRecord, out_dir: Path) -> Path:
    path = out_dir / JUNIT
    buffer = io.BytesIO()
    junit_document(run).write(buffer, pretty=True)
    write_atomically(path, buffer.getvalue())
    return path
