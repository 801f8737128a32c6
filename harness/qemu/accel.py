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
import math
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from harness.errors import InfraError
from harness.logsetup import get_logger
from harness.qemu.binary import die_with_parent
from harness.qemu.bootsector import Ending, build_image
from harness.runtime import PROBE_PREFIX, make_runtime_dir
from harness.textsafe import visible

KVM_DEVICE = Path("/dev/kvm")
PROBE_TOKEN = b"AERO-KVM-PROBE-OK"
PROBE_SPIN = 20_000_000  # ~10-20 ms under real KVM; ~0.1 s under TCG; ~30 s on an emulating KVM
PROBE_DEADLINE_S = 6.0
PROBE_VERSION = 2  # bump when the probe changes, so cached answers are not reused
CACHE_ENV = "AERO_KVM_PROBE_CACHE"
NEGATIVE_TTL_S = 3600.0  # a "no" is asked again after an hour (a probe on an overloaded host may time out)
MAX_REASON_CHARS = 400

Accel = Literal["kvm", "tcg"]
log = get_logger("accel")


@dataclass(frozen=True)
class KvmProbe:
    usable: bool
    reason: str
    seconds: float = 0.0


class ProbeAborted(Exception):
    """The probe was stopped (a signal reached the run); its answer is not an answer."""


_running: set[subprocess.Popen[bytes]] = set()
_running_lock = threading.Lock()
_aborted = threading.Event()


def abort_probes() -> None:
    """Kill any probe guest that is running (from another thread: the run got a signal)."""
    _aborted.set()
    with _running_lock:
        for proc in _running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)


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


def _trusted_text(path: Path) -> str | None:
    """The cache file's text, only if this user owns it, it is a regular file (not a link) and
    nobody else may write it or its folder: a shared XDG_CACHE_HOME must not let another user decide
    the accelerator or put text into our logs."""
    uid = os.getuid()
    try:
        folder = path.parent.lstat()
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != uid or st.st_mode & 0o022 or st.st_size > 64 * 1024:
            log.warning("ignoring the KVM probe cache %s: not a private file of uid %d", path, uid)
            return None
        if folder.st_uid != uid or folder.st_mode & 0o022:
            log.warning("ignoring the KVM probe cache %s: its folder is writable by others", path)
            return None
        return os.read(fd, st.st_size).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    finally:
        os.close(fd)


def _cached_answer(text: str, key: dict[str, str]) -> KvmProbe | None:
    """A validated cache entry for ``key``, or None (any doubt means: probe again)."""
    try:
        entry = json.loads(text)
        usable, reason, seconds, at = entry["usable"], entry["reason"], entry.get("seconds", 0.0), entry["at"]
    except (ValueError, KeyError, TypeError):
        return None
    if (entry.get("key") != key or not isinstance(usable, bool) or not isinstance(reason, str)
            or not isinstance(seconds, (int, float)) or not isinstance(at, (int, float))
            or not math.isfinite(seconds) or not 0 <= seconds < 3600 or not math.isfinite(at)):
        return None
    if not usable and not 0 <= time.time() - at < NEGATIVE_TTL_S:
        return None
    return KvmProbe(usable, visible(reason[:MAX_REASON_CHARS]) + " (cached for this boot)", float(seconds))


def _store(path: Path, entry: dict[str, object]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".kvm-probe.", suffix=".tmp")  # 0600
    try:
        with os.fdopen(fd, "w") as stream:
            json.dump(entry, stream)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached_probe(key: dict[str, str], compute: Callable[[], KvmProbe]) -> KvmProbe:
    """``compute()``, remembered on disk for this boot and ``key``: a probe on a nested host costs
    seconds, and its answer only changes with a reboot or another QEMU. A "no" is kept for an hour
    only. Set AERO_KVM_PROBE_CACHE=0 to probe every time."""
    if os.environ.get(CACHE_ENV, "1") == "0":
        return compute()
    key = {**key, "boot_id": boot_id(), "probe": str(PROBE_VERSION)}
    path = cache_file()
    text = _trusted_text(path)
    answer = _cached_answer(text, key) if text is not None else None
    if answer is not None:
        return answer
    probe = compute()
    try:
        _store(path, {"key": key, "usable": probe.usable, "reason": probe.reason,
                      "seconds": round(probe.seconds, 3), "at": time.time()})
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


def _run_probe(argv: list[str]) -> tuple[int | None, bytes, bytes]:
    """Run the probe guest; (None, ...) when it outlived the deadline. ProbeAborted after abort_probes()."""
    if _aborted.is_set():
        raise ProbeAborted
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            preexec_fn=die_with_parent)
    with _running_lock:
        _running.add(proc)
    try:
        try:
            stdout, stderr = proc.communicate(timeout=PROBE_DEADLINE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return None, b"", b""
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        with _running_lock:
            _running.discard(proc)
    if _aborted.is_set():
        raise ProbeAborted
    return proc.returncode, stdout, stderr


def _boot_probe_guest(qemu: str) -> KvmProbe:
    tmp = make_runtime_dir(PROBE_PREFIX)
    try:
        image = tmp / "probe.img"
        image.write_bytes(build_image(PROBE_TOKEN + b"\r\n", Ending.POWEROFF, spin=PROBE_SPIN))
        started = time.monotonic()
        try:
            returncode, stdout, stderr_bytes = _run_probe(_probe_argv(qemu, image))
        except OSError as err:
            return KvmProbe(False, f"QEMU could not be started for the KVM probe: {err}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.monotonic() - started
    if returncode is None:
        return KvmProbe(False, f"a KVM guest did not finish a {PROBE_SPIN:,}-iteration loop within "
                               f"{PROBE_DEADLINE_S:.0f} s (nested or emulating KVM)", PROBE_DEADLINE_S)
    if PROBE_TOKEN in stdout:
        return KvmProbe(True, f"a KVM guest ran the probe in {seconds:.2f} s", seconds)
    stderr = " ".join(stderr_bytes.decode("utf-8", "replace").split())
    return KvmProbe(False, f"the KVM probe guest failed (exit {returncode}): {stderr[:300]}", seconds)


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
