"""One launcher at a time per output folder, decided on the host before anything is written there.

The launcher holds an exclusive ``flock`` on ``OUT/.aero-win7-docker.lock`` from before it touches
the folder until its container is gone. The harness in the container locks its own file
(``.aero-win7-harness.lock``) in the same folder; the two names differ because the folder is the
same inode on both sides of the bind mount, and a launcher holding the harness's file would shut
out its own container. A second launcher is refused with exit 6 naming the host folder and the
holder's host pid, and a run of the harness on the host that holds its own lock there is refused
the same way, before either changes anything in the folder.

While a root caller's folder is lent to the image's user (``ownership``), the lock file also
records the folder's owner, so a launcher killed before it gave the folder back (``kill -9``)
leaves the next one enough to give it back to the right user.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from harness.errors import InfraError, UsageError
from harness.outputs import ARTIFACT_MODE, LOCK

LAUNCHER_LOCK = ".aero-win7-docker.lock"
T = TypeVar("T")
_OWNER = re.compile(r"owner=(\d+):(\d+)")


@dataclass
class HeldLock:
    """The launcher's lock on one output folder, for as long as it is held."""

    out_dir: Path
    fd: int
    previous_owner: tuple[int, int] | None  # recorded by a launcher that died while the folder was lent

    def _write(self, text: str) -> None:
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, text.encode(), 0)

    def record_owner(self, owner: tuple[int, int]) -> None:
        """Note the folder's real owner while it is lent."""
        self._write(f"{os.getpid()} {socket.gethostname()} owner={owner[0]}:{owner[1]}\n")

    def clear_owner(self) -> None:
        """The folder is back with its owner."""
        self._write(f"{os.getpid()} {socket.gethostname()}\n")


def _holder(text: str) -> str:
    parts = text.split()
    if not parts:
        return "another process"
    return f"pid {parts[0]}" + (f" on {parts[1]}" if len(parts) > 1 else "")


def _trusted_owner(fd: int, text: str) -> tuple[int, int] | None:
    """The owner a dead launcher recorded, if this process could have written the file itself: a
    lock file the container's user planted (it may replace files in a folder it was lent) is
    not believed, nor one naming anyone but its own owner (or written by this user)."""
    match = _OWNER.search(text)
    if match is None:
        return None
    owner = int(match.group(1)), int(match.group(2))
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_mode & 0o022:
        return None
    if st.st_uid != os.getuid() and st.st_uid != owner[0]:  # an owner may name only itself
        return None
    return owner


def _harness_holder(out_dir: Path) -> str | None:
    """Who holds the harness's own lock in the folder (a harness run on this host), if anyone."""
    try:
        fd = os.open(out_dir / LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:  # none yet, a link, or unreadable: the harness inside will judge
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(os.pread(fd, 200, 0).decode("utf-8", "replace"))
        return None
    finally:
        os.close(fd)  # releases the probe's lock at once


_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _open_existing(path: Path) -> int | None:
    """The lock file, opened without following a link; None when there is none yet."""
    try:
        return os.open(path, _FLAGS)
    except FileNotFoundError:
        return None


def _create(path: Path) -> int:
    """A new lock file (mode 0644, whatever the umask), or the one another launcher made just now."""
    try:
        fd = os.open(path, _FLAGS | os.O_CREAT | os.O_EXCL, ARTIFACT_MODE)
    except FileExistsError:
        return os.open(path, _FLAGS)
    os.fchmod(fd, ARTIFACT_MODE)  # a later launcher of the folder's owner reads and writes it too
    return fd


def _opened(out_dir: Path, path: Path, opener: Callable[[Path], T]) -> T:
    try:
        return opener(path)
    except OSError as err:
        raise UsageError(f"--out-dir {out_dir}: cannot open the launcher's lock file {path}: {err.strerror} (a "
                         "link, a folder, or not this user's to write): remove it or pass another --out-dir") from err


def _locked(out_dir: Path, path: Path, fd: int) -> int:
    """``fd`` locked; InfraError when another launcher holds it (``fd`` is then closed)."""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UsageError(f"--out-dir {out_dir}: {path} is not a regular file; remove it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InfraError(f"--out-dir {out_dir} is in use by another aero-win7-docker "
                             f"({_holder(os.pread(fd, 200, 0).decode('utf-8', 'replace'))}); wait for it to finish "
                             "or pass another --out-dir") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextmanager
def hold(out_dir: Path, check: Callable[[], None] | None = None) -> Iterator[HeldLock]:
    """The launcher's exclusive lock on ``out_dir`` (an existing folder), for the life of the block.

    InfraError (exit 6) when another launcher or a harness run holds the folder; either is found
    before the lock file is created or written, so a refused launcher changes nothing there.
    ``check`` (which must change nothing) runs once neither holds it, before the lock file is made."""
    path = out_dir / LAUNCHER_LOCK
    existing = _opened(out_dir, path, _open_existing)
    fd = _locked(out_dir, path, existing) if existing is not None else None
    try:
        harness = _harness_holder(out_dir)
        if harness is not None:
            raise InfraError(f"--out-dir {out_dir} is in use by a harness run ({harness}); wait for it to finish "
                             "or pass another --out-dir")
        if check is not None:
            check()
        if fd is None:  # the first launcher here (one that made the file just before us holds it: refused)
            fd = _locked(out_dir, path, _opened(out_dir, path, _create))
        previous = os.pread(fd, 200, 0).decode("utf-8", "replace")
        lock = HeldLock(out_dir, fd, _trusted_owner(fd, previous))
        if lock.previous_owner is not None:  # kept until this launcher gives the folder back itself
            lock.record_owner(lock.previous_owner)
        else:
            lock.clear_owner()
        yield lock
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock
