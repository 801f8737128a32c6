"""Choosing the accelerator: KVM only when it can really run a guest, else TCG.

The device node proves nothing: a nested KVM can open ``/dev/kvm`` and create a VM yet hang a
kernel once it leaves real mode, fail to set MSRs, or run guest code at emulation speed. So the
probe boots a tiny guest under KVM that goes to long mode, runs a busy loop that takes
milliseconds on real hardware virtualization, and writes a token to COM1; KVM is usable only
when the token arrives before a short deadline.
"""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness.errors import InfraError
from harness.logsetup import get_logger
from harness.qemu.bootsector import Ending, build_image

KVM_DEVICE = Path("/dev/kvm")
PROBE_TOKEN = b"AERO-KVM-PROBE-OK"
PROBE_SPIN = 20_000_000  # ~10-20 ms under real KVM; ~0.1 s under TCG; ~30 s on an emulating KVM
PROBE_DEADLINE_S = 6.0

Accel = Literal["kvm", "tcg"]
log = get_logger("accel")


@dataclass(frozen=True)
class KvmProbe:
    usable: bool
    reason: str
    seconds: float = 0.0


def _probe_argv(qemu: str, image: Path) -> list[str]:
    return [
        qemu, "-accel", "kvm", "-machine", "pc", "-m", "64", "-nodefaults", "-display", "none",
        "-no-reboot", "-serial", "stdio", "-monitor", "none",
        "-drive", f"file={image},format=raw,if=none,id=probe,readonly=on",
        "-device", "virtio-blk-pci,drive=probe,bootindex=0",
    ]


@functools.cache
def probe_kvm(qemu: str = "qemu-system-x86_64", device: Path = KVM_DEVICE) -> KvmProbe:
    """Boot the probe guest under KVM; cached for the life of the process."""
    if not device.exists():
        return KvmProbe(False, f"{device} does not exist")
    if not os.access(device, os.R_OK | os.W_OK):
        return KvmProbe(False, f"{device} is not readable and writable by this user")
    with tempfile.TemporaryDirectory(prefix="aero-kvm-probe-") as tmp:
        image = Path(tmp, "probe.img")
        image.write_bytes(build_image(PROBE_TOKEN + b"\r\n", Ending.POWEROFF, spin=PROBE_SPIN))
        started = time.monotonic()
        try:
            proc = subprocess.run(_probe_argv(qemu, image), capture_output=True, timeout=PROBE_DEADLINE_S,
                                  check=False, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return KvmProbe(False, f"a KVM guest did not finish a {PROBE_SPIN:,}-iteration loop within "
                                   f"{PROBE_DEADLINE_S:.0f} s (nested or emulating KVM)", PROBE_DEADLINE_S)
        except OSError as err:
            return KvmProbe(False, f"QEMU could not be started for the KVM probe: {err}")
    seconds = time.monotonic() - started
    if PROBE_TOKEN in proc.stdout:
        return KvmProbe(True, f"a KVM guest ran the probe in {seconds:.2f} s", seconds)
    stderr = " ".join(proc.stderr.decode("utf-8", "replace").split())
    return KvmProbe(False, f"the KVM probe guest failed (exit {proc.returncode}): {stderr[:300]}", seconds)


def kvm_usable(qemu: str = "qemu-system-x86_64") -> tuple[bool, str]:
    """(usable, reason) for callers that only need the answer (e.g. the Docker launcher)."""
    probe = probe_kvm(qemu)
    return probe.usable, probe.reason


def choose_accel(requested: Literal["auto", "kvm", "tcg"], qemu: str) -> Accel:
    """Resolve ``--accel``: auto falls back to TCG with one warning; kvm fails fast with INFRA."""
    if requested == "tcg":
        return "tcg"
    probe = probe_kvm(qemu)
    if probe.usable:
        log.info("KVM: %s", probe.reason)
        return "kvm"
    if requested == "kvm":
        raise InfraError(f"--accel kvm was asked for but KVM cannot run guests here: {probe.reason}")
    log.warning("KVM unusable (%s); using TCG, which is much slower", probe.reason)
    return "tcg"
