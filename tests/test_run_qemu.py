"""``aero-win7-harness run`` against real QEMU and tiny boot-sector guests that write to COM1."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.qemu.bootsector import Ending
from tests.conftest import PASSING, HarnessRun, harness_argv, lines, qemu_children_of

pytestmark = [pytest.mark.qemu, pytest.mark.usefixtures("qemu", "no_stray_qemu")]
Run = Callable[..., HarnessRun]
TCG = ("--accel", "tcg", "--timeout-seconds", "30")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_pass_with_all_artifacts_and_the_image_untouched(make_guest, run_harness: Run) -> None:
    message = b"SeaBIOS noise\r\n\xff\xfe binary junk\r\n" + lines(*PASSING)
    image = make_guest(message)
    before = sha256(image)
    run = run_harness("--disk-image", image, *TCG)
    assert run.returncode == 0, run.stderr
    assert run.last_line == "PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS"
    out = run.out_dir
    assert (out / "serial.log").read_bytes() == message  # byte for byte
    doc = run.results()
    assert (doc["verdict"], doc["token"], doc["exit_code"], doc["accel"]) == ("PASS", "PASS", 0, "tcg")
    assert doc["tests"]["virtio-blk"]["fields"]["write_bytes"] == "4194304"  # type: ignore[index]
    assert doc["qemu"]["argv"][0].endswith("qemu-system-x86_64")  # type: ignore[index]
    assert doc["timing"]["detection_latency_ms"] >= 0  # type: ignore[index]
    assert "<testcase" in (out / "junit.xml").read_text()
    log_lines = [json.loads(line) for line in (out / "harness.log").read_text().splitlines()]
    assert any(entry["message"] == "guest: AERO_VIRTIO_SELFTEST|RESULT|PASS" for entry in log_lines)
    assert (out / "qemu.stderr.log").exists() and (out / "http.log").exists()
    assert not (out / "screenshot.png").exists()
    overlay = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(out / "disk-overlay.qcow2")],
                                        capture_output=True, text=True, check=True).stdout)
    assert overlay["backing-filename"] == str(image) and overlay["backing-filename-format"] == "raw"
    assert sha256(image) == before


def test_guest_test_failure_exits_1_with_a_screenshot(make_guest, run_harness: Run) -> None:
    failing = [r if not r.startswith("TEST|virtio-net|") else "TEST|virtio-net|FAIL|large_ok=0|err=5" for r in PASSING]
    image = make_guest(lines(*failing[:-1], "RESULT|FAIL"))
    run = run_harness("--disk-image", image, *TCG)
    assert run.returncode == 1
    assert run.last_line == "FAIL: VIRTIO_NET_FAILED: virtio-net FAIL (large_ok=0, err=5)"  # err: always shown
    shot = run.out_dir / "screenshot.png"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run.results()["screenshot"] == str(shot)


@pytest.mark.parametrize(("records", "token"), [
    ((*PASSING[:-1], "TEST|virtio-input-led|FAIL", "RESULT|FAIL"), "SELFTEST_FAILED"),
    (("TEST|virtio-blk|PASS", "RESULT|PASS"), "MISSING_VIRTIO_INPUT_BIND"),  # the guest's order: blk, input...
    ((*PASSING[:-2], "TEST|virtio-net|SKIP|flag_not_set", "RESULT|PASS"), "VIRTIO_NET_SKIPPED"),
])
def test_other_guest_failures(make_guest, run_harness: Run, records: tuple[str, ...], token: str) -> None:
    run = run_harness("--disk-image", make_guest(lines(*records)), *TCG)
    assert (run.returncode, run.last_line.split(":")[:2]) == (1, ["FAIL", f" {token}"]), run.last_line


def test_timeout_exits_5_with_progress_and_a_screenshot(make_guest, run_harness: Run) -> None:
    image = make_guest(lines("START|version=1", "TEST|virtio-blk|PASS"))  # then the guest hangs
    started = time.monotonic()
    run = run_harness("--disk-image", image, "--accel", "tcg", "--timeout-seconds", "2")
    assert run.returncode == 5
    assert run.last_line == "FAIL: TIMEOUT: no RESULT line within 2 s (last seen: virtio-blk=PASS)"
    assert time.monotonic() - started < 20
    assert (run.out_dir / "screenshot.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.fault
@pytest.mark.parametrize("ending", [Ending.RESET, Ending.POWEROFF])
def test_qemu_ending_before_result_exits_3_at_once(make_guest, run_harness: Run, ending: Ending) -> None:
    image = make_guest(lines("START|version=1"), ending)
    started = time.monotonic()
    run = run_harness("--disk-image", image, "--accel", "tcg", "--timeout-seconds", "300")
    assert run.returncode == 3, run.stdout + run.stderr
    assert run.last_line.startswith("FAIL: QEMU_EXITED: QEMU ended (exit code 0) before a RESULT line")
    assert time.monotonic() - started < 30  # -no-reboot: no waiting for the timeout


def test_result_written_just_before_power_off_still_counts(make_guest, run_harness: Run) -> None:
    run = run_harness("--disk-image", make_guest(lines(*PASSING), Ending.POWEROFF), *TCG)
    assert (run.returncode, run.last_line) == (0, "PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS")


@pytest.mark.fault
def test_qemu_refusing_its_arguments_is_reported_from_its_stderr(make_guest, run_harness: Run) -> None:
    run = run_harness("--disk-image", make_guest(lines(*PASSING)), *TCG, "--", "-device", "no-such-device")
    assert run.returncode == 3
    assert "no-such-device" in run.last_line and run.last_line.startswith("FAIL: QEMU_EXITED:")
    assert "no-such-device" in (run.out_dir / "qemu.stderr.log").read_text()


def test_extra_qemu_arguments_reach_qemu(make_guest, run_harness: Run) -> None:
    run = run_harness("--disk-image", make_guest(lines(*PASSING)), *TCG, "--", "-device", "virtio-rng-pci")
    assert run.returncode == 0, run.stdout
    assert run.results()["qemu"]["argv"][-2:] == ["-device", "virtio-rng-pci"]  # type: ignore[index]


def test_follow_serial_streams_com1_then_the_verdict_last(make_guest, run_harness: Run) -> None:
    run = run_harness("--disk-image", make_guest(b"boot text without newline" + b"\n" + lines(*PASSING)),
                      *TCG, "--follow-serial")
    assert run.returncode == 0
    out = run.stdout.splitlines()
    assert out[0] == "boot text without newline"
    assert "AERO_VIRTIO_SELFTEST|TEST|virtio-net|PASS|large_ok=1|upload_ok=1" in out
    assert out[-1] == "PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS"


def _fd_flags_of(pid: int, target: Path) -> list[int]:
    flags = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd) == str(target):
                info = Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text()
                flags.append(int(info.split("flags:")[1].split()[0], 8))
        except OSError:
            continue
    return flags


@pytest.mark.parametrize("mode", [(), ("--snapshot",)])
def test_qemu_opens_the_users_image_read_only(make_guest, tmp_path: Path, ports: tuple[int, int],
                                             mode: tuple[str, ...]) -> None:
    image = make_guest(lines("START|version=1"))  # stays up without RESULT, so it can be inspected
    image.chmod(0o444)
    before = sha256(image)
    out = tmp_path / "out"
    proc = subprocess.Popen(harness_argv("--disk-image", image, "--accel", "tcg", "--timeout-seconds", "60",
                                         "--out-dir", out, "--http-port", str(ports[0]), "--udp-port",
                                         str(ports[1]), *mode),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        flags: list[int] = []
        while time.monotonic() < deadline and not flags:
            for qemu_pid in qemu_children_of(proc.pid):
                flags = _fd_flags_of(qemu_pid, image)
            time.sleep(0.1)
        assert flags, "QEMU never opened the image"
        assert all(flag & os.O_ACCMODE == os.O_RDONLY for flag in flags)
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130 and stdout.splitlines()[-1].startswith("FAIL: INTERRUPTED: stopped by SIGTERM")
    assert sha256(image) == before
    assert (out / "disk-overlay.qcow2").exists() == (mode == ())


@pytest.mark.fault
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_shuts_qemu_down_and_exits_130(make_guest, tmp_path: Path, ports: tuple[int, int],
                                               sig: signal.Signals) -> None:
    image = make_guest(lines("START|version=1"))
    out = tmp_path / "out"
    proc = subprocess.Popen(harness_argv("--disk-image", image, "--accel", "tcg", "--timeout-seconds", "60",
                                         "--out-dir", out, "--http-port", str(ports[0]), "--udp-port",
                                         str(ports[1])),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and b"START" not in (out / "serial.log").read_bytes() \
            if (out / "serial.log").exists() else time.monotonic() < deadline:
        time.sleep(0.05)
    qemu_pids = qemu_children_of(proc.pid)
    assert len(qemu_pids) == 1
    proc.send_signal(sig)
    stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert stdout.splitlines()[-1] == f"FAIL: INTERRUPTED: stopped by {sig.name}; QEMU was shut down"
    assert not Path(f"/proc/{qemu_pids[0]}").exists()
    assert json.loads((out / "results.json").read_text())["exit_code"] == 130


@pytest.mark.fault
def test_a_harness_killed_outright_takes_qemu_with_it(make_guest, tmp_path: Path, ports: tuple[int, int]) -> None:
    image = make_guest(lines("START|version=1"))
    proc = subprocess.Popen(harness_argv("--disk-image", image, "--accel", "tcg", "--out-dir", tmp_path / "o",
                                         "--http-port", str(ports[0]), "--udp-port", str(ports[1])),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    qemu_pids: list[int] = []
    while time.monotonic() < deadline and not qemu_pids:
        qemu_pids = qemu_children_of(proc.pid)
        time.sleep(0.05)
    assert qemu_pids
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{qemu_pids[0]}").exists():
        time.sleep(0.05)
    assert not Path(f"/proc/{qemu_pids[0]}").exists()


def test_log_format_json_makes_every_console_line_json(make_guest, run_harness: Run) -> None:
    run = run_harness("--disk-image", make_guest(lines(*PASSING)), *TCG, "--log-format", "json")
    assert run.returncode == 0
    entries = [json.loads(line) for line in run.stderr.splitlines()]
    assert entries and all({"time", "level", "name", "message"} <= set(entry) for entry in entries)
    assert any(entry["message"] == "guest: AERO_VIRTIO_SELFTEST|RESULT|PASS" for entry in entries)
    assert run.stdout.splitlines() == ["PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS"]  # stdout stays the verdict


@pytest.mark.fault
def test_a_signal_before_qemu_starts_still_ends_cleanly(make_guest, tmp_path: Path, ports: tuple[int, int]) -> None:
    """SIGTERM while the KVM probe runs (uncached: seconds on a nested host) is honoured once it returns."""
    image = make_guest(lines("START|version=1"))
    out = tmp_path / "out"
    proc = subprocess.Popen(harness_argv("--disk-image", image, "--accel", "auto", "--out-dir", out,
                                         "--http-port", str(ports[0]), "--udp-port", str(ports[1])),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "AERO_KVM_PROBE_CACHE": "0"})
    assert proc.stderr is not None
    for line in proc.stderr:  # the probe starts right after this line, and takes seconds uncached
        if "choosing the accelerator" in line:
            break
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert stdout.splitlines()[-1].startswith("FAIL: INTERRUPTED: stopped by SIGTERM")
    assert json.loads((out / "results.json").read_text())["token"] == "INTERRUPTED"


@pytest.mark.attack
def test_control_bytes_from_the_guest_leave_a_pass_a_pass(make_guest, run_harness: Run) -> None:
    records = [r.replace("TEST|virtio-blk|PASS", "TEST|virtio-blk|PASS|note=\x01\x1b[31mred\x1b[0m")
               .replace("upload_ok=1", "upload_ok=1\x07") for r in PASSING[:-1]]
    message = lines(*records, "RESULT|PASS\x1b")
    run = run_harness("--disk-image", make_guest(message), *TCG)
    assert (run.returncode, run.stdout.splitlines()) == (0, ["PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS"])
    assert "\\x1b[31mred" in (run.out_dir / "junit.xml").read_text()
    assert "\x1b" not in run.stderr and "\x07" not in run.stderr  # the guest's bytes are shown, never obeyed
    assert "guest: AERO_VIRTIO_SELFTEST|TEST|virtio-blk|PASS|note=\\x01\\x1b[31mred\\x1b[0m" in run.stderr


def test_a_long_message_arrives_over_com1_byte_for_byte(make_guest, run_harness: Run) -> None:
    """The boot-sector guest waits for the UART like a real driver, so tests can replay long output."""
    noise = b"".join(b"virtio-blk: free text line %04d with some words to make it long enough\r\n" % i
                     for i in range(300))
    message = noise + lines(*PASSING)
    assert len(message) > 20_000
    run = run_harness("--disk-image", make_guest(message), *TCG)
    assert run.returncode == 0, run.stdout
    assert (run.out_dir / "serial.log").read_bytes() == message
