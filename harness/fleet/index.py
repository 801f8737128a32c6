"""``index.html`` of a merge: one self-contained page with the overall verdict and a row a case,
linking each case's own report.html and raw files by relative links (so the folder can be moved
or uploaded as it is). Inline CSS, nothing fetched; everything a run wrote is escaped by the
template engine and its control bytes shown as ``\\xNN``. The template lives here, not in a data
file, so the page renders from any installed copy of the harness."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment

from harness.fleet.merge import Merged
from harness.fleet.ranking import ORDER
from harness.outputs import JUNIT, REPORT_HTML, RESULTS, SERIAL_LOG
from harness.textsafe import visible

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ word }} · {{ passed }} of {{ total }} · aero-win7-harness matrix</title>
<style>
  :root { --pass: #1a7f37; --fail: #cf222e; --muted: #57606a; --line: #d0d7de; --soft: #f6f8fa; }
  body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1200px;
         padding: 24px; color: #1f2328; }
  h1 { font-size: 22px; margin: 0 0 4px; }
  .verdict { padding: 14px 18px; border-radius: 8px; color: #fff; }
  .verdict.pass { background: var(--pass); } .verdict.fail { background: var(--fail); }
  .verdict .detail { font-family: ui-monospace, monospace; margin-top: 6px; word-break: break-word; }
  .facts, .note { color: var(--muted); }
  table { border-collapse: collapse; width: 100%; margin-top: 16px; }
  th, td { text-align: left; padding: 4px 8px; vertical-align: top; border-bottom: 1px solid var(--line); }
  th { background: var(--soft); }
  td.nowrap { white-space: nowrap; }
  td.mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; word-break: break-word; }
  .PASS { color: var(--pass); font-weight: 600; } .FAIL { color: var(--fail); font-weight: 600; }
  a { color: #0969da; }
</style>
</head>
<body>
<h1>aero-win7-harness matrix</h1>
<div class="verdict {{ 'pass' if word == 'PASS' else 'fail' }}">
  <div><strong>{{ word }}</strong>: {{ passed }} of {{ total }} cases passed
    {%- if word != 'PASS' %}, exit code {{ exit_code }}{% endif %}</div>
  <div class="detail">{{ line }}</div>
</div>
<p class="facts">{{ facts | join(" · ") }}</p>
<table>
  <tr><th>case</th><th>verdict</th><th>exit</th><th>detail</th><th>duration</th><th>wall</th><th>accel</th>
      <th>slowest markers</th><th>files</th></tr>
  {% for c in cases %}
  <tr>
    <td class="mono nowrap">
      {%- if c.report %}<a href="{{ c.report }}">{{ c.name }}</a>{% else %}{{ c.name }}{% endif -%}
    </td>
    <td class="{{ c.verdict }}">{{ c.verdict }}{% if c.token %} {{ c.token }}{% endif %}</td>
    <td>{{ c.exit_code }}</td>
    <td class="mono">{{ c.detail }}</td>
    <td class="nowrap">{{ c.duration }}</td><td class="nowrap">{{ c.wall }}</td><td>{{ c.accel }}</td>
    <td class="mono">{{ c.slowest }}</td>
    <td>
      {%- for f in c.files %}<a href="{{ f.href }}">{{ f.name }}</a>{% if not loop.last %} · {% endif %}{% endfor -%}
    </td>
  </tr>
  {% endfor %}
</table>
<p class="note">The exit code is the worst case's, from best to worst: {{ order }}
(USAGE and INFRA outrank every test outcome; a missing or half-written run is a failing case of its own).</p>
</body>
</html>
"""

_environment = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
_template = _environment.from_string(TEMPLATE)
LINKED = (REPORT_HTML, RESULTS, JUNIT, SERIAL_LOG)


def _seconds(value: float | None) -> str:
    return f"{value:.1f} s" if value is not None else ""


def _cases(merged: Merged) -> list[dict[str, Any]]:
    rows = []
    for outcome in merged.outcomes:
        results = outcome.results or {}
        files = [{"name": name, "href": href} for name in LINKED if (href := merged.href(outcome, name))]
        rows.append({
            "name": visible(outcome.name), "verdict": outcome.verdict, "token": visible(outcome.token or ""),
            "exit_code": outcome.exit_code, "detail": visible(outcome.detail),
            "report": merged.href(outcome, REPORT_HTML),
            "duration": _seconds(outcome.duration_s), "wall": _seconds(outcome.wall_s),
            "accel": visible(str(results.get("accel") or "")),
            "slowest": visible(", ".join(f"{s['marker']} {s['took_s']:.1f} s" for s in outcome.slowest)),
            "files": files,
        })
    return rows


def render_index(merged: Merged) -> str:
    from harness import __version__
    from harness.fleet.record import now

    total = len(merged.outcomes)
    return _template.render(
        word="PASS" if merged.worst is None else "FAIL", passed=total - merged.failed, total=total,
        exit_code=int(merged.exit_code), line=visible(merged.verdict_line()), cases=_cases(merged),
        facts=[f"merged {now()}", f"harness {__version__}", f"exit code {int(merged.exit_code)}"],
        order=" < ".join(f"{int(code)} {code.name}" for code in ORDER))
