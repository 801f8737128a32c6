"""Bad input: one line, exit 2 (or 6 for a taken port), nothing booted, nothing changed."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.disk import validate_image
from harness.errors import UsageError
from harness.qemu.binary import probe_qemu, qemu_img_for
from tests.conftest import PASSING, HarnessRun, harness_argv, lines

pytestmark = pytest.mark.usefixtures("qemu", "no_stray_qemu")
Run = Callable[..., HarnessRun]


def as_nobody(action: Callable[[], object]) -> str:
    """Run ``action`` in a forked child as the unprivileged user nobody (root reads and writes
    everything); returns the USAGE line it raised, or what else happened."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no pytest machinery from here on, only os._exit
        os.close(read_end)
        try:
            if os.getuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            action()
            message = "no error"
        except UsageError as err:
            message = err.verdict_line()
        except Exception as err:  # noqa: BLE001 - reported to the parent, which fails the test
            message = f"unexpected {err!r}"
        os.write(write_end, message.encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as stream:
        return stream.read().decode()


def assert_usage(run: HarnessRun, needle: str) -> None:
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stdout.strip().splitlines() == [run.last_line]  # one line on stdout, nothing else
    assert run.last_line.startswith("FAIL: USAGE: ") and needle in run.last_line, run.last_line
    assert "Traceback" not in run.stderr
    assert not (run.out_dir / "serial.log").exists()  # nothing booted


@pytest.mark.bad_input
def test_missing_image(run_harness: Run, tmp_path: Path) -> None:
    assert_usage(run_harness("--disk-image", tmp_path / "nope.qcow2"), "disk image not found")


@pytest.mark.bad_input
def test_directory_as_image(run_harness: Run, tmp_path: Path) -> None:
    assert_usage(run_harness("--disk-image", tmp_path), "is a directory")


@pytest.mark.bad_input
def test_a_file_that_is_no_disk_image(run_harness: Run, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("this is not a disk\n" * 100)
    assert_usage(run_harness("--disk-image", text), "not a bootable disk image")
    empty = tmp_path / "empty.qcow2"
    empty.write_bytes(b"")
    assert_usage(run_harness("--disk-image", empty), empty.name)


@pytest.mark.bad_input
def test_a_qcow2_whose_backing_file_is_missing(run_harness: Run, tmp_path: Path, make_guest) -> None:
    base = make_guest(lines(*PASSING))
    child = tmp_path / "child.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(base), str(child)], check=True)
    base.unlink()
    assert_usage(run_harness("--disk-image", child), "not a usable disk image")


@pytest.mark.bad_input
@pytest.mark.parametrize("blocked", ["file", "folder"])
def test_an_unreadable_image_as_an_unprivileged_user(make_guest, blocked: str) -> None:
    """Root reads everything, so the check runs in a forked child that drops to nobody."""
    folder = Path(tempfile.mkdtemp(prefix="aero-unreadable-"))
    image = folder / "win7.img"
    image.write_bytes(make_guest(lines(*PASSING)).read_bytes())
    (image if blocked == "file" else folder).chmod(0 if blocked == "file" else 0o700)
    if blocked == "file":
        folder.chmod(0o755)
    qemu_img = qemu_img_for(probe_qemu().path)
    message = as_nobody(lambda: validate_image(image, qemu_img))
    shutil.rmtree(folder)
    expected = "is not readable" if blocked == "file" else "cannot be reached"
    assert message.startswith(f"FAIL: USAGE: disk image {expected}: {image}: Permission denied"), message


@pytest.mark.bad_input
def test_missing_or_non_executable_qemu(run_harness: Run, tmp_path: Path, make_guest) -> None:
    image = make_guest(lines(*PASSING))
    assert_usage(run_harness("--disk-image", image, "--qemu-system", "qemu-system-nonexistent"), "not found on PATH")
    assert_usage(run_harness("--disk-image", image, "--qemu-system", tmp_path / "missing" / "qemu"), "QEMU not found")
    fake = tmp_path / "qemu-system-x86_64"
    fake.write_text("not a program")
    fake.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert_usage(run_harness("--disk-image", image, "--qemu-system", fake), "not an executable file")
    fake.write_text("#!/bin/sh\necho hello\n")
    fake.chmod(0o755)
    assert_usage(run_harness("--disk-image", image, "--qemu-system", fake), "does not answer like QEMU")


@pytest.mark.bad_input
def test_sound_needs_a_qemu_with_virtio_sound(run_harness: Run, make_guest) -> None:
    image = make_guest(lines(*PASSING))
    run = run_harness("--disk-image", image, "--enable-virtio-snd", "--dry-run", "--accel", "tcg")
    if probe_qemu().has_device("virtio-sound-pci"):  # QEMU 8.2 or later: the device goes on the command line
        assert run.returncode == 0 and "virtio-sound-pci,audiodev=snd0" in run.last_line
    else:  # Debian 12's QEMU 7.2
        assert_usage(run, "has no virtio-sound-pci device")


@pytest.mark.parametrize(("args", "needle"), [
    (("--timeout-seconds", "0"), "--timeout-seconds must be a finite number greater than 0"),
    (("--timeout-seconds", "-5"), "--timeout-seconds must be a finite number greater than 0"),
    (("--timeout-seconds", "inf"), "--timeout-seconds must be a finite number greater than 0, not inf"),
    (("--timeout-seconds", "nan"), "--timeout-seconds must be a finite number greater than 0, not nan"),
    (("--memory-mb", str(1 << 30)), "is more than this host (or container) has"),
    (("--raw-serial",), "--raw-serial needs --follow-serial"),
    (("--smp", "1000"), "--smp 1000 is more than QEMU's pc machine takes"),
    (("-device", "virtio-rng-pci"), "unrecognized arguments: -device (QEMU arguments go after --"),
    (("--virtio-layout", "legacy"), "argument --virtio-layout: invalid choice: 'legacy'"),
    (("--virtio-msix-vectors", "-1"), "--virtio-msix-vectors must be between 0 and 2048"),
    (("--virtio-blk-vectors", "2049"), "--virtio-blk-vectors must be between 0 and 2048"),
    (("--virtio-transitional", "--with-virtio-tablet"), "--with-virtio-tablet needs virtio-input, which the "
                                                        "transitional layout does not attach"),
    (("--virtio-transitional", "--with-input-events"), "needs virtio-input"),
    (("--virtio-transitional", "--with-input-tablet-events"), "--with-input-tablet-events needs virtio-input, which "
                                                              "the transitional layout does not attach"),
    (("--with-blk-resize", "--blk-resize-delta-mib", "0"), "--blk-resize-delta-mib must be between 1"),
    (("--with-blk-resize", "--blk-resize-delta-mib", str(1 << 30)), "--blk-resize-delta-mib must be between 1"),
    (("--with-net-link-flap", "--net-link-flap-down-seconds", "-2"), "--net-link-flap-down-seconds must be more"),
    (("--require-intx", "--require-msi"), "--require-intx and --require-msi exclude each other"),
    (("--with-blk-resize", "--write-to-image"), "--with-blk-resize and --write-to-image exclude each other"),
    (("--serial-log", "/tmp/with\nnewline.log"), "--serial-log must not contain a newline"),
    (("--", "-daemonize"), "QEMU argument -daemonize is not allowed after --: it detaches QEMU"),
    (("--", "--daemonize"), "QEMU argument --daemonize is not allowed after --"),
    (("--", "-pidfile", "/tmp/other.pid"), "QEMU argument -pidfile is not allowed"),
    (("--", "-serial", "stdio"), "QEMU argument -serial is not allowed after --: COM1 is the harness's"),
    (("--", "-qmp", "tcp:127.0.0.1:4444,server=on,wait=off"), "QEMU argument -qmp is not allowed"),
    (("--", "-monitor", "stdio"), "QEMU argument -monitor is not allowed"),
    (("--", "-chardev", "socket,id=com1,path=/tmp/x"), "uses the id com1, which is the harness's own"),
    (("--serial-log", "/nonexistent-dir/serial.log"), "--serial-log: directory does not exist"),
    (("--enable-virtio-snd", "--virtio-snd-audio-backend", "wav", "--virtio-snd-wav-path", "/nonexistent-dir/a.wav"),
     "--virtio-snd-wav-path: directory does not exist"),
    (("--virtio-snd-audio-backend", "wav"), "needs --enable-virtio-snd"),
    (("--snapshot", "--write-to-image"), "exclude each other"),
    (("--memory-mb", "0"), "--memory-mb"),
    (("--http-port", "70000"), "--http-port must be between"),
    (("--http-path", "no-slash"), "--http-path must start with '/'"),
    (("--accel", "hvf"), "invalid choice"),
    (("--timeout-seconds", "soon"), "invalid float value"),
    (("stray-argument",), "unexpected argument: stray-argument"),
])
@pytest.mark.bad_input
def test_bad_flags(run_harness: Run, make_guest, args: tuple[str, ...], needle: str) -> None:
    own_ports = "--http-port" not in args
    assert_usage(run_harness("--disk-image", make_guest(lines(*PASSING)), *args, ports_=own_ports), needle)


@pytest.mark.bad_input
def test_no_disk_image_flag(run_harness: Run) -> None:
    assert_usage(run_harness(), "--disk-image")


@pytest.mark.bad_input
def test_a_newline_in_the_disk_image_or_out_dir_path(run_harness: Run, tmp_path: Path, make_guest) -> None:
    odd = tmp_path / "win\n7.img"
    odd.write_bytes(make_guest(lines(*PASSING)).read_bytes())
    assert_usage(run_harness("--disk-image", odd), "--disk-image must not contain a newline or NUL")
    run = run_harness("--disk-image", make_guest(lines(*PASSING)), out_dir=tmp_path / "out\nput")
    assert_usage(run, "--out-dir must not contain a newline or NUL")
    assert not (tmp_path / "out\nput").exists()


@pytest.mark.bad_input
def test_an_empty_aero_out_dir_is_refused_not_the_current_folder(tmp_path: Path, make_guest) -> None:
    image = make_guest(lines(*PASSING))
    proc = subprocess.run(harness_argv("--disk-image", image, "--accel", "tcg"), capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env={**os.environ, "AERO_OUT_DIR": ""})
    assert proc.returncode == 2
    assert proc.stdout.splitlines() == ["FAIL: USAGE: AERO_OUT_DIR is set but empty: unset it or give the output folder"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [image.name]  # nothing written into the current folder


@pytest.mark.bad_input
def test_a_truncated_qcow2_is_refused_before_booting(run_harness: Run, tmp_path: Path) -> None:
    image = tmp_path / "win7.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
    subprocess.run(["qemu-io", "-c", "write -P 0x5a 0 8M", str(image)], check=True, capture_output=True)
    with image.open("r+b") as stream:
        stream.truncate(image.stat().st_size // 3)  # an interrupted copy
    started = time.monotonic()
    assert_usage(run_harness("--disk-image", image, "--accel", "tcg"), "disk image is corrupt")
    assert time.monotonic() - started < 10  # not the whole timeout


@pytest.mark.bad_input
def test_out_dir_that_is_a_file(run_harness: Run, make_guest, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    run = run_harness("--disk-image", make_guest(lines(*PASSING)), "--accel", "tcg", out_dir=blocker)
    assert run.returncode == 2 and "--out-dir is not a directory" in run.last_line


@pytest.mark.fault
def test_a_taken_http_port_exits_6_naming_it(run_harness: Run, make_guest, tmp_path: Path) -> None:
    image = make_guest(lines(*PASSING))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = run_harness("--disk-image", image, "--accel", "tcg", "--http-port", str(port), "--network-isolation",
                          "off", ports_=False)
    assert run.returncode == 6
    assert run.last_line == (f"FAIL: INFRA: HTTP port {port} on 127.0.0.1 is already in use "
                             "(another run, or pass a free port)")
    assert not (run.out_dir / "serial.log").exists()


def test_a_port_taken_on_the_host_is_free_in_the_runs_own_network(run_harness: Run, make_guest) -> None:
    image = make_guest(lines(*PASSING))
    with socket.socket() as busy, socket.socket(type=socket.SOCK_DGRAM) as busy_udp:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        busy_udp.bind(("127.0.0.1", 0))
        run = run_harness("--disk-image", image, "--accel", "tcg", "--http-port", str(port), "--udp-port",
                          str(busy_udp.getsockname()[1]), "--network-isolation", "on", ports_=False)
    assert (run.returncode, run.last_line) == (0, "PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS"), run.stdout + run.stderr
    assert run.results()["network_isolation"]["isolated"] is True


@pytest.mark.bad_input
def test_an_out_dir_this_user_cannot_write_is_one_usage_line(make_guest, tmp_path: Path) -> None:
    """As root every folder is writable, so the run happens in a forked child that drops to nobody."""
    from harness.options import RunOptions
    from harness.runner import run

    folder = Path(tempfile.mkdtemp(prefix="aero-outdir-"))
    image = folder / "guest.img"
    image.write_bytes(make_guest(lines(*PASSING)).read_bytes())
    out = folder / "locked"
    out.mkdir(mode=0o555)
    folder.chmod(0o755)
    message = as_nobody(lambda: run(RunOptions(disk_image=image, out_dir=out, accel="tcg")))
    shutil.rmtree(folder)
    assert message.startswith(f"FAIL: USAGE: cannot write to --out-dir {out}: Permission denied"), message


@pytest.mark.bad_input
def test_an_earlier_runs_overlay_as_the_image_is_refused_not_deleted(run_harness: Run, make_guest,
                                                                     tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run_harness("--disk-image", make_guest(lines(*PASSING)), "--accel", "tcg", out_dir=out)
    assert first.returncode == 0
    overlay = out / "disk-overlay.qcow2"
    before = overlay.read_bytes()
    again = run_harness("--disk-image", overlay, "--accel", "tcg", out_dir=out)
    assert again.returncode == 2 and again.stdout.splitlines() == [again.last_line]
    assert "which this run would replace with its own overlay" in again.last_line
    assert overlay.read_bytes() == before


@pytest.mark.bad_input
def test_no_arguments_at_all(tmp_path: Path) -> None:
    proc = subprocess.run(harness_argv(), capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout.splitlines() == ["FAIL: USAGE: no arguments: give --disk-image (run) or a subcommand"]
    assert "usage:" in proc.stderr


@pytest.mark.fault
def test_sigterm_during_validation_is_one_interrupted_line(make_guest, tmp_path: Path) -> None:
    """Before a run's own handlers exist (here: a QEMU whose --version hangs), SIGTERM still ends in
    exit 130 with one line, and the hanging child is not left behind."""
    slow = tmp_path / "qemu-system-x86_64"
    slow.write_text("#!/bin/sh\nexec sleep 300\n")
    slow.chmod(0o755)
    proc = subprocess.Popen(harness_argv("--disk-image", make_guest(lines(*PASSING)), "--qemu-system", slow,
                                         "--out-dir", tmp_path / "o"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    hanging: list[int] = []
    while time.monotonic() < deadline and not hanging:
        hanging = _children(proc.pid, b"sleep")
        time.sleep(0.05)
    assert hanging, "the fake QEMU never started"
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stdout.splitlines() == ["FAIL: INTERRUPTED: stopped by SIGTERM"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and Path(f"/proc/{hanging[0]}").exists():
        time.sleep(0.05)
    assert not Path(f"/proc/{hanging[0]}").exists()


def _children(pid: int, name: bytes) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat_text = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat_text.rsplit(")", 1)[1].split()[1]) == pid and name in cmdline:
                found.append(int(entry.name))
    return found
