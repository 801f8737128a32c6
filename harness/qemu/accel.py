"""Choosing the accelerator: KVM only when it can really run a guest, else TCG.

The device node proves nothing: a nested KVM can open ``/dev/kvm`` and create a VM yet hang a
kernel once it leaves real mode, fail to set MSRs, or run guest code at emulation speed. So the
probe boots a tiny guest under KVM that goes to long mode, runs a busy loop that takes
milliseconds on real hardware virtualization, and writes a token to COM1; KVM is usable only
when the token arrives before a short deadline.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from harness.errors import InfraError
from harness.logsetup import get_logger
from harness.qemu.bootsector import Ending, build_image

KVM_DEVICE = Path("/dev/kvm")
PROBE_TOKEN = b"AERO-KVM-PROBE-OK"
PROBE_SPIN = 20_000_000  # ~10-20 ms under real KVM; ~0.1 s under TCG; ~30 s on an emulating KVM
PROBE_DEADLINE_S = 6.0
PROBE_VERSION = 1  # bump when the probe changes, so cached answers are not reused
CACHE_ENV = "AERO_KVM_PROBE_CACHE"
NEGATIVE_TTL_S = 3600.0  # a "no" is asked again after an hour (a probe on an overloaded host may time out)

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


def boot_id() -> str:
    """Changes with every boot of the host: whether KVM works cannot change within one."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base, "aero-win7-harness", "kvm-probe.json")


def cached_probe(key: dict[str, str], compute: Callable[[], KvmProbe]) -> KvmProbe:
    """``compute()``, remembered on disk for this boot and ``key``: a probe on a nested host costs
    seconds, and its answer only changes with a reboot or another QEMU. A "no" is kept for an hour
    only. Set AERO_KVM_PROBE_CACHE=0 to probe every time."""
    if os.environ.get(CACHE_ENV, "1") == "0":
        return compute()
    key = {**key, "boot_id": boot_id(), "probe": str(PROBE_VERSION)}
    path = cache_file()
    try:
        entry = json.loads(path.read_text())
        fresh = entry["usable"] or time.time() - float(entry["at"]) < NEGATIVE_TTL_S
        if entry.get("key") == key and fresh:
            return KvmProbe(bool(entry["usable"]), str(entry["reason"]) + " (cached for this boot)",
                            float(entry.get("seconds", 0.0)))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # no cache yet, or an unreadable one: probe
    probe = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"key": key, "usable": probe.usable, "reason": probe.reason,
                                    "seconds": round(probe.seconds, 3), "at": time.time()}))
    except OSError as err:
        log.debug("KVM probe result not cached: %s", err)
    return probe


def _binary_key(qemu: str, device: Path) -> dict[str, str]:
    found = shutil.which(qemu) or qemu
    try:
        st = os.stat(found)
        identity = f"{os.path.realpath(found)}:{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        identity = found
    return {"qemu": identity, "device": str(device)}


@functools.cache
def probe_kvm(qemu: str = "qemu-system-x86_64", device: Path = KVM_DEVICE) -> KvmProbe:
    """Boot the probe guest under KVM; remembered for the process and, on disk, for this boot."""
    if not device.exists():
        return KvmProbe(False, f"{device} does not exist")
    if not os.access(device, os.R_OK | os.W_OK):
        return KvmProbe(False, f"{device} is not readable and writable by this user")
    return cached_probe(_binary_key(qemu, device), lambda: _boot_probe_guest(qemu))


def _boot_probe_guest(qemu: str) -> KvmProbe:
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


def main() -> int:
    """``python -m harness.qemu.accel``: the probe's answer as one JSON line (the Docker launcher
    runs it inside the image, with the device passed, when the host has no QEMU of its own)."""
    print(json.dumps(asdict(probe_kvm())), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
