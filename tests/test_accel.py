"""The accelerator: KVM only where it really runs a guest; the device node alone proves nothing."""

from __future__ import annotations

import json
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


def test_the_probe_answer_is_remembered_per_boot_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.qemu.accel import KvmProbe, cache_file, cached_probe

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls: list[int] = []

    def compute() -> KvmProbe:
        calls.append(1)
        return KvmProbe(False, "slow nested KVM", 6.0)

    first = cached_probe({"qemu": "a"}, compute)
    second = cached_probe({"qemu": "a"}, compute)
    assert len(calls) == 1 and not second.usable and second.reason == "slow nested KVM (cached for this boot)"
    assert first.reason == "slow nested KVM"
    assert cache_file() == tmp_path / "aero-win7-harness" / "kvm-probe.json"
    cached_probe({"qemu": "b"}, compute)  # another QEMU: probed again
    assert len(calls) == 2
    monkeypatch.setenv("AERO_KVM_PROBE_CACHE", "0")
    cached_probe({"qemu": "b"}, compute)
    assert len(calls) == 3
    entry = json.loads(cache_file().read_text())
    entry["at"] -= 3601  # an hour-old "no" is asked again
    cache_file().write_text(json.dumps(entry))
    assert cached_probe({"qemu": "b"}, compute).reason == "slow nested KVM" and len(calls) == 4
    cache_file().write_text("{not json")
    monkeypatch.delenv("AERO_KVM_PROBE_CACHE")
    assert cached_probe({"qemu": "b"}, compute).reason == "slow nested KVM"  # a broken cache is re-probed
