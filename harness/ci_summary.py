"""A GitHub job summary (Markdown) of one harness run, made from its ``results.json``.

    python -m harness.ci_summary OUT_DIR/results.json [--console FILE] >> "$GITHUB_STEP_SUMMARY"

It lists the guest's tests and the verdict. When there is no usable ``results.json`` (the harness
stopped before writing it) it says so and quotes the last verdict line found in ``--console``, the
captured output of the run. It never fails the job: the exit code is always 0.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.textsafe import visible
from harness.timeline import phase_label

TITLE = "Win7 virtio harness"


def _cell(value: object) -> str:
    """Text for one Markdown table cell: control bytes shown as \\xNN, HTML-escaped, pipes escaped, on one line."""
    return html.escape(visible(" ".join(str(value).split())), quote=False).replace("|", "\\|")


def _fields(outcome: Mapping[str, Any]) -> str:
    fields = outcome.get("fields")
    parts = [f"{k}={v}" for k, v in fields.items()] if isinstance(fields, Mapping) else []
    if outcome.get("reason"):
        parts.insert(0, str(outcome["reason"]))
    return _cell(", ".join(parts)) if parts else ""


def _facts(results: Mapping[str, Any]) -> str:
    facts = []
    if results.get("accel"):
        facts.append(f"accel {results['accel']}")
    qemu = results.get("qemu")
    if isinstance(qemu, Mapping) and qemu.get("version"):
        facts.append(f"QEMU {qemu['version']}")
    if isinstance(results.get("duration_s"), (int, float)):
        facts.append(f"{results['duration_s']:.1f} s")
    if results.get("version"):
        facts.append(f"harness {results['version']}")
    return _cell(" · ".join(facts))


def _timeline(results: Mapping[str, Any]) -> list[str]:
    """The run's phases, in seconds since QEMU started."""
    timeline = results.get("timeline")
    phases = timeline.get("phases") if isinstance(timeline, Mapping) else None
    if not isinstance(phases, Mapping) or not phases:
        return []
    rows = ["", "| phase | at (s) |", "| --- | --- |"]
    for key, at in phases.items():
        label = phase_label(str(key))
        rows.append(f"| {_cell(label)} | {_cell(at)} |")
    return rows


def render(results: Mapping[str, Any]) -> str:
    verdict = str(results.get("verdict", "?"))
    lines = [f"## {TITLE}: {_cell(verdict)}", ""]
    if verdict != "PASS":
        detail = f": {results['detail']}" if results.get("detail") else ""
        lines += [_cell(f"{results.get('token', '?')} (exit code {results.get('exit_code', '?')}){detail}"), ""]
    tests = results.get("tests")
    if isinstance(tests, Mapping) and tests:
        lines += ["| test | status | fields |", "| --- | --- | --- |"]
        for name, outcome in tests.items():
            outcome = outcome if isinstance(outcome, Mapping) else {}
            lines.append(f"| {_cell(name)} | {_cell(outcome.get('status', '?'))} | {_fields(outcome)} |")
    else:
        lines.append("The guest reported no tests.")
    lines += _timeline(results)
    facts = _facts(results)
    return "\n".join([*lines, *(["", facts] if facts else [])]) + "\n"


def _last_verdict_line(console: Path | None) -> str | None:
    if console is None or not console.is_file():
        return None
    text = console.read_text(encoding="utf-8", errors="replace")
    verdicts = [line for line in text.splitlines() if line.startswith(("PASS: ", "FAIL: "))]
    return verdicts[-1] if verdicts else None


def render_missing(results_path: Path, reason: str, console: Path | None) -> str:
    lines = [f"## {TITLE}: no results", "", _cell(f"{results_path}: {reason}.")]
    verdict = _last_verdict_line(console)
    if verdict is not None:
        quoted = verdict.replace("`", "'")
        lines += ["", f"The harness said: `{quoted}`"]
    return "\n".join(lines) + "\n"


def summary(results_path: Path, console: Path | None = None) -> str:
    try:
        results = json.loads(results_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return render_missing(results_path, "not written", console)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return render_missing(results_path, f"unreadable ({err})", console)
    if not isinstance(results, Mapping):
        return render_missing(results_path, "not a JSON object", console)
    return render(results)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.ci_summary", description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="the run's results.json")
    parser.add_argument("--console", type=Path, default=None, help="the run's captured console output")
    args = parser.parse_args(argv)
    sys.stdout.write(summary(args.results, args.console))
    return 0


if __name__ == "__main__":
    sys.exit(main())
