"""The harness workflow's job summary (``python -m harness.ci_summary``) from results.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness.ci_summary import summary

ROOT = Path(__file__).resolve().parents[1]


def _results(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_pass_lists_every_test_and_the_facts(tmp_path: Path) -> None:
    doc = {
        "verdict": "PASS", "token": None, "exit_code": 0, "accel": "kvm", "duration_s": 93.25, "version": "0.1.0",
        "qemu": {"version": "7.2.22", "argv": ["qemu-system-x86_64"]},
        "tests": {
            "virtio-blk": {"status": "PASS", "fields": {"write_ok": "1", "read_ok": "1"}},
            "virtio-net": {"status": "PASS", "fields": {"large_ok": "1"}},
            "virtio-snd": {"status": "SKIP", "fields": {}, "reason": "flag_not_set"},
        },
    }
    text = summary(_results(tmp_path, doc))
    lines = text.splitlines()
    assert lines[0] == "## Win7 virtio harness: PASS"
    assert "| test | status | fields |" in lines
    assert "| virtio-blk | PASS | write_ok=1, read_ok=1 |" in lines
    assert "| virtio-net | PASS | large_ok=1 |" in lines
    assert "| virtio-snd | SKIP | flag_not_set |" in lines
    assert lines[-1] == "accel kvm · QEMU 7.2.22 · 93.2 s · harness 0.1.0"
    assert "exit code" not in text


def test_fail_names_token_exit_code_and_detail_and_escapes_guest_text(tmp_path: Path) -> None:
    doc = {
        "verdict": "FAIL", "token": "VIRTIO_NET_FAILED", "exit_code": 1, "detail": "virtio-net reported FAIL",
        "tests": {"virtio-net": {"status": "FAIL", "fields": {"err": "a|b <script>x</script>\nnext"}}},
    }
    lines = summary(_results(tmp_path, doc)).splitlines()
    assert lines[0] == "## Win7 virtio harness: FAIL"
    assert lines[2] == "VIRTIO_NET_FAILED (exit code 1): virtio-net reported FAIL"
    assert "| virtio-net | FAIL | err=a\\|b &lt;script&gt;x&lt;/script&gt; next |" in lines


def test_the_timeline_is_a_table_of_phases_in_seconds(tmp_path: Path) -> None:
    doc = {"verdict": "PASS", "token": None, "exit_code": 0, "tests": {},
           "timeline": {"phases": {"qemu_up": 0.05, "guest_running": 0.07, "first_serial_byte": 2.5,
                                   "marker:virtio-blk": 3.25, "result": 9.5}}}
    lines = summary(_results(tmp_path, doc)).splitlines()
    table = lines[lines.index("| phase | at (s) |"):]
    assert table[1] == "| --- | --- |"
    assert table[2:7] == ["| QEMU up (QMP) | 0.05 |", "| guest running | 0.07 |", "| first COM1 byte | 2.5 |",
                          "| virtio-blk (required) | 3.25 |", "| RESULT | 9.5 |"]


def test_control_bytes_from_the_guest_are_shown_not_sent(tmp_path: Path) -> None:
    doc = {"verdict": "FAIL", "token": "VIRTIO_NET_FAILED", "exit_code": 1, "detail": "a\x1b]52;c;aGk=\x07b",
           "tests": {"virtio-net\x1b[2J": {"status": "FAIL", "fields": {"err": "x\x1b[31my"}}}}
    text = summary(_results(tmp_path, doc))
    assert "\x1b" not in text and "\x07" not in text
    assert "a\\x1b]52;c;aGk=\\x07b" in text and "| virtio-net\\x1b[2J | FAIL | err=x\\x1b[31my |" in text


def test_no_tests_is_said_plainly(tmp_path: Path) -> None:
    doc = {"verdict": "FAIL", "token": "TIMEOUT", "exit_code": 5, "tests": {}}
    text = summary(_results(tmp_path, doc))
    assert "TIMEOUT (exit code 5)" in text
    assert "The guest reported no tests." in text
    assert "| test |" not in text


def test_missing_results_quote_the_last_verdict_line_of_the_console(tmp_path: Path) -> None:
    console = tmp_path / "console.log"
    console.write_text('{"level": "ERROR", "message": "x"}\nFAIL: USAGE: old\nFAIL: INFRA: Docker engine unreachable\n'
                       '{"level": "INFO", "message": "bye"}\n', encoding="utf-8")
    text = summary(tmp_path / "results.json", console)
    assert text.splitlines()[0] == "## Win7 virtio harness: no results"
    assert "results.json: not written." in text
    assert "The harness said: `FAIL: INFRA: Docker engine unreachable`" in text
    assert "old" not in text
    assert "The harness said" not in summary(tmp_path / "results.json", tmp_path / "no-console.log")


def test_unreadable_or_odd_results_are_reported(tmp_path: Path) -> None:
    bad = tmp_path / "results.json"
    bad.write_text("{not json", encoding="utf-8")
    assert "unreadable" in summary(bad)
    assert "not a JSON object" in summary(_results(tmp_path, ["PASS"]))


def test_module_entry_point_always_exits_zero(tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "harness.ci_summary", str(_results(tmp_path, {"verdict": "PASS"}))],
                        capture_output=True, text=True, check=False, cwd=ROOT)
    assert ok.returncode == 0
    assert ok.stdout.startswith("## Win7 virtio harness: PASS\n")
    missing = subprocess.run([sys.executable, "-m", "harness.ci_summary", str(tmp_path / "none.json"),
                              "--console", str(tmp_path / "none.log")],
                             capture_output=True, text=True, check=False, cwd=ROOT)
    assert missing.returncode == 0
    assert "no results" in missing.stdout
