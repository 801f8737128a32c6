"""What the user passes or the guest sends cannot destroy data, fake a PASS or hide the cause.

Each test stands for a finding of the audit (issue "Hardening"): it failed before the fix.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.outputs import open_new, write_atomically
from tests.conftest import (
    PASSING,
    HarnessRun,
    free_port,
    harness_argv,
    lines,
    qemu_children_of,
    small_tmpfs,
)

pytestmark = pytest.mark.usefixtures("qemu", "no_stray_qemu")
Run = Callable[..., HarnessRun]
TCG = ("--accel", "tcg", "--timeout-seconds", "30")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def usage(run: HarnessRun, needle: str) -> None:
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stdout.strip().splitlines() == [run.last_line] and run.last_line.startswith("FAIL: USAGE: ")
    assert needle in run.last_line, run.last_line
    assert "Traceback" not in run.stderr
    assert not (run.out_dir / "serial.log").exists()


def start(args: list[str | Path], **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(harness_argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kwargs)  # type: ignore[call-overload]


def wait_for(predicate: Callable[[], object], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def serial_has(out: Path, needle: bytes) -> bool:
    log = out / "serial.log"
    return log.exists() and needle in log.read_bytes()


# --- data loss -------------------------------------------------------------------------------------

@pytest.mark.bad_input
def test_a_serial_log_that_is_the_image_is_refused_and_the_image_kept(make_guest, run_harness: Run) -> None:
    image = make_guest(lines(*PASSING))
    before = sha256(image)
    usage(run_harness("--disk-image", image, *TCG, "--serial-log", image), "--serial-log is the disk image")
    assert sha256(image) == before


@pytest.mark.bad_input
def test_a_wav_path_that_is_the_image_is_refused_before_anything_else(make_guest, run_harness: Run) -> None:
    image = make_guest(lines(*PASSING))
    before = sha256(image)
    usage(run_harness("--disk-image", image, *TCG, "--enable-virtio-snd", "--virtio-snd-audio-backend", "wav",
                      "--virtio-snd-wav-path", image), "--virtio-snd-wav-path is the disk image")
    assert image.exists() and sha256(image) == before


@pytest.mark.bad_input
@pytest.mark.parametrize("flag", ["--serial-log", "--http-log"])
def test_an_output_through_a_new_out_dir_back_onto_the_image_is_refused(make_guest, run_harness: Run, tmp_path: Path,
                                                                        flag: str) -> None:
    """``new/../disk.img`` names the image once the run has made ``new``: it is checked as the path it is."""
    image = make_guest(lines(*PASSING))
    before = sha256(image)
    out = tmp_path / "new"
    run = run_harness("--disk-image", image, *TCG, flag, out / ".." / image.name, out_dir=out)
    usage(run, f"{flag}: directory does not exist")
    assert sha256(image) == before and not out.exists()


@pytest.mark.bad_input
def test_an_output_deeper_in_a_new_out_dir_is_a_usage_error(make_guest, run_harness: Run, tmp_path: Path) -> None:
    out = tmp_path / "new"
    run = run_harness("--disk-image", make_guest(lines(*PASSING)), *TCG, "--serial-log", out / "sub" / "s.log",
                      out_dir=out)
    usage(run, f"--serial-log: directory does not exist: {out / 'sub'}")
    assert not out.exists()


@pytest.mark.bad_input
@pytest.mark.parametrize("flag", ["--out-dir", "--disk-image", "--serial-log", "--http-log"])
def test_an_empty_path_is_refused_not_taken_for_the_current_folder(make_guest, tmp_path: Path, flag: str) -> None:
    image = make_guest(lines(*PASSING))
    args = ["--disk-image", image, *TCG, flag, ""] if flag != "--disk-image" else ["--disk-image", "", *TCG]
    proc = subprocess.run(harness_argv(*args), capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [f"FAIL: USAGE: argument {flag}: an empty path (give a file or folder, "
                                        "or leave the flag out)"]
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["guest.img"]  # nothing written into the cwd


@pytest.mark.bad_input
def test_a_hard_link_of_the_image_is_the_image(make_guest, run_harness: Run, tmp_path: Path) -> None:
    image = make_guest(lines(*PASSING))
    link = tmp_path / "serial-copy.log"
    os.link(image, link)
    usage(run_harness("--disk-image", image, *TCG, "--serial-log", link), "(same inode)")
    assert sha256(image) == sha256(link)


@pytest.mark.bad_input
def test_a_file_of_the_backing_chain_is_protected_too(make_guest, run_harness: Run, tmp_path: Path) -> None:
    base = make_guest(lines(*PASSING))
    child = tmp_path / "child.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(base), str(child)], check=True)
    before = sha256(base)
    usage(run_harness("--disk-image", child, *TCG, "--serial-log", base), "backing chain")
    assert sha256(base) == before


@pytest.mark.bad_input
@pytest.mark.parametrize("device", ["/dev/null", "fifo"])
def test_an_output_that_is_no_regular_file_is_refused(make_guest, run_harness: Run, tmp_path: Path,
                                                       device: str) -> None:
    target = Path(device)
    if device == "fifo":
        target = tmp_path / "pipe"
        os.mkfifo(target)
    usage(run_harness("--disk-image", make_guest(lines(*PASSING)), *TCG, "--serial-log", target),
          "is not a regular file")


@pytest.mark.attack
def test_links_planted_in_a_shared_out_dir_are_never_written_through(make_guest, run_harness: Run,
                                                                     tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "shared"
    out.mkdir()
    for name in ("serial.log", "results.json"):
        planted = out / name
        planted.symlink_to(victim)
        run = run_harness("--disk-image", make_guest(lines(*PASSING)), *TCG, out_dir=out)
        assert run.returncode == 2 and "is a symbolic link" in run.last_line, run.stdout
        planted.unlink()
    assert victim.read_text() == "precious\n"


@pytest.mark.bad_input
def test_the_image_kept_in_the_out_dir_under_a_report_name_is_refused(make_guest, run_harness: Run,
                                                                      tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    image = out / "results.json"
    image.write_bytes(make_guest(lines(*PASSING)).read_bytes())
    before = sha256(image)
    run = run_harness("--disk-image", image, *TCG, out_dir=out)
    assert run.returncode == 2 and "is the disk image" in run.last_line, run.stdout
    assert sha256(image) == before


@pytest.mark.bad_input
def test_two_outputs_that_are_one_file_are_refused(make_guest, run_harness: Run, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    run = run_harness("--disk-image", make_guest(lines(*PASSING)), *TCG, "--serial-log", out / "harness.log",
                      out_dir=out)
    assert run.returncode == 2 and "are the same file" in run.last_line, run.stdout


@pytest.mark.attack
def test_writers_replace_a_planted_link_instead_of_following_it(tmp_path: Path) -> None:
    """The last line of defence, for a link planted after the checks: the link is replaced."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    for name, write in (("a.log", lambda p: open_new(p).write(b"new")),
                        ("b.json", lambda p: write_atomically(p, b"new"))):
        link = tmp_path / name
        link.symlink_to(victim)
        write(link)
        assert not link.is_symlink() and link.read_bytes() in (b"new", b"")
    assert victim.read_bytes() == b"precious"


@pytest.mark.fault
def test_a_second_run_on_the_same_out_dir_is_refused_naming_the_holder(make_guest, tmp_path: Path,
                                                                       ports: tuple[int, int]) -> None:
    image = make_guest(lines("START|version=1"))  # stays up without RESULT
    out = tmp_path / "out"
    first = start(["--disk-image", image, "--accel", "tcg", "--timeout-seconds", "60", "--out-dir", out,
                   "--http-port", str(ports[0]), "--udp-port", str(ports[1])])
    try:
        wait_for(lambda: serial_has(out, b"START"))
        second = subprocess.run(harness_argv("--disk-image", image, "--accel", "tcg", "--out-dir", out,
                                             "--http-port", str(free_port()), "--udp-port", str(free_port())),
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 6, second.stdout + second.stderr
        assert second.stdout.splitlines() == [
            f"FAIL: INFRA: --out-dir {out} is in use by another run (pid {first.pid} on {os.uname().nodename}); "
            "wait for it to finish or pass another --out-dir"]
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
    assert first.returncode == 130
    harness_log = (out / "harness.log").read_bytes()
    assert b"\x00" not in harness_log
    assert all(json.loads(line) for line in harness_log.splitlines())  # one run's log, whole
    assert json.loads((out / "results.json").read_text())["token"] == "INTERRUPTED"


@pytest.mark.fault
def test_a_run_killed_outright_leaves_no_earlier_verdict_behind(make_guest, run_harness: Run, tmp_path: Path,
                                                                ports: tuple[int, int]) -> None:
    out = tmp_path / "out"
    assert run_harness("--disk-image", make_guest(lines(*PASSING)), *TCG, out_dir=out).returncode == 0
    assert json.loads((out / "results.json").read_text())["verdict"] == "PASS"
    hanging = make_guest(lines("START|version=1", "TEST|virtio-blk|INFO|hangs=1"), name="hangs.img")
    proc = start(["--disk-image", hanging, "--accel", "tcg", "--out-dir", out, "--http-port", str(ports[0]),
                  "--udp-port", str(ports[1])])
    wait_for(lambda: serial_has(out, b"hangs=1"))
    (qemu_pid,) = qemu_children_of(proc.pid)
    proc.kill()
    proc.communicate(timeout=30)
    assert not (out / "results.json").exists() and not (out / "junit.xml").exists()
    wait_for(lambda: not Path(f"/proc/{qemu_pid}").exists(), timeout=10)  # it dies with the harness


@pytest.mark.bad_input
def test_a_run_refused_for_bad_input_leaves_no_earlier_verdict_behind(make_guest, run_harness: Run,
                                                                     tmp_path: Path) -> None:
    out = tmp_path / "out"
    image = make_guest(lines(*PASSING))
    assert run_harness("--disk-image", image, *TCG, out_dir=out).returncode == 0
    assert json.loads((out / "results.json").read_text())["verdict"] == "PASS"
    run = run_harness("--disk-image", tmp_path / "missing.img", *TCG, out_dir=out)
    assert run.returncode == 2 and run.last_line == f"FAIL: USAGE: disk image not found: {tmp_path / 'missing.img'}"
    assert not any((out / name).exists() for name in ("results.json", "junit.xml", "report.html"))
    assert (out / "serial.log").exists()  # the logs stay until a run replaces them


@pytest.mark.bad_input
@pytest.mark.parametrize("bad", [("--require-intx", "--require-msi"), ("-device", "virtio-rng-pci"),
                                 ("--timeout-seconds", "soon"), ("--no-such-flag",)])
def test_a_refusal_of_any_kind_leaves_no_earlier_verdict_behind(make_guest, run_harness: Run, tmp_path: Path,
                                                                 bad: tuple[str, ...]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{\n  "verdict": "PASS"\n}\n')
    run = run_harness("--disk-image", make_guest(lines(*PASSING)), *bad, out_dir=out)
    assert run.returncode == 2 and run.last_line.startswith("FAIL: USAGE: "), run.stdout
    assert not (out / "results.json").exists()


@pytest.mark.bad_input
def test_a_run_refused_for_bad_input_leaves_a_running_runs_reports_alone(make_guest, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"verdict": "PASS"}')
    with open(out / ".aero-win7-harness.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = subprocess.run(harness_argv("--disk-image", tmp_path / "missing.img", "--out-dir", out),
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert (out / "results.json").read_text() == '{"verdict": "PASS"}'


@pytest.mark.fault
def test_an_earlier_capture_never_stands_in_for_this_runs(tmp_path: Path) -> None:
    from harness.outputs import clear_stale
    from harness.runner import _settle

    final, partial = tmp_path / "virtio-snd.wav", tmp_path / ".virtio-snd.wav.x.partial"
    final.write_bytes(b"RIFF old sound")
    partial.write_bytes(b"")  # QEMU captured nothing this time
    _settle(partial, final)
    assert not final.exists() and not partial.exists()
    final.write_bytes(b"RIFF old sound")
    assert clear_stale(tmp_path, [final]) == ["virtio-snd.wav"] and not final.exists()


# --- signals and leftovers --------------------------------------------------------------------------

@pytest.mark.fault
def test_a_signal_while_qemu_cannot_answer_the_screenshot_ends_the_run_within_a_second(
        make_guest, tmp_path: Path, ports: tuple[int, int]) -> None:
    """QEMU frozen (SIGSTOP) at the timeout: the screenshot hangs; SIGTERM must still end the run at once."""
    image = make_guest(lines("START|version=1"))
    out = tmp_path / "out"
    proc = start(["--disk-image", image, "--accel", "tcg", "--timeout-seconds", "3", "--out-dir", out,
                  "--http-port", str(ports[0]), "--udp-port", str(ports[1])])
    try:
        wait_for(lambda: serial_has(out, b"START"))
        seen = time.monotonic()
        (qemu_pid,) = qemu_children_of(proc.pid)
        os.kill(qemu_pid, signal.SIGSTOP)
        time.sleep(max(0.0, seen + 4.5 - time.monotonic()))  # past the timeout: the screendump now hangs
        assert proc.poll() is None
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert time.monotonic() - sent < 1.5
    assert proc.returncode == 130 and stdout.splitlines()[-1].startswith("FAIL: INTERRUPTED: stopped by SIGTERM")
    wait_for(lambda: not Path(f"/proc/{qemu_pid}").exists(), timeout=5)


@pytest.mark.fault
def test_a_second_ctrl_c_kills_qemu_at_once(make_guest, tmp_path: Path, ports: tuple[int, int]) -> None:
    image = make_guest(lines("START|version=1"))
    out = tmp_path / "out"
    proc = start(["--disk-image", image, "--accel", "tcg", "--timeout-seconds", "60", "--out-dir", out,
                  "--http-port", str(ports[0]), "--udp-port", str(ports[1])])
    wait_for(lambda: serial_has(out, b"START"))
    (qemu_pid,) = qemu_children_of(proc.pid)
    os.kill(qemu_pid, signal.SIGSTOP)  # it cannot quit through QMP: only a kill ends it
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    wait_for(lambda: not Path(f"/proc/{qemu_pid}").exists() or
             Path(f"/proc/{qemu_pid}/stat").read_text().split()[2] == "Z", timeout=5)
    assert time.monotonic() - sent < 0.5
    proc.communicate(timeout=30)
    assert proc.returncode == 130


@pytest.mark.fault
def test_runtime_folders_of_killed_runs_are_swept(make_guest, run_harness: Run, tmp_path: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="t", dir="/tmp"))  # short: Unix socket paths are limited to 108 bytes
    stale = tmp / "aero-win7-harness-999999-abcd1234"  # pid 999999: above pid_max here, so surely gone
    (stale / "com1.sock").mkdir(parents=True)
    mine_alive = tmp / f"aero-win7-harness-{os.getpid()}-keepme"
    mine_alive.mkdir()
    proc = subprocess.run(harness_argv("--disk-image", make_guest(lines(*PASSING)), *TCG, "--out-dir",
                                       tmp_path / "out", "--http-port", str(free_port()), "--udp-port",
                                       str(free_port())),
                          capture_output=True, text=True, timeout=60, env={**os.environ, "TMPDIR": str(tmp)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not stale.exists() and mine_alive.exists()
    assert [p.name for p in tmp.iterdir()] == [mine_alive.name]  # and the run's own folder is gone too
    shutil.rmtree(tmp)


def test_a_long_tmpdir_does_not_break_the_unix_sockets(make_guest, tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    proc = subprocess.run(harness_argv("--disk-image", make_guest(lines(*PASSING)), *TCG, "--out-dir",
                                       tmp_path / "out", "--http-port", str(free_port()), "--udp-port",
                                       str(free_port())),
                          capture_output=True, text=True, timeout=60, env={**os.environ, "TMPDIR": str(deep)})
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- hostile guest output ----------------------------------------------------------------------------

HOSTILE = b"\x1b[2J\x1b]0;pwned\x07\x1b]52;c;ZXZpbA==\x07 clear, title and clipboard\r\n"


@pytest.mark.attack
def test_follow_serial_shows_escape_sequences_instead_of_obeying_them(make_guest, run_harness: Run) -> None:
    image = make_guest(HOSTILE + lines(*PASSING))
    run = run_harness("--disk-image", image, *TCG, "--follow-serial")
    assert run.returncode == 0
    assert "\x1b" not in run.stdout and "\x07" not in run.stdout and "\r" not in run.stdout
    assert run.stdout.splitlines()[0] == "\\x1b[2J\\x1b]0;pwned\\x07\\x1b]52;c;ZXZpbA==\\x07 clear, title and clipboard"
    assert run.last_line == "PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS"
    raw = run_harness("--disk-image", image, *TCG, "--follow-serial", "--raw-serial",
                      out_dir=run.out_dir.parent / "raw")
    assert raw.stdout.startswith(HOSTILE.decode().replace("\r\n", "\n"))  # only when asked for


@pytest.mark.attack
def test_a_failing_verdict_shows_guest_control_bytes(make_guest, run_harness: Run) -> None:
    image = make_guest(lines(*PASSING[:1], "TEST|virtio-blk|FAIL|reason=\x1b]0;x\x07oops", *PASSING[2:-1],
                             "RESULT|FAIL"))
    run = run_harness("--disk-image", image, *TCG)
    assert run.returncode == 1 and "\x1b" not in run.stdout + run.stderr
    assert "\\x1b]0;x\\x07oops" in run.last_line


@pytest.mark.attack
def test_a_free_text_pass_before_the_real_fail_fails_the_run(make_guest, run_harness: Run) -> None:
    image = make_guest(b"log: previous boot ended with AERO_VIRTIO_SELFTEST|RESULT|PASS\r\n" +
                       lines(*PASSING[:-1], "RESULT|FAIL"))
    run = run_harness("--disk-image", image, *TCG)
    assert run.returncode == 1 and run.last_line.startswith("FAIL: SELFTEST_FAILED"), run.stdout


# --- the serial log on a full file system -------------------------------------------------------------

@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 16 KiB tmpfs."""
    with small_tmpfs(tmp_path / "tiny", "16k") as mount:
        yield mount


@pytest.mark.fault
def test_harness_log_lines_left_on_a_full_disk_cost_nothing_at_the_end(tiny_fs: Path) -> None:
    """logging guards a handler's writes, not its flush and close: the run's last lines, buffered when
    the out-dir filled up, must not turn a decided run into an internal error."""
    from harness.logsetup import add_file_log, remove_handler

    handler = add_file_log(tiny_fs / "harness.log")
    with contextlib.suppress(OSError), open(tiny_fs / "filler", "wb") as filler:
        filler.write(b"x" * 64 * 1024)
    assert handler.stream is not None
    handler.stream.write("still buffered\n" * 400)  # what the full disk will refuse at close
    remove_handler(handler)
    assert handler.errors_seen == 1 and "No space left on device" in (handler.first_error or "")


@pytest.mark.fault
def test_a_serial_log_on_a_full_disk_keeps_the_real_verdict(make_guest, run_harness: Run, tiny_fs: Path) -> None:
    noise = b"".join(b"boot noise line %05d ........................................\r\n" % i for i in range(400))
    image = make_guest(noise + lines(*PASSING))
    run = run_harness("--disk-image", image, *TCG, "--serial-log", tiny_fs / "serial.log")
    assert (run.returncode, run.last_line) == (0, "PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS"), run.stdout + run.stderr
    assert run.stderr.count("can no longer be written") == 1 and "Traceback" not in run.stderr
    assert "No space left on device" in str(run.results()["serial_log_error"])


@pytest.mark.fault
def test_a_run_told_to_follow_its_stdin_ends_when_the_launcher_goes_away(make_guest, tmp_path: Path,
                                                                        ports: tuple[int, int]) -> None:
    image = make_guest(lines("START|version=1"))
    out = tmp_path / "out"
    proc = subprocess.Popen(harness_argv("--disk-image", image, "--accel", "tcg", "--out-dir", out, "--http-port",
                                         str(ports[0]), "--udp-port", str(ports[1]), "--stop-on-stdin-eof"),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: serial_has(out, b"START"))
    (qemu_pid,) = qemu_children_of(proc.pid)
    assert proc.stdin is not None
    closed = time.monotonic()
    proc.stdin.close()
    stdout = proc.stdout.read() if proc.stdout else ""
    proc.wait(timeout=30)
    assert time.monotonic() - closed < 2
    assert proc.returncode == 130
    assert stdout.splitlines()[-1] == ("FAIL: INTERRUPTED: stopped because standard input closed (the launcher went "
                                       "away); QEMU was shut down")
    wait_for(lambda: not Path(f"/proc/{qemu_pid}").exists(), timeout=5)
