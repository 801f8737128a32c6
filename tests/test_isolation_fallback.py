"""Where the kernel gives the run no network namespace: ``auto`` goes on with one warning, ``on`` is
INFRA, and bad input is still USAGE.

The harness runs inside a user namespace of the test's own whose network-namespace limit is 0
(``user.max_net_namespaces``), so ``unshare(CLONE_NEWNET)`` fails there as on a host that forbids it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PASSING, harness_argv, lines

pytestmark = [pytest.mark.qemu, pytest.mark.usefixtures("qemu", "no_stray_qemu")]


def without_namespaces(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    unshare = shutil.which("unshare")
    assert unshare, "util-linux's unshare is part of every Debian system"
    script = 'echo 0 > /proc/sys/user/max_net_namespaces && exec "$@"'
    return subprocess.run([unshare, "--user", "--map-root-user", "--", "sh", "-c", script, "sh",
                           *harness_argv(*args)], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.mark.fault
def test_auto_goes_on_without_isolation_with_one_warning(make_guest, tmp_path: Path, ports: tuple[int, int]) -> None:
    out = tmp_path / "out"
    run = without_namespaces("--disk-image", make_guest(lines(*PASSING)), "--accel", "tcg", "--timeout-seconds", "30",
                             "--out-dir", out, "--http-port", str(ports[0]), "--udp-port", str(ports[1]), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    warnings = [line for line in run.stderr.splitlines() if line.startswith("WARNING: ")]
    assert len(warnings) == 1 and warnings[0].startswith("WARNING: no network isolation (namespaces unavailable "
                                                         "(the namespace limit is reached"), run.stderr
    isolation = json.loads((out / "results.json").read_text())["network_isolation"]
    assert isolation["isolated"] is False and "namespace limit" in isolation["how"]


@pytest.mark.fault
def test_on_is_an_infra_failure_naming_why(make_guest, tmp_path: Path) -> None:
    run = without_namespaces("--disk-image", make_guest(lines(*PASSING)), "--accel", "tcg", "--network-isolation",
                             "on", "--out-dir", tmp_path / "out", cwd=tmp_path)
    assert run.returncode == 6, run.stdout + run.stderr
    assert run.stdout.splitlines() == [run.stdout.strip()]
    assert run.stdout.startswith("FAIL: INFRA: --network-isolation on, but namespaces unavailable (the namespace "
                                 "limit is reached")
    assert not (tmp_path / "out" / "serial.log").exists()


@pytest.mark.bad_input
def test_bad_input_is_usage_before_any_isolation(tmp_path: Path) -> None:
    run = without_namespaces("--disk-image", tmp_path / "missing.img", "--network-isolation", "on", cwd=tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stdout.splitlines() == [f"FAIL: USAGE: disk image not found: {tmp_path / 'missing.img'}"]


def test_a_thread_that_is_ending_does_not_cost_the_run_its_namespace() -> None:
    """asyncio's child watcher (the capability probe's) may still be ending when isolation starts.
    In a process of its own: pytest's may hold threads of earlier tests."""
    script = ("import threading, time\n"
              "from harness.netns import _threads, _threads_settled\n"
              "ending = threading.Thread(target=time.sleep, args=(0.05,))\n"
              "ending.start()\n"
              "print(_threads(), _threads_settled())\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.split() == ["2", "1"], proc.stdout + proc.stderr
