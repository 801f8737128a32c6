"""One run's folder, read for a merge: its ``results.json`` (the verdict), its ``case.json`` (which
case it was, written by the fleet runner) and what its timeline says took longest.

A run that cannot be judged is never dropped: it becomes a failing case with a token of its own,

=====================  ======================================================================
``RUN_MISSING``        no folder for the case (never ran, artifact not uploaded, wrong path)
``RESULTS_MISSING``    a folder without ``results.json`` (the run ended before the harness wrote
                       it: the launcher's USAGE or INFRA, a killed container); the exit code is
                       the one ``case.json`` recorded if it is a failure, else INFRA
``RESULTS_UNREADABLE`` ``results.json`` is not JSON, not an object, or has no usable verdict
=====================  ======================================================================
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ExitCode
from harness.fleet.ranking import contract_code
from harness.fleet.record import CASE_JSON
from harness.fleet.schema import NAME_PATTERN
from harness.outputs import RESULTS

RUN_MISSING = "RUN_MISSING"
RESULTS_MISSING = "RESULTS_MISSING"
RESULTS_UNREADABLE = "RESULTS_UNREADABLE"
SLOWEST_KEPT = 3
MAX_JSON_BYTES = 64 * 1024 * 1024


@dataclass
class RunOutcome:
    name: str
    folder: Path | None
    verdict: str  # PASS or FAIL
    token: str | None
    exit_code: int
    detail: str
    source: str  # "results.json", or the token of why there is none
    results: Mapping[str, Any] | None = None
    record: Mapping[str, Any] | None = None
    slowest: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.verdict == "PASS"

    @property
    def duration_s(self) -> float | None:
        value = (self.results or {}).get("duration_s")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @property
    def wall_s(self) -> float | None:
        value = (self.record or {}).get("wall_s")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def line(self) -> str:
        if self.passed:
            return "PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS"
        return f"FAIL: {self.token}: {self.detail}" if self.detail else f"FAIL: {self.token}"


def _read_json(path: Path) -> tuple[Any, str | None]:
    """(document, None) or (None, why not)."""
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_JSON_BYTES + 1)
    except FileNotFoundError:
        return None, "not written"
    except OSError as err:
        return None, f"cannot be read ({err.strerror})"
    if len(raw) > MAX_JSON_BYTES:
        return None, f"larger than {MAX_JSON_BYTES} bytes"
    try:
        return json.loads(raw.decode("utf-8")), None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"not JSON ({err})"


def slowest_markers(results: Mapping[str, Any], kept: int = SLOWEST_KEPT) -> list[dict[str, Any]]:
    """The required markers that took longest, each timed from the phase before it."""
    timeline = results.get("timeline")
    phases = timeline.get("phases") if isinstance(timeline, Mapping) else None
    if not isinstance(phases, Mapping):
        return []
    points = sorted(((float(at), str(key)) for key, at in phases.items()
                     if isinstance(at, (int, float)) and not isinstance(at, bool)), key=lambda p: p[0])
    steps: list[dict[str, Any]] = []
    before = 0.0
    for at, key in points:
        if key.startswith("marker:"):
            steps.append({"marker": key.removeprefix("marker:"), "at_s": round(at, 3), "took_s": round(at - before, 3)})
        before = at
    return sorted(steps, key=lambda s: -float(s["took_s"]))[:kept]


def _record(folder: Path) -> Mapping[str, Any] | None:
    data, _why = _read_json(folder / CASE_JSON)
    return data if isinstance(data, Mapping) else None


def name_of(folder: Path, record: Mapping[str, Any] | None) -> str:
    name = (record or {}).get("name")
    return name if isinstance(name, str) and re.match(NAME_PATTERN, name) else folder.name


def missing(name: str, folder: Path | None, why: str) -> RunOutcome:
    return RunOutcome(name, folder, "FAIL", RUN_MISSING, int(ExitCode.INFRA), why, RUN_MISSING)


def _without_results(name: str, folder: Path, record: Mapping[str, Any] | None, why: str) -> RunOutcome:
    recorded = (record or {}).get("exit_code")
    code = contract_code(recorded) if isinstance(recorded, int) and recorded != 0 else ExitCode.INFRA
    said = (record or {}).get("verdict_line")
    detail = f"{folder / RESULTS} {why}" + (f"; the run said: {said}" if isinstance(said, str) and said else "")
    if isinstance(recorded, int):
        detail += f" (exit code {recorded})"
    return RunOutcome(name, folder, "FAIL", RESULTS_MISSING, int(code), detail, RESULTS_MISSING, record=record)


def _unreadable(name: str, folder: Path, record: Mapping[str, Any] | None, why: str) -> RunOutcome:
    return RunOutcome(name, folder, "FAIL", RESULTS_UNREADABLE, int(ExitCode.INFRA), f"{folder / RESULTS}: {why}",
                      RESULTS_UNREADABLE, record=record)


def read_run(path: Path, name: str | None = None) -> RunOutcome:
    """The outcome of the run in ``path`` (a run's out dir, or its results.json)."""
    folder = path.parent if path.name == RESULTS and path.is_file() else path
    if not folder.is_dir():
        state = "not a folder" if folder.exists() else "no such folder"
        return missing(name or folder.name, folder, f"{folder}: {state}")
    record = _record(folder)
    name = name or name_of(folder, record)
    results, why = _read_json(folder / RESULTS)
    if why == "not written":
        return _without_results(name, folder, record, why)
    if why is not None:
        return _unreadable(name, folder, record, why)
    if not isinstance(results, Mapping):
        return _unreadable(name, folder, record, f"not a JSON object but {type(results).__name__}")
    verdict, code = results.get("verdict"), results.get("exit_code")
    if verdict not in ("PASS", "FAIL") or not isinstance(code, int) or isinstance(code, bool):
        return _unreadable(name, folder, record, "no verdict and exit_code: not a harness results.json")
    if (verdict == "PASS") != (code == 0):
        return _unreadable(name, folder, record, f"verdict {verdict} with exit code {code} contradict each other")
    token = results.get("token")
    return RunOutcome(name, folder, verdict, None if verdict == "PASS" else str(token or contract_code(code).name),
                      code if verdict == "PASS" else int(contract_code(code)), str(results.get("detail") or ""),
                      RESULTS, results=results, record=record, slowest=slowest_markers(results))
