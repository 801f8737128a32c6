"""Flag values that cannot be right: one USAGE line on stdout, one hint line on stderr, nothing booted.

A value is checked whether or not the feature it tunes is switched on, so a typo in a script shows
the first time it runs, not the day someone adds the flag that uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import PASSING, HarnessRun, lines

pytestmark = pytest.mark.usefixtures("qemu")
Run = Callable[..., HarnessRun]


@pytest.mark.parametrize(("args", "needle"), [
    (("--progress-interval", "0"), "--progress-interval must be a number of seconds of at least 0.1, not 0"),
    (("--progress-interval", "-1"), "not -1"),
    (("--progress-interval", "nan"), "not nan"),
    (("--progress-interval", "inf"), "not inf"),
    (("--progress-interval", "1e-9"), "not 1e-09"),
    (("--net-link-flap-down-seconds", "-5"), "--net-link-flap-down-seconds must be more than 0 and at most 600"),
    (("--blk-resize-delta-mib", "-5"), "--blk-resize-delta-mib must be between 1 and"),
    (("--network-isolation", "maybe"), "argument --network-isolation: invalid choice: 'maybe'"),
    (("--virtio-layout", "legacy"), "argument --virtio-layout: invalid choice: 'legacy'"),
    (("--dns-record", "host.lan"), "--dns-record"),
    (("--dns-record", "host.lan=300.1.1.1"), "--dns-record"),
    (("--virtio-snd-vectors", "-1"), "--virtio-snd-vectors must be between 0 and 2048"),
    (("--virtio-input-vectors", "4097"), "--virtio-input-vectors must be between 0 and 2048"),
])
@pytest.mark.bad_input
def test_a_bad_value_is_one_line(make_guest, run_harness: Run, args: tuple[str, ...], needle: str) -> None:
    run = run_harness("--disk-image", make_guest(lines(*PASSING)), "--accel", "tcg", *args)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stdout.strip().splitlines() == [run.last_line] and run.last_line.startswith("FAIL: USAGE: ")
    assert needle in run.last_line, run.last_line
    assert "Traceback" not in run.stderr
    assert len([line for line in run.stderr.splitlines() if not line.startswith("INFO: ")]) <= 1, run.stderr
    assert not (run.out_dir / "serial.log").exists()


def test_the_vectors_flags_of_sound_and_input_reach_their_devices(make_guest, run_harness: Run,
                                                                  tmp_path: Path) -> None:
    run = run_harness("--disk-image", make_guest(lines(*PASSING)), "--accel", "tcg", "--dry-run",
                      "--virtio-input-vectors", "3", "--with-virtio-tablet")
    assert run.returncode == 0, run.stdout
    for device in ("virtio-keyboard-pci,id=kbd0", "virtio-mouse-pci,id=mouse0", "virtio-tablet-pci,id=tablet0"):
        assert any(arg.startswith(device) and "vectors=3" in arg for arg in run.stdout.split()), device
