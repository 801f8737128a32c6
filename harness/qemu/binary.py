"""Finding and interrogating the QEMU binaries (``qemu-system-x86_64``, ``qemu-img``)."""

from __future__ import annotations

import ctypes
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UsageError

DEFAULT_QEMU_SYSTEM = "qemu-system-x86_64"
_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child must not dlopen or malloc


def die_with_parent() -> None:
    """``preexec_fn`` of every QEMU the harness starts: it dies with the harness, even after kill -9.
    Runs in the child between fork and exec: one system call, nothing else."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

_PROBE_TIMEOUT_S = 30.0
_CHECK_TIMEOUT_S = 300.0  # qemu-img check of a large image reads all of its metadata
_VERSION_RE = re.compile(r"QEMU emulator version (\d+)\.(\d+)\.(\d+)(.*)")


@dataclass(frozen=True)
class QemuBinary:
    """A QEMU system emulator that was found and answered ``--version``."""

    path: str
    version: tuple[int, int, int]
    version_text: str  # the full first line, e.g. "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"

    @property
    def version_str(self) -> str:
        return ".".join(str(n) for n in self.version)

    def has_device(self, name: str) -> bool:
        from harness.qemu.capabilities import capabilities  # late: it imports the runtime folder helpers

        return capabilities(self.path).has_device(name)


def resolve_executable(name_or_path: str, what: str) -> str:
    """Return the absolute path of an executable given by name (on PATH) or path; else UsageError."""
    if os.sep in name_or_path:
        path = Path(name_or_path)
        if not path.exists():
            raise UsageError(f"{what} not found: {name_or_path}")
        if path.is_dir() or not os.access(path, os.X_OK):
            raise UsageError(f"{what} is not an executable file: {name_or_path}")
        return str(path.resolve())
    found = shutil.which(name_or_path)
    if found is None:
        raise UsageError(f"{what} not found on PATH: {name_or_path} (install QEMU, or pass its path)")
    return found


def _run(argv: list[str], what: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise UsageError(f"{what} could not be run ({argv[0]}): {err}") from err


@functools.cache
def probe_qemu(name_or_path: str = DEFAULT_QEMU_SYSTEM) -> QemuBinary:
    """Find a QEMU system emulator and read its version; UsageError when it is unusable."""
    path = resolve_executable(name_or_path, "QEMU")
    proc = _run([path, "--version"], "QEMU")
    first = proc.stdout.splitlines()[0] if proc.stdout else ""
    match = _VERSION_RE.match(first)
    if proc.returncode != 0 or match is None:
        raise UsageError(f"{path} does not answer like QEMU: {(proc.stderr or first).strip()[:200]}")
    major, minor, micro = (int(g) for g in match.groups()[:3])
    text = first.removeprefix("QEMU emulator version ").strip()
    return QemuBinary(path=path, version=(major, minor, micro), version_text=text)


def describe_default_qemu(name_or_path: str = DEFAULT_QEMU_SYSTEM) -> str:
    """One line for ``--version``: the QEMU this harness would use, or why there is none."""
    try:
        qemu = probe_qemu(name_or_path)
    except UsageError as err:
        return f"QEMU: unavailable ({err.detail})"
    return f"QEMU {qemu.version_text} at {qemu.path}"


def qemu_img_for(qemu_system: str) -> str:
    """The ``qemu-img`` that belongs with a QEMU system binary (same folder first, then PATH)."""
    sibling = Path(qemu_system).with_name("qemu-img")
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return str(sibling)
    return resolve_executable("qemu-img", "qemu-img")


def image_chain(qemu_img: str, image: Path) -> list[dict[str, Any]]:
    """``qemu-img info --backing-chain`` of an image: the image first, then its backing files;
    read-only and without locking it. UsageError when any link of the chain is unreadable."""
    proc = _run([qemu_img, "info", "--force-share", "--backing-chain", "--output=json", str(image)], "qemu-img")
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["qemu-img cannot read it"])[-1]
        raise UsageError(f"not a usable disk image: {image}: {reason}")
    chain: list[dict[str, Any]] = json.loads(proc.stdout)
    return chain


# Formats whose metadata ``qemu-img check`` can verify; a raw image has none.
CHECKABLE_FORMATS = frozenset({"qcow2", "qed", "vdi", "vhdx", "parallels"})


def check_image_metadata(qemu_img: str, image: Path, fmt: str) -> None:
    """UsageError when ``qemu-img check`` finds the image's metadata corrupt or cut short (a qcow2
    copied incompletely boots and then hangs, which costs the whole timeout). Leaked clusters are
    harmless and accepted. Read-only and without locking the image."""
    if fmt not in CHECKABLE_FORMATS:
        return
    argv = [qemu_img, "check", "--force-share", "--output=json", "-f", fmt, str(image)]
    with tempfile.TemporaryFile() as errors:  # one line a bad cluster: keep only the tail, not all of it
        try:
            proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=errors, text=True, timeout=_CHECK_TIMEOUT_S,
                                  check=False, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise UsageError(f"qemu-img check could not be run on {image}: {err}") from err
        errors.seek(max(0, errors.seek(0, os.SEEK_END) - 2048))
        stderr = errors.read().decode("utf-8", "replace")
    if proc.returncode in (0, 3):  # 3: leaked clusters only
        return
    try:
        report = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except ValueError:
        report = {}
    if proc.returncode == 2:
        end = report.get("image-end-offset")
        size = image.stat().st_size
        cut = f"; its metadata refers to {end} bytes but the file has {size}" if end and int(end) > size else ""
        raise UsageError(f"disk image is corrupt ({report.get('corruptions', 'some')} errors found by qemu-img check"
                         f"{cut}): {image}; it may be truncated or damaged: copy it again")
    reason = (stderr.strip().splitlines() or ["qemu-img check failed"])[-1]
    if "does not support checks" in reason:
        return
    raise UsageError(f"disk image cannot be checked ({reason}): {image}")


def image_info(qemu_img: str, image: Path) -> dict[str, Any]:
    """``qemu-img info`` of the image itself (its backing chain checked too)."""
    return image_chain(qemu_img, image)[0]
