"""``aero-win7-harness merge``: many runs' out dirs -> junit.xml (a testsuite per case), results.json,
summary.md and index.html, exit code the worst case's. Runs that are missing or half-written are
failing cases with their own tokens, never dropped.

Most tests merge results.json files written here in the harness's format; one merges real runs
of boot-sector guests under QEMU, and tests/test_fleet_e2e.py merges a real matrix run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from junitparser import Error, Failure, JUnitXml, Skipped

from harness.errors import ExitCode
from harness.fleet import ranking
from harness.fleet.merge import Merged, collect, merge
from harness.fleet.runs import slowest_markers
from harness.qemu.bootsector import Ending
from tests.conftest import PASSING, HarnessRun, lines

CODES = {0: ("PASS", None), 1: ("FAIL", "VIRTIO_NET_FAILED"), 2: ("FAIL", "USAGE"), 3: ("FAIL", "QEMU_EXITED"),
         4: ("FAIL", "AUDIO_SILENT"), 5: ("FAIL", "TIMEOUT"), 6: ("FAIL", "INFRA"), 130: ("FAIL", "INTERRUPTED")}


def results(code: int, **extra: Any) -> dict[str, Any]:
    verdict, token = CODES[code]
    doc: dict[str, Any] = {
        "verdict": verdict, "token": token or "PASS", "exit_code": code,
        "detail": "" if code == 0 else f"detail {code}",
        "tests": {"virtio-blk": {"status": "PASS", "fields": {"write_ok": "1"}},
                  "virtio-net": {"status": "FAIL" if code == 1 else "PASS", "fields": {"large_ok": "0"}},
                  "virtio-snd": {"status": "SKIP", "fields": {}, "reason": "flag_not_set"}},
        "required_tests": ["virtio-blk", "virtio-net"], "accel": "tcg", "duration_s": 12.5, "layout": "contract",
        "timeline": {"phases": {"qemu_started": 0.0, "start": 5.0, "marker:virtio-blk": 9.0,
                                "marker:virtio-net": 15.5, "result": 15.6}},
    }
    doc.update(extra)
    return doc


def run_dir(root: Path, name: str, doc: dict[str, Any] | str | None, record: dict[str, Any] | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    if isinstance(doc, dict):
        (folder / "results.json").write_text(json.dumps(doc), encoding="utf-8")
    elif isinstance(doc, str):
        (folder / "results.json").write_text(doc, encoding="utf-8")
    if record is not None:
        (folder / "case.json").write_text(json.dumps(record), encoding="utf-8")
    (folder / "report.html").write_text("<p>report</p>", encoding="utf-8")
    return folder


def merge_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", "merge", *map(str, args)], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, check=False)


# -- the worst exit code ---------------------------------------------------------------------------


def test_the_worst_exit_code_order() -> None:
    assert [int(c) for c in ranking.ORDER] == [0, 4, 1, 5, 3, 130, 6, 2]
    assert ranking.worst([]) is ExitCode.PASS
    assert ranking.worst([0, 0]) is ExitCode.PASS
    assert ranking.worst([0, 4]) is ExitCode.AUDIO_SILENT
    assert ranking.worst([4, 1, 0]) is ExitCode.FAIL
    assert ranking.worst([1, 5]) is ExitCode.TIMEOUT
    assert ranking.worst([5, 3, 1]) is ExitCode.QEMU_EXITED
    assert ranking.worst([3, 130]) is ExitCode.INTERRUPTED
    assert ranking.worst([3, 6, 130]) is ExitCode.INFRA
    assert ranking.worst([6, 2, 1]) is ExitCode.USAGE
    assert ranking.worst([0, 77]) is ExitCode.INFRA  # outside the contract


@pytest.mark.parametrize("codes", [[0, 1, 5], [2, 6], [4, 0], [3, 130, 1], [0, 0, 0]])
def test_the_merge_exits_with_the_worst_case_and_names_it(tmp_path: Path, codes: list[int]) -> None:
    folders = [run_dir(tmp_path / "runs", f"case-{i}", results(code)) for i, code in enumerate(codes)]
    proc = merge_cli(*folders, "--out-dir", tmp_path / "merged")
    worst = ranking.worst(codes)
    assert proc.returncode == worst, proc.stdout + proc.stderr
    last = proc.stdout.splitlines()[-1]
    if worst == 0:
        assert last == f"PASS: {len(codes)} of {len(codes)} cases passed"
    else:
        first_worst = codes.index(worst)
        failed = sum(1 for c in codes if c)
        assert last == (f"FAIL: {CODES[worst][1]}: {failed} of {len(codes)} cases failed; the worst: "
                        f"case-{first_worst}: {CODES[worst][1]} (exit {worst})")
    doc = json.loads((tmp_path / "merged" / "results.json").read_text())
    assert doc["exit_code"] == worst
    assert [c["exit_code"] for c in doc["cases"]] == codes


# -- missing and half-written runs -----------------------------------------------------------------------


@pytest.mark.fault
def test_missing_and_half_written_runs_are_failing_cases_of_their_own(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    good = run_dir(runs, "good", results(0))
    no_results = run_dir(runs, "launcher-usage", None, {"name": "launcher-usage", "exit_code": 2,
                                                        "verdict_line": "FAIL: USAGE: image gone"})
    killed = run_dir(runs, "killed", None)  # no case.json either: it died before anything
    cut = run_dir(runs, "cut", '{"verdict": "PA')  # half-written
    not_object = run_dir(runs, "list", "[1, 2]")
    foreign = run_dir(runs, "foreign", {"hello": "world"})
    liar = run_dir(runs, "liar", {**results(0), "exit_code": 3})
    gone = runs / "never-ran"
    merged = Merged(collect([good, no_results, killed, cut, not_object, foreign, liar, gone],
                            ["good", "expected-only"]), tmp_path / "merged")
    by = {o.name: o for o in merged.outcomes}
    assert list(by) == ["good", "expected-only", "launcher-usage", "killed", "cut", "list", "foreign", "liar",
                        "never-ran"]
    assert by["good"].passed
    assert (by["expected-only"].token, by["expected-only"].exit_code) == ("RUN_MISSING", 6)
    assert (by["never-ran"].token, by["never-ran"].exit_code) == ("RUN_MISSING", 6)
    assert (by["launcher-usage"].token, by["launcher-usage"].exit_code) == ("RESULTS_MISSING", 2)
    assert "the run said: FAIL: USAGE: image gone (exit code 2)" in by["launcher-usage"].detail
    assert (by["killed"].token, by["killed"].exit_code) == ("RESULTS_MISSING", 6)
    for name in ("cut", "list", "foreign", "liar"):
        assert (by[name].token, by[name].exit_code) == ("RESULTS_UNREADABLE", 6), name
    assert "not JSON" in by["cut"].detail and "not a JSON object but list" in by["list"].detail
    assert "contradict" in by["liar"].detail
    assert merged.exit_code is ExitCode.USAGE  # the launcher's USAGE outranks INFRA
    assert merged.verdict_line() == ("FAIL: RESULTS_MISSING: 8 of 9 cases failed; the worst: launcher-usage: "
                                     "RESULTS_MISSING (exit 2)")


@pytest.mark.bad_input
def test_two_runs_of_one_case_are_refused(tmp_path: Path) -> None:
    a = run_dir(tmp_path / "a", "x", results(0), {"name": "same"})
    b = run_dir(tmp_path / "b", "y", results(0), {"name": "same"})
    proc = merge_cli(a, b, "--out-dir", tmp_path / "merged")
    assert proc.returncode == 2
    assert proc.stdout == f"FAIL: USAGE: two runs of case 'same': {a} and {b}\n"
    assert not (tmp_path / "merged").exists()


def test_the_merge_never_writes_over_a_run(tmp_path: Path) -> None:
    run = run_dir(tmp_path, "run", results(0))
    proc = merge_cli(run, "--out-dir", run)
    assert proc.returncode == 2
    assert "is the folder of run 'run'" in proc.stdout
    assert json.loads((run / "results.json").read_text())["verdict"] == "PASS"


def test_expected_cases_come_from_matrix_list_json(tmp_path: Path) -> None:
    run = run_dir(tmp_path / "runs", "b", results(0))
    expected = tmp_path / "cases.json"
    expected.write_text(json.dumps([{"name": n, "selfcheck": True, "image": None, "flags": [], "timeout": 1,
                                     "runner": ["x"]} for n in ("a", "b")]))
    proc = merge_cli(run, "--expect-cases", expected, "--out-dir", tmp_path / "merged")
    assert proc.returncode == 6
    assert proc.stdout.splitlines()[:2] == [
        "case a: FAIL: RUN_MISSING: no run folder was given for this case (exit 6)",
        "case b: PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS (exit 0, 12.5 s)"]
    proc = merge_cli("--expect-cases", expected, "--out-dir", tmp_path / "merged2")  # no run came back at all
    assert proc.returncode == 6
    assert merge_cli("--out-dir", tmp_path / "merged3").stdout == (
        "FAIL: USAGE: nothing to merge: give the runs' out dirs (or --expect-cases)\n")


def test_the_name_is_case_jsons_else_the_folders(tmp_path: Path) -> None:
    named = run_dir(tmp_path, "win7-case-snd-on", results(0), {"name": "snd-on"})
    bad_name = run_dir(tmp_path, "plain", results(0), {"name": "../../etc"})
    names = [o.name for o in collect([named, bad_name, named / "results.json"][:2])]
    assert names == ["snd-on", "plain"]
    assert collect([named / "results.json"])[0].name == "snd-on"  # a results.json stands for its folder


# -- the files -----------------------------------------------------------------------------------------


def test_junit_has_a_testsuite_per_case(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    folders = [run_dir(runs, "ok", results(0)), run_dir(runs, "net-fail", results(1)),
               run_dir(runs, "slow", results(5, tests={"virtio-blk": {"status": "PASS", "fields": {}}})),
               run_dir(runs, "gone", None)]
    merge(folders, tmp_path / "merged")
    xml = JUnitXml.fromfile(str(tmp_path / "merged" / "junit.xml"))
    suites = {suite.name: suite for suite in xml}
    assert list(suites) == ["ok", "net-fail", "slow", "gone"]
    cases = {c.name: c for c in suites["ok"]}
    assert list(cases) == ["virtio-blk", "virtio-net", "virtio-snd", "overall"]
    assert cases["overall"].is_passed and isinstance(cases["virtio-snd"].result[0], Skipped)
    assert {p.name: p.value for p in suites["ok"].properties()}["verdict"] == "PASS"  # type: ignore[no-untyped-call]
    net = {c.name: c for c in suites["net-fail"]}
    assert isinstance(net["virtio-net"].result[0], Failure) and net["virtio-net"].result[0].type == "VIRTIO_NET_FAILED"
    assert isinstance(net["overall"].result[0], Failure)  # the guest failed a test: a failure
    slow = {c.name: c for c in suites["slow"]}
    assert slow["virtio-net"].result[0].type == "MISSING_VIRTIO_NET"  # required, never reported
    assert isinstance(slow["overall"].result[0], Error) and slow["overall"].result[0].type == "TIMEOUT"
    (gone,) = list(suites["gone"])
    assert gone.name == "overall" and gone.result[0].type == "RESULTS_MISSING"


def test_results_json_has_durations_and_the_slowest_markers(tmp_path: Path) -> None:
    folder = run_dir(tmp_path / "runs", "ok", results(0), {"name": "ok", "wall_s": 20.25, "exit_code": 0})
    merge([folder], tmp_path / "merged")
    doc = json.loads((tmp_path / "merged" / "results.json").read_text())
    assert (doc["verdict"], doc["token"], doc["exit_code"], doc["worst_case"]) == ("PASS", None, 0, None)
    assert doc["counts"] == {"cases": 1, "passed": 1, "failed": 0}
    (case,) = doc["cases"]
    assert (case["duration_s"], case["wall_s"], case["accel"], case["layout"]) == (12.5, 20.25, "tcg", "contract")
    assert case["folder"] == "../runs/ok" and case["report"] == "../runs/ok/report.html"
    assert case["slowest_markers"] == [{"marker": "virtio-net", "at_s": 15.5, "took_s": 6.5},
                                       {"marker": "virtio-blk", "at_s": 9.0, "took_s": 4.0}]
    assert case["tests"] == {"virtio-blk": "PASS", "virtio-net": "PASS", "virtio-snd": "SKIP"}
    assert doc["exit_code_order"] == [0, 4, 1, 5, 3, 130, 6, 2]


def test_slowest_markers_ignore_what_is_not_a_time() -> None:
    assert slowest_markers({"timeline": {"phases": {"marker:a": "soon", "marker:b": 2, "start": True}}}) == [
        {"marker": "b", "at_s": 2.0, "took_s": 2.0}]
    assert slowest_markers({"timeline": []}) == []


HOSTILE = '<script>alert(1)</script>|pipe\x1b[2J'


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.links: list[str] = []
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for key, value in attrs:
            if key == "href" and value:
                self.links.append(value)
            if key == "src" and value:
                self.sources.append(value)


@pytest.mark.attack
def test_index_and_summary_escape_what_runs_wrote(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    bad = run_dir(runs, "hostile", results(1, detail=HOSTILE, accel=HOSTILE,
                                           tests={HOSTILE: {"status": "FAIL", "fields": {"x": HOSTILE}}}))
    odd = run_dir(runs, "javascript:alert(1)", results(0))
    merge([bad, odd], tmp_path / "merged")
    page_text = (tmp_path / "merged" / "index.html").read_text()
    page = _Page()
    page.feed(page_text)
    assert "script" not in page.tags and "\x1b" not in page_text and "\\x1b[2J" in page_text
    assert page.sources == []  # nothing fetched
    assert all(not link.startswith(("javascript:", "http:", "https:", "//")) for link in page.links), page.links
    for link in page.links:
        assert (tmp_path / "merged" / link.replace("%3A", ":").replace("%28", "(").replace("%29", ")")).is_file()
    summary = (tmp_path / "merged" / "summary.md").read_text()
    assert "<script>" not in summary and "&lt;script&gt;" in summary and "\x1b" not in summary
    row = next(line for line in summary.splitlines() if line.startswith("| hostile |"))
    assert row.count(" | ") == 5  # the pipe in the text is escaped: still six cells
    junit = (tmp_path / "merged" / "junit.xml").read_text()
    assert "\x1b" not in junit and "&lt;script&gt;" in junit


def test_summary_table_and_folded_details(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    merge([run_dir(runs, "ok", results(0)), run_dir(runs, "slow", results(5)), run_dir(runs, "gone", None)],
          tmp_path / "merged")
    summary = (tmp_path / "merged" / "summary.md").read_text()
    lines_ = summary.splitlines()
    assert lines_[0] == "## Win7 virtio matrix: FAIL (1 of 3 passed)"
    assert "| ok | PASS | 0 | 12.5 s |  | virtio-net 6.5 s, virtio-blk 4.0 s |" in lines_
    assert "| slow | FAIL TIMEOUT | 5 | 12.5 s |  | virtio-net 6.5 s, virtio-blk 4.0 s |" in lines_
    assert any(line.startswith("| gone | FAIL RESULTS_MISSING | 6 |") for line in lines_)
    assert summary.count("<details>") == 3 and "#### Win7 virtio harness: FAIL" in summary


# -- real runs ---------------------------------------------------------------------------------------


@pytest.mark.qemu
@pytest.mark.usefixtures("qemu", "no_stray_qemu")
def test_merging_real_runs_keeps_each_runs_verdict(make_guest: Callable[..., Path],
                                                   run_harness: Callable[..., HarnessRun], tmp_path: Path) -> None:
    passing = run_harness("--disk-image", make_guest(lines(*PASSING), name="pass.img"), "--accel", "tcg",
                          "--timeout-seconds", "30", out_dir=tmp_path / "runs" / "pass")
    silent = run_harness("--disk-image", make_guest(b"no protocol at all\r\n", Ending.HALT, name="silent.img"),
                         "--accel", "tcg", "--timeout-seconds", "3", out_dir=tmp_path / "runs" / "silent")
    assert (passing.returncode, silent.returncode) == (0, 5)
    proc = merge_cli(passing.out_dir, silent.out_dir, "--out-dir", tmp_path / "merged")
    assert proc.returncode == 5, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "merged" / "results.json").read_text())
    for case, run in zip(doc["cases"], (passing, silent), strict=True):
        own = run.results()
        assert (case["verdict"], case["exit_code"], case["duration_s"]) == (own["verdict"], own["exit_code"],
                                                                            own["duration_s"])
    assert doc["cases"][1]["token"] == "TIMEOUT"
    assert [s["marker"] for s in doc["cases"][0]["slowest_markers"]]  # the real timeline has markers


def test_by_index_names_the_kubernetes_folders_after_their_cases(tmp_path: Path) -> None:
    volume = tmp_path / "out"
    run_dir(volume, "case-0", results(0))  # a pod that ran (its case.json aside)
    expected = tmp_path / "cases.json"
    expected.write_text(json.dumps([{"name": n, "selfcheck": True, "image": None, "flags": [], "timeout": 1,
                                     "runner": ["x"]} for n in ("a", "b")]))
    proc = merge_cli("--by-index", volume / "case-0", volume / "case-1", "--expect-cases", expected,
                     "--out-dir", volume)
    assert proc.returncode == 6, proc.stdout
    assert proc.stdout.splitlines()[:2] == [
        "case a: PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS (exit 0, 12.5 s)",
        f"case b: FAIL: RUN_MISSING: {volume / 'case-1'}: no such folder (exit 6)"]  # once, not twice
    proc = merge_cli("--by-index", volume / "case-0", "--expect-cases", expected, "--out-dir", volume)
    assert proc.stdout == "FAIL: USAGE: --by-index: 1 run folder(s) for 2 expected case(s)\n"
    assert merge_cli("--by-index", volume / "case-0").stdout == "FAIL: USAGE: --by-index needs --expect-cases\n"
