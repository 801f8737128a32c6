"""The verdict table of the protocol page, case by case."""

from __future__ import annotations

import pytest

from harness.errors import ExitCode
from harness.protocol import parse_line
from harness.verdict import GuestReport, judge, qemu_exited_verdict, required_tests, timeout_verdict

BASE = required_tests(with_snd=False)
SND = required_tests(with_snd=True)


def report_of(*records: str) -> GuestReport:
    report = GuestReport()
    for text in records:
        record = parse_line(f"AERO_VIRTIO_SELFTEST|{text}".encode())
        assert record is not None
        report.add(record)
    return report


BLK, NET, SNDP = "TEST|virtio-blk|PASS|write_ok=1", "TEST|virtio-net|PASS|large_ok=1", "TEST|virtio-snd|PASS"


@pytest.mark.parametrize(("records", "required", "token", "code", "detail_has"), [
    ((BLK, NET, "RESULT|PASS"), BASE, "PASS", ExitCode.PASS, "RESULT|PASS"),
    ((BLK, NET, SNDP, "RESULT|PASS"), SND, "PASS", ExitCode.PASS, "RESULT|PASS"),
    ((BLK, NET, "TEST|virtio-input|FAIL", "RESULT|FAIL"), BASE, "SELFTEST_FAILED", ExitCode.FAIL, "virtio-input"),
    ((BLK, NET, "RESULT|FAIL"), BASE, "SELFTEST_FAILED", ExitCode.FAIL, "RESULT|FAIL"),
    ((BLK, "TEST|virtio-net|FAIL|large_ok=0", "RESULT|FAIL"), BASE, "TEST_FAILED", ExitCode.FAIL, "virtio-net FAIL"),
    ((BLK, "TEST|virtio-net|FAIL|large_ok=0", "RESULT|PASS"), BASE, "TEST_FAILED", ExitCode.FAIL, "large_ok=0"),
    ((BLK, NET, "TEST|virtio-snd|SKIP|flag_not_set", "RESULT|PASS"), SND, "TEST_SKIPPED", ExitCode.FAIL,
     "flag_not_set"),
    ((BLK, NET, "TEST|virtio-snd|SKIP|flag_not_set", "RESULT|PASS"), BASE, "PASS", ExitCode.PASS, ""),
    ((BLK, "RESULT|PASS"), BASE, "MISSING_TEST_MARKER", ExitCode.FAIL, "virtio-net"),
    ((BLK, NET, "RESULT|PASS"), SND, "MISSING_TEST_MARKER", ExitCode.FAIL, "virtio-snd"),
    ((BLK, NET, "TEST|virtio-snd|READY", "RESULT|PASS"), SND, "MISSING_TEST_MARKER", ExitCode.FAIL, "virtio-snd"),
    ((BLK, NET, "TEST|virtio-snd|READY", SNDP, "RESULT|PASS"), SND, "PASS", ExitCode.PASS, ""),
    ((BLK, NET, "TEST|virtio-input|PASS|keys=2", "RESULT|PASS"), BASE, "PASS", ExitCode.PASS, ""),
    (("TEST|virtio-blk|FAIL", "TEST|virtio-net|SKIP", "RESULT|FAIL"), BASE, "TEST_FAILED", ExitCode.FAIL,
     "virtio-blk FAIL"),
])
def test_verdict_table(records: tuple[str, ...], required: tuple[str, ...], token: str, code: ExitCode,
                       detail_has: str) -> None:
    verdict = judge(report_of(*records), required)
    assert (verdict.token, verdict.exit_code) == (token, code)
    assert detail_has in verdict.detail
    line = verdict.line()
    assert "\n" not in line
    assert line == "PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS" if token == "PASS" else line.startswith(f"FAIL: {token}: ")


def test_only_the_first_result_counts() -> None:
    report = report_of(BLK, NET, "RESULT|PASS", "RESULT|FAIL")
    assert report.result == "PASS"


def test_a_later_final_status_replaces_an_earlier_one_and_notes_are_kept() -> None:
    report = report_of("TEST|virtio-snd|READY", "TEST|virtio-snd|INFO|x=1", "TEST|virtio-snd|PASS|frames=9")
    outcome = report.tests["virtio-snd"]
    assert outcome.status.value == "PASS" and outcome.fields == {"frames": "9"}
    assert len(outcome.notes) == 2


def test_timeout_and_qemu_exit_verdicts() -> None:
    progress = report_of("START|version=1", BLK)
    timeout = timeout_verdict(progress, 30)
    assert (timeout.token, timeout.exit_code) == ("TIMEOUT", ExitCode.TIMEOUT)
    assert "30 s" in timeout.detail and "virtio-blk=PASS" in timeout.detail
    assert "no selftest output" in timeout_verdict(GuestReport(), 5).detail
    exited = qemu_exited_verdict(progress, 1, "qemu: could not load PC BIOS")
    assert (exited.token, exited.exit_code) == ("QEMU_EXITED", ExitCode.QEMU_EXITED)
    assert "exit code 1" in exited.detail and "PC BIOS" in exited.detail


def test_the_verdict_line_is_one_line_whatever_the_guest_sent() -> None:
    verdict = judge(report_of("TEST|virtio-blk|FAIL|err=a\rb\x0bc\x85d", NET, "RESULT|FAIL"), BASE)
    assert verdict.line() == "FAIL: TEST_FAILED: virtio-blk FAIL (err=a b c d)"
