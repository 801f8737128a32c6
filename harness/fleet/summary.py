"""The Markdown job summary of a merge: the overall verdict, a table of the cases, and each case's
own summary (``harness.ci_summary``) folded under it. Text from runs is escaped for Markdown and
HTML, on one line a cell."""

from __future__ import annotations

import html

from harness import ci_summary
from harness.fleet.merge import Merged
from harness.fleet.runs import RunOutcome
from harness.textsafe import visible, visible_lines

TITLE = "Win7 virtio matrix"


def _cell(value: object) -> str:
    return html.escape(" ".join(visible(str(value)).split()), quote=False).replace("|", "\\|")


def _seconds(value: float | None) -> str:
    return f"{value:.1f} s" if value is not None else ""


def _slowest(outcome: RunOutcome) -> str:
    return ", ".join(f"{s['marker']} {s['took_s']:.1f} s" for s in outcome.slowest)


def _row(outcome: RunOutcome) -> str:
    verdict = "PASS" if outcome.passed else f"FAIL {outcome.token}"
    return (f"| {_cell(outcome.name)} | {_cell(verdict)} | {outcome.exit_code} | {_seconds(outcome.duration_s)} "
            f"| {_seconds(outcome.wall_s)} | {_cell(_slowest(outcome))} |")


def _details(outcome: RunOutcome) -> list[str]:
    head = f"{_cell(outcome.name)}: {'PASS' if outcome.passed else _cell(f'FAIL {outcome.token}')}"
    if outcome.results is not None:
        # ci_summary escapes HTML and pipes; control bytes a guest sent are shown here too.
        body = visible_lines(ci_summary.render(outcome.results).replace("## ", "#### ", 1))
    else:
        body = _cell(outcome.line()) + "\n"
    return ["<details>", f"<summary>{head}</summary>", "", body, "</details>", ""]


def render_summary(merged: Merged) -> str:
    total = len(merged.outcomes)
    passed = total - merged.failed
    word = "PASS" if merged.worst is None else "FAIL"
    lines = [f"## {TITLE}: {word} ({passed} of {total} passed)", "", _cell(merged.verdict_line()), "",
             "| case | verdict | exit | duration | wall | slowest markers |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [_row(o) for o in merged.outcomes]
    lines += ["", f"Exit code {int(merged.exit_code)}: the worst case's (0 < 4 < 1 < 5 < 3 < 130 < 6 < 2).", ""]
    for outcome in merged.outcomes:
        lines += _details(outcome)
    return "\n".join(lines).rstrip("\n") + "\n"
