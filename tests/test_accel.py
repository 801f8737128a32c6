"""The accelerator: KVM only where it really runs a guest; the device node alone proves nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.qemu.accel import probe_kvm
from tests.conftest import PASSING, HarnessRun, lines

pytestmark = [pytest.mark.qemu, pytest.mark.usefixtures("qemu", "no_stray_qemu")]
Run = Callable[..., HarnessRun]


@pytest.fixture(scope="module")
def kvm() -> tuple[bool, str]:
    probe = probe_kvm()
    return probe.usable, probe.reason


def test_accel_kvm_fails_fast_with_infra_where_kvm_cannot_run_guests(make_guest, run_harness: Run,
                                                                     kvm: tuple[bool, str]) -> None:
    started = time.monotonic()
    run = run_harness("--disk-image", make_guest(lines(*PASSING)), "--accel", "kvm", "--timeout-seconds", "60")
    if kvm[0]:  # a host with working KVM (e.g. GitHub's runners): the run passes under KVM
        assert run.returncode == 0 and run.results()["accel"] == "kvm"
    else:  # this machine: /dev/kvm answers, yet guests hang or crawl
        assert run.returncode == 6
        assert run.last_line.startswith("FAIL: INFRA: --accel kvm was asked for but KVM cannot run guests here")
        assert time.monotonic() - started < 15
        assert not (run.out_dir / "serial.log").exists()


def test_accel_auto_falls_back_to_tcg_with_one_warning(make_guest, run_harness: Run,
                                                       kvm: tuple[bool, str]) -> None:
    run = run_harness("--disk-image", make_guest(lines(*PASSING)), "--accel", "auto", "--timeout-seconds", "60")
    assert run.returncode == 0
    assert run.results()["accel"] == ("kvm" if kvm[0] else "tcg")
    warnings = [line for line in run.stderr.splitlines() if line.startswith("WARNING: KVM unusable")]
    assert len(warnings) == (0 if kvm[0] else 1)


def test_probe_reports_a_missing_device(tmp_path: Path) -> None:
    probe = probe_kvm(device=tmp_path / "kvm")
    assert not probe.usable and "does not exist" in probe.reason
