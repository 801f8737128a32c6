"""The accelerator: KVM only where it really runs a guest; the device node alone proves nothing."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.qemu.accel import probe_kvm
from tests.conftest import PASSING, HarnessRun, lines, missing_prerequisite

pytestmark = [pytest.mark.qemu, pytest.mark.usefixtures("qemu", "no_stray_qemu")]
Run = Callable[..., HarnessRun]


@pytest.fixture(scope="module")
def kvm() -> tuple[bool, str]:
    probe = probe_kvm()
    return probe.usable, probe.reason


@pytest.mark.fault
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


def test_the_kvm_probe_runs_inside_the_runs_own_network(make_guest, tmp_path: Path, kvm: tuple[bool, str]) -> None:
    """Isolation comes first (before any thread); the probe (not its cache) then runs in the namespace."""
    import subprocess

    from tests.conftest import harness_argv

    proc = subprocess.run(harness_argv("--disk-image", make_guest(lines(*PASSING)), "--accel", "kvm",
                                       "--network-isolation", "on", "--timeout-seconds", "60",
                                       "--out-dir", tmp_path / "out"),
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                          env={**os.environ, "AERO_KVM_PROBE_CACHE": "0"})
    if kvm[0]:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    else:  # the same answer as the probe outside the namespace, for the same reason
        assert proc.returncode == 6, proc.stdout + proc.stderr
        assert proc.stdout.splitlines()[-1] == ("FAIL: INFRA: --accel kvm was asked for but KVM cannot run guests "
                                                f"here: {kvm[1].removesuffix(' (cached for this boot)')}")


def test_accel_auto_falls_back_to_tcg_with_one_warning(make_guest, run_harness: Run,
                                                       kvm: tuple[bool, str]) -> None:
    run = run_harness("--disk-image", make_guest(lines(*PASSING)), "--accel", "auto", "--timeout-seconds", "60")
    assert run.returncode == 0
    assert run.results()["accel"] == ("kvm" if kvm[0] else "tcg")
    warnings = [line for line in run.stderr.splitlines() if line.startswith("WARNING: KVM unusable")]
    assert len(warnings) == (0 if kvm[0] else 1)


@pytest.mark.fault
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


def _as_other_user(action: Callable[[], object]) -> None:
    """Run ``action`` in a forked child as the unprivileged user nobody; fail the test if it raises."""
    pid = os.fork()
    if pid == 0:  # child: only os._exit from here
        try:
            os.setgid(65534)
            os.setuid(65534)
            action()
            os._exit(0)
        except BaseException:  # noqa: BLE001 - reported to the parent through the exit code
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.attack
def test_a_cache_another_user_could_write_is_not_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shared XDG_CACHE_HOME: another user plants a "yes" (to force KVM) with text for our logs."""
    from harness.qemu.accel import PROBE_VERSION, KvmProbe, boot_id, cache_file, cached_probe

    if os.getuid() != 0:
        missing_prerequisite("acting as two users needs root")  # CI runs as root
    shared = Path(tempfile.mkdtemp(prefix="aero-shared-cache-"))  # reachable by another user, unlike tmp_path
    shared.chmod(0o1777)
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared))
    key = {"qemu": "a"}
    planted = {"key": {**key, "boot_id": boot_id(), "probe": str(PROBE_VERSION)}, "usable": True,
               "reason": "\x1b]0;owned\x07 forged", "seconds": 0.01, "at": 0}

    def plant() -> None:
        cache_file().parent.mkdir(mode=0o777, parents=True, exist_ok=True)
        cache_file().parent.chmod(0o777)
        cache_file().write_text(json.dumps(planted))

    _as_other_user(plant)
    try:
        probe = cached_probe(key, lambda: KvmProbe(False, "probed for real", 6.0))
    finally:
        shutil.rmtree(shared)
    assert (probe.usable, probe.reason) == (False, "probed for real")


@pytest.mark.parametrize("entry", [
    {"usable": "yes", "reason": "x", "seconds": 0.1},  # not a bool
    {"usable": True, "reason": 5, "seconds": 0.1},  # not text
    {"usable": True, "reason": "x", "seconds": float("nan")},
    {"usable": True, "reason": "x", "seconds": -1},
])
@pytest.mark.fault
def test_a_malformed_cache_entry_is_probed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 entry: dict[str, object]) -> None:
    from harness.qemu.accel import PROBE_VERSION, KvmProbe, boot_id, cache_file, cached_probe

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    key = {"qemu": "a"}
    cached_probe(key, lambda: KvmProbe(False, "first", 1.0))  # makes the folder and file, privately
    cache_file().write_text(json.dumps({"key": {**key, "boot_id": boot_id(), "probe": str(PROBE_VERSION)},
                                        "at": time.time(), **entry}))
    assert cached_probe(key, lambda: KvmProbe(False, "again", 1.0)).reason == "again"


@pytest.mark.attack
def test_a_cached_reason_is_shown_with_its_control_bytes_escaped(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.qemu.accel import KvmProbe, cache_file, cached_probe

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cached_probe({"qemu": "a"}, lambda: KvmProbe(False, "qemu said \x1b[31mno", 1.0))
    assert cache_file().stat().st_mode & 0o077 == 0  # written privately
    assert cached_probe({"qemu": "a"}, lambda: KvmProbe(True, "unused", 0.0)).reason == \
        "qemu said \\x1b[31mno (cached for this boot)"
