"""``report.html``: one self-contained page of a run, for people.

It is made from the run's results.json document and the files beside it: the verdict and its
token, the tests (the required ones marked), the timeline, the guest's screen (embedded), the PCI
table, the guest's network requests, the waveform of a sound capture (drawn from the samples as
inline SVG), the QEMU command, and links to the raw artifacts. Nothing is fetched from a network:
CSS is inline, the screenshot a data URL. Everything the guest sent is escaped (the template engine
escapes HTML; control bytes are shown as ``\\xNN``), so a guest cannot run script in the page.
The serial and network logs are read from their ends only: a huge log costs nothing here.
"""

from __future__ import annotations

import base64
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from harness.outputs import (
    HARNESS_LOG,
    JUNIT,
    OVERLAY,
    QEMU_STDERR_LOG,
    REPORT_HTML,
    RESULTS,
    SCREENSHOT,
    write_atomically,
)
from harness.textsafe import visible
from harness.timeline import phase_label

TAIL_BYTES = 64 * 1024
TAIL_LINES = 200
MAX_FIELDS_SHOWN = 12
MAX_SCREENSHOT_BYTES = 8 * 1024 * 1024
_environment = Environment(loader=PackageLoader("harness", "templates"), autoescape=select_autoescape(["html"]),
                           trim_blocks=True, lstrip_blocks=True)


def tail(path: Path | None, lines: int = TAIL_LINES, max_bytes: int = TAIL_BYTES) -> str:
    """The last lines of a file, read from its end, control bytes shown."""
    if path is None:
        return ""
    try:
        with path.open("rb") as stream:
            size = stream.seek(0, 2)
            stream.seek(max(0, size - max_bytes))
            data = stream.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
    kept = text.split("\n")[-lines - 1:]
    if size > max_bytes and kept:
        kept = kept[1:]  # the first one is cut
    return "\n".join(visible(line) for line in kept).strip("\n")


def _size(path: Path) -> str:
    size = path.stat().st_size
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _tests(results: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    required = set(results.get("required_tests") or [])
    rows = []
    for name, outcome in (results.get("tests") or {}).items():
        fields = outcome.get("fields") or {}
        reason = fields.get("reason") or outcome.get("reason") or ""
        shown = [f"{k}={v}" for k, v in fields.items() if k != "reason"]
        if len(shown) > MAX_FIELDS_SHOWN:
            shown = shown[:MAX_FIELDS_SHOWN] + [f"... {len(shown) - MAX_FIELDS_SHOWN} more in results.json"]
        at = outcome.get("at_s")
        rows.append({"name": visible(name), "status": visible(str(outcome.get("status", "?"))),
                     "required": name in required, "reason": visible("" if reason == "-" else str(reason)),
                     "fields": visible(" ".join(shown)), "at": f"{at:.2f} s" if isinstance(at, (int, float)) else ""})
    missing = [visible(name) for name in sorted(required) if name not in (results.get("tests") or {})]
    return rows, missing


def _phases(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    phases = ((results.get("timeline") or {}).get("phases") or {})
    end = max([float(v) for v in phases.values()] or [0.0]) or 1.0
    rows = []
    for key, at in phases.items():
        label = phase_label(str(key))
        rows.append({"name": visible(label), "at": float(at), "width": round(100 * float(at) / end, 1)})
    return rows


def _waveform(audio: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not audio or not audio.get("envelope"):
        return None
    envelope = audio["envelope"]
    scale = 100 / 32768
    top = [f"{i},{100 - hi * scale:.1f}" for i, (_, hi) in enumerate(envelope)]
    bottom = [f"{i},{100 - lo * scale:.1f}" for i, (lo, _) in reversed(list(enumerate(envelope)))]
    facts = (f"{audio.get('seconds', 0)} s, {audio.get('sample_rate', '?')} Hz, "
             f"{audio.get('channels', '?')} channel(s), "
             f"peak {audio.get('peak', '?')}, RMS {audio.get('rms', '?')} (16-bit scale)")
    return {"width": max(len(envelope) - 1, 1), "points": " ".join(top + bottom), "facts": facts}


def _actions(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for action in results.get("actions") or []:
        commands = [f"{c.get('at_s', '?')} s {c.get('command')} {c.get('arguments')}"
                    + (f" -> {c['error']}" if c.get("error") else "") for c in action.get("commands", [])[:20]]
        rows.append({"reaction": action.get("reaction"), "ready_at": action.get("ready_at_s"),
                     "first_ms": action.get("first_command_ms"), "attempts": action.get("attempts"),
                     "outcome": visible(str(action.get("outcome"))), "commands": visible("; ".join(commands))})
    return rows


def _pci(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for function in results.get("pci") or []:
        bars = ", ".join(f"BAR{b.get('index')} {b.get('type')} {b.get('size')}" for b in function.get("bars", []))
        rows.append({**function, "bars": bars})
    return rows


def _files(out_dir: Path, extra: Sequence[Path]) -> list[dict[str, str]]:
    files = []
    for path in [out_dir / name for name in (RESULTS, JUNIT, HARNESS_LOG, QEMU_STDERR_LOG, SCREENSHOT, OVERLAY)] \
            + list(extra):
        if path.is_file():
            href = path.name if path.parent.resolve() == out_dir.resolve() else path.resolve().as_uri()
            files.append({"name": path.name, "href": href, "size": _size(path)})
    return files


def render(results: Mapping[str, Any], out_dir: Path, serial_log: Path | None = None,
           network_log: Path | None = None, extra_files: Sequence[Path] = ()) -> str:
    passed = results.get("verdict") == "PASS"
    token = str(results.get("token", "?"))
    detail = str(results.get("detail", ""))
    line = "PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS" if passed else f"FAIL: {token}: {detail}"
    qemu = results.get("qemu") or {}
    facts = [f for f in (
        f"{results.get('duration_s', '?')} s", f"accel {results.get('accel')}" if results.get("accel") else "",
        f"{results.get('layout')} layout" if results.get("layout") else "",
        f"QEMU {qemu.get('version')}" if qemu.get("version") else "", f"harness {results.get('version', '?')}",
        "network isolated" if (results.get("network_isolation") or {}).get("isolated") else "") if f]
    screenshot = None
    shot = out_dir / SCREENSHOT
    if results.get("screenshot") and shot.is_file() and shot.stat().st_size <= MAX_SCREENSHOT_BYTES:
        screenshot = base64.b64encode(shot.read_bytes()).decode()
    tests, missing = _tests(results)
    return _environment.get_template("report.html").render(
        verdict={"passed": passed, "word": "PASS" if passed else "FAIL", "token": visible(token),
                 "exit_code": results.get("exit_code"), "line": visible(line)},
        facts=[visible(f) for f in facts], tests=tests, missing=missing, phases=_phases(results),
        screenshot=screenshot, waveform=_waveform(results.get("audio")), actions=_actions(results), pci=_pci(results),
        network=tail(network_log), serial=tail(serial_log, lines=100),
        qemu_version=visible(str(qemu.get("version") or "")), qemu_command=visible(shlex.join(qemu.get("argv") or [])),
        files=_files(out_dir, [p for p in (serial_log, network_log, *extra_files) if p is not None]))


def write_report(results: Mapping[str, Any], out_dir: Path, serial_log: Path | None = None,
                 network_log: Path | None = None, extra_files: Sequence[Path] = ()) -> Path:
    path = out_dir / REPORT_HTML
    write_atomically(path, render(results, out_dir, serial_log, network_log, extra_files).encode("utf-8"))
    return path
