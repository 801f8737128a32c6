"""results.json and junit.xml, read back the way CI systems read them."""

from __future__ import annotations

import json
from pathlib import Path

from junitparser import Failure, JUnitXml, Skipped

from harness import __version__
from harness.artifacts import RunRecord, write_junit, write_results
from harness.errors import ExitCode
from harness.verdict import judge
from tests.rulesets import device_set, report_of


def record_for(*lines: str, with_snd: bool = False) -> RunRecord:
    report = report_of([f"AERO_VIRTIO_SELFTEST|{text}" for text in lines])
    devices = device_set(*(("--enable-virtio-snd",) if with_snd else ()), "--virtio-transitional")
    rules = devices.rules()
    return RunRecord(judge(report, rules), report, tuple(devices.required_markers()), "tcg", "7.2.22",
                     ["qemu-system-x86_64", "-m", "64"], 12.3456, {"timing": {"detection_latency_ms": 0.5}})


def test_results_json_has_the_contract_keys(tmp_path: Path) -> None:
    run = record_for("START|version=1", "CONFIG|http_url=http://10.0.2.2:18080/x|udp_port=18081",
                     "TEST|virtio-blk|PASS|write_ok=1|write_mbps=20.5", "TEST|virtio-net|PASS|large_ok=1",
                     "TEST|virtio-snd|SKIP|flag_not_set", "RESULT|PASS")
    path = write_results(run, tmp_path)
    assert path.stat().st_mode & 0o777 == 0o644  # readable by CI uploaders, like the other artifacts
    doc = json.loads(path.read_text())
    assert {"verdict", "token", "exit_code", "tests", "accel", "qemu", "duration_s", "version"} <= set(doc)
    assert (doc["verdict"], doc["token"], doc["exit_code"], doc["accel"]) == ("PASS", "PASS", 0, "tcg")
    assert doc["tests"]["virtio-blk"] == {"status": "PASS", "fields": {"write_ok": "1", "write_mbps": "20.5"}}
    assert doc["tests"]["virtio-snd"] == {"status": "SKIP", "fields": {}, "reason": "flag_not_set"}
    assert doc["qemu"] == {"version": "7.2.22", "argv": ["qemu-system-x86_64", "-m", "64"]}
    assert doc["version"] == __version__ and doc["duration_s"] == 12.346
    assert doc["guest"]["config"]["udp_port"] == "18081" and doc["timing"]["detection_latency_ms"] == 0.5


def test_junit_has_one_case_per_marker_plus_overall(tmp_path: Path) -> None:
    run = record_for("TEST|virtio-blk|PASS|write_ok=1", "TEST|virtio-net|FAIL|large_ok=0",
                     "TEST|virtio-input|SKIP|no_device", "RESULT|FAIL", with_snd=True)
    assert run.verdict.exit_code == ExitCode.FAIL
    xml = JUnitXml.fromfile(str(write_junit(run, tmp_path)))
    suite = next(iter(xml))
    cases = {case.name: case for case in suite}
    assert list(cases) == ["virtio-blk", "virtio-net", "virtio-input", "virtio-snd", "overall"]
    assert cases["virtio-blk"].is_passed and "write_ok=1" in (cases["virtio-blk"].system_out or "")
    assert isinstance(cases["virtio-net"].result[0], Failure)
    assert isinstance(cases["virtio-input"].result[0], Skipped)  # not required: a skip, not a failure
    assert cases["virtio-snd"].result[0].type == "MISSING_VIRTIO_SND"
    overall = cases["overall"].result[0]
    assert overall.type == "VIRTIO_NET_FAILED" and overall.message.startswith("FAIL: VIRTIO_NET_FAILED: virtio-net FAIL")
    assert suite.tests == 5 and suite.failures == 3 and suite.skipped == 1


def test_control_bytes_from_the_guest_do_not_break_the_junit_file(tmp_path: Path) -> None:
    run = record_for("TEST|virtio-blk|PASS|note=a\x01b\x1b[0m", "TEST|virtio-net|FAIL|err=\x08x", "RESULT|FAIL")
    xml = JUnitXml.fromfile(str(write_junit(run, tmp_path)))
    cases = {case.name: case for case in next(iter(xml))}
    assert "note=a\\x01b\\x1b[0m" in (cases["virtio-blk"].system_out or "")  # shown, not obeyed
    assert cases["virtio-net"].result[0].message == "virtio-net FAIL: err=\\x08x"


def test_a_failing_test_whose_name_holds_control_characters_is_still_valid_xml(tmp_path: Path) -> None:
    run = record_for("TEST|virtio-blk|PASS", "TEST|virtio-net|PASS", "TEST|evil\x1b]52;c;aGk=\x07\x00name|FAIL|x=a\x0cb",
                     "RESULT|FAIL")
    path = write_junit(run, tmp_path)
    cases = {case.name: case for case in next(iter(JUnitXml.fromfile(str(path))))}
    assert "evil\\x1b]52;c;aGk=\\x07\\x00name" in cases
    failure = cases["evil\\x1b]52;c;aGk=\\x07\\x00name"].result[0]
    assert failure.message == "evil\\x1b]52;c;aGk=\\x07\\x00name FAIL: x=a\\x0cb"
    assert not list(tmp_path.glob(".junit.xml.*"))  # written to a temporary file and renamed into place


def test_a_passing_contract_run_has_no_failing_testcase_for_info_markers_or_an_accepted_skip(tmp_path: Path) -> None:
    """The real guest's INFO-only markers (virtio-pci, virtio-net-offload-csum) and a sound SKIP the
    contract layout accepts pass in junit.xml as they do in the verdict."""
    from tests.transcripts import transcript

    report = report_of(transcript())
    devices = device_set()
    run = RunRecord(judge(report, devices.rules()), report, tuple(devices.required_markers()), "tcg", "7.2.22", [],
                    1.0, skip_allowed=tuple(devices.skip_allowed()))
    assert run.verdict.passed
    suite = next(iter(JUnitXml.fromfile(str(write_junit(run, tmp_path)))))
    failing = [case.name for case in suite if any(isinstance(r, Failure) for r in case.result)]
    assert failing == []
    snd = next(case for case in suite if case.name == "virtio-snd")
    assert isinstance(snd.result[0], Skipped)
    assert "virtio-snd" in json.loads(write_results(run, tmp_path).read_text())["skip_allowed"]
