"""The run's private runtime folder (Unix sockets, temporary files), and the sweep of folders left
behind by runs that were killed outright.

The folder is made by ``mkdtemp`` (mode 0700, unpredictable) in the temporary directory, and its
name carries the owning process's pid: ``aero-win7-harness-<pid>-<random>``. A folder owned by this
user whose pid is gone belongs to a run that could not clean up (``kill -9``, a power cut); the
next run removes it.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

from harness.logsetup import get_logger

RUNTIME_PREFIX = "aero-win7-harness-"
SOCKET_PATH_ROOM = 90  # a Unix socket path holds 107 bytes; the folder leaves room for "/com1.sock" and co.
FALLBACK_TMP = Path("/tmp")
PROBE_PREFIX = "aero-kvm-probe-"
_OWNED = re.compile(rf"^(?:{re.escape(RUNTIME_PREFIX)}|{re.escape(PROBE_PREFIX)})(\d+)-")
log = get_logger("runtime")


def _bases() -> list[Path]:
    base = Path(tempfile.gettempdir())
    return [base] if base == FALLBACK_TMP else [base, FALLBACK_TMP]


def make_runtime_dir(prefix: str = RUNTIME_PREFIX) -> Path:
    """A new private folder whose name says which process owns it; in /tmp when $TMPDIR is so long
    that the Unix sockets inside would not fit their 108 bytes."""
    base = Path(tempfile.gettempdir())
    if len(str(base)) + len(prefix) + 20 > SOCKET_PATH_ROOM:
        base = FALLBACK_TMP
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=base))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def sweep_stale() -> list[Path]:
    """Remove this user's runtime folders whose owning process is gone; returns what was removed."""
    removed: list[Path] = []
    entries: list[Path] = []
    for base in _bases():
        try:
            entries += list(base.iterdir())
        except OSError:
            continue
    uid = os.getuid()
    for entry in entries:
        match = _OWNED.match(entry.name)
        if match is None:
            continue
        try:
            st = entry.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or _alive(int(match.group(1))):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        if not entry.exists():
            removed.append(entry)
    if removed:
        log.info("removed %d runtime folder(s) of runs that ended without cleaning up", len(removed),
                 extra={"removed": [str(p) for p in removed]})
    return removed
