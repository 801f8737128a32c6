"""End to end: the harness against the Linux reference guest and the real virtio devices.

Failures here are caused for real on the host side (a port the guest was not built for, a sound
device the guest requires but the run does not attach), never faked by the guest.
"""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import HarnessRun, free_port, harness_argv, qemu_children_of
from tests.refguest import HTTP_PATH, PATTERN, PATTERN_FNV1A64, Built

pytestmark = [pytest.mark.qemu, pytest.mark.slow, pytest.mark.usefixtures("qemu", "no_stray_qemu")]
Run = Callable[..., HarnessRun]
TCG = ("--accel", "tcg", "--timeout-seconds", "180")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ports_args(ports: tuple[int, int]) -> tuple[str, ...]:
    return "--http-port", str(ports[0]), "--udp-port", str(ports[1])


def test_selfcheck_passes_with_real_devices(guest: Built, guest_ports: tuple[int, int], run_harness: Run) -> None:
    before = sha256(guest.image)
    run = run_harness("selfcheck", "--disk-image", guest.image, *TCG, *ports_args(guest_ports), ports_=False)
    assert (run.returncode, run.last_line) == (0, "PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS"), run.stderr[-3000:]
    doc = run.results()
    tests = doc["tests"]
    assert isinstance(tests, dict)
    blk = tests["virtio-blk"]["fields"]
    assert blk["write_ok"] == blk["flush_ok"] == blk["read_ok"] == blk["verify_ok"] == "1"
    assert int(blk["write_bytes"]) == int(blk["read_bytes"]) >= 4 << 20 and float(blk["write_mbps"]) > 0
    net = tests["virtio-net"]["fields"]
    assert (net["dhcp_ok"], net["ip"], net["large_ok"], net["large_bytes"]) == ("1", "10.0.2.15", "1", "1048576")
    assert net["large_fnv1a64"] == PATTERN_FNV1A64 and net["large_sha256"] == hashlib.sha256(PATTERN).hexdigest()
    assert (net["upload_ok"], net["upload_bytes"], net["upload_status"]) == ("1", "1048576", "200")
    udp = tests["virtio-net-udp"]
    assert udp["status"] == "PASS" and udp["fields"]["port"] == str(guest_ports[1])
    assert tests["virtio-snd"]["status"] == "SKIP"  # no sound device attached, none required
    assert doc["guest"]["config"]["http_url"] == f"http://10.0.2.2:{guest_ports[0]}{HTTP_PATH}"  # type: ignore[index]
    # The harness's services saw the guest's real traffic through QEMU's user network.
    http_log = (run.out_dir / "http.log").read_text()
    for needle in (f"GET {HTTP_PATH} 200", f"GET {HTTP_PATH}-large 200 in=0 out=1048576",
                   f"POST {HTTP_PATH}-large 200 in=1048576 out=3", "bytes echoed"):
        assert needle in http_log, http_log
    serial = (run.out_dir / "serial.log").read_bytes()
    assert b"AERO_VIRTIO_SELFTEST|RESULT|PASS\r\n" in serial
    assert sha256(guest.image) == before  # selfcheck always runs with snapshot=on


def test_a_run_with_the_default_overlay_keeps_the_guests_writes_out_of_the_image(
        guest: Built, guest_ports: tuple[int, int], run_harness: Run) -> None:
    before = sha256(guest.image)
    run = run_harness("--disk-image", guest.image, *TCG, *ports_args(guest_ports), ports_=False)
    assert run.returncode == 0, run.stdout
    overlay = run.out_dir / "disk-overlay.qcow2"
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(overlay)],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["backing-filename"] == str(guest.image)
    assert overlay.stat().st_size > 256 * 1024  # the guest's FAT writes landed in the overlay
    assert sha256(guest.image) == before


def test_serving_another_port_than_the_guest_was_built_for_fails_virtio_net(
        guest: Built, run_harness: Run) -> None:
    wrong = (free_port(), free_port(socket.SOCK_DGRAM))
    run = run_harness("selfcheck", "--disk-image", guest.image, *TCG, *ports_args(wrong), ports_=False)
    assert run.returncode == 1
    assert run.last_line.startswith("FAIL: TEST_FAILED: virtio-net FAIL"), run.last_line
    tests = run.results()["tests"]
    assert isinstance(tests, dict) and tests["virtio-blk"]["status"] == "PASS"
    assert (run.out_dir / "screenshot.png").read_bytes()[:4] == b"\x89PNG"


def test_sound_required_at_build_time_without_the_device_fails(guest_require_snd: Built,
                                                                guest_ports: tuple[int, int], run_harness: Run) -> None:
    run = run_harness("selfcheck", "--disk-image", guest_require_snd.image, *TCG, *ports_args(guest_ports),
                      ports_=False)
    assert run.returncode == 1
    assert run.last_line.startswith("FAIL: SELFTEST_FAILED: guest reported AERO_VIRTIO_SELFTEST|RESULT|FAIL"), \
        run.last_line
    assert "virtio-snd FAIL" in run.last_line
    tests = run.results()["tests"]
    assert isinstance(tests, dict)
    assert tests["virtio-snd"]["fields"]["reason"] == "device_missing"
    assert tests["virtio-net"]["status"] == "PASS"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_run_killed_mid_way_leaves_no_qemu(guest: Built, guest_ports: tuple[int, int], tmp_path: Path,
                                             sig: signal.Signals) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(harness_argv("selfcheck", "--disk-image", guest.image, *TCG, *ports_args(guest_ports),
                                         "--out-dir", out),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    serial = out / "serial.log"
    while time.monotonic() < deadline and not (serial.exists() and b"START" in serial.read_bytes()):
        time.sleep(0.1)  # mid-way: the guest is up and testing
    qemu_pids = qemu_children_of(proc.pid)
    assert len(qemu_pids) == 1
    proc.send_signal(sig)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and stdout.splitlines()[-1].startswith("FAIL: INTERRUPTED")
    assert not Path(f"/proc/{qemu_pids[0]}").exists()
