"""One launcher at a time per output folder, decided on the host before anything is written there.

The launcher holds an exclusive ``flock`` on ``OUT/.aero-win7-docker.lock`` from before it touches
the folder until its container is gone. The harness in the container locks its own file
(``.aero-win7-harness.lock``) in the same folder; the two names differ because the folder is the
same inode on both sides of the bind mount, and a launcher holding the harness's file would shut
out its own container. A second launcher is refused with exit 6 naming the host folder and the
holder's host pid, and a run of the harness on the host that holds its own lock there is refused
the same way, before either changes anything in the folder.

The lock file says who holds the folder (pid and host), nothing more: while a root caller's
folder is lent, the container's user may replace it, so whom the folder goes back to is kept
outside it (``loans``). A lock file that is not a regular file of one name (a hard link of another
file) is refused before it is written, and the folder is reached only through the launcher's
descriptor of it (``outdir``).
"""

from __future__ import annotations

import fcntl
import os
import socket
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from harness.errors import InfraError, UsageError
from harness.launcher.outdir import OutDir
from harness.outputs import ARTIFACT_MODE, LOCK

LAUNCHER_LOCK = ".aero-win7-docker.lock"
T = TypeVar("T")


@dataclass
class HeldLock:
    """The launcher's lock on one output folder, for as long as it is held."""

    out_dir: Path
    fd: int

    @property
    def identity(self) -> tuple[int, int]:
        """(st_dev, st_ino) of the lock file the launcher holds (the name may meanwhile be another file's)."""
        st = os.fstat(self.fd)
        return st.st_dev, st.st_ino


def _holder(text: str) -> str:
    parts = text.split()
    if not parts:
        return "another process"
    return f"pid {parts[0]}" + (f" on {parts[1]}" if len(parts) > 1 else "")


def _harness_holder(dir_fd: int) -> str | None:
    """Who holds the harness's own lock in the folder (a harness run on this host), if anyone."""
    try:
        fd = os.open(LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:  # none yet, a link, or unreadable: judged later (check_lendable, lock_out_dir)
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:  # another file's name too: not probed
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(os.pread(fd, 200, 0).decode("utf-8", "replace"))
        return None
    finally:
        os.close(fd)  # releases the probe's lock at once


_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _open_existing(dir_fd: int) -> int | None:
    """The lock file, opened without following a link; None when there is none yet."""
    try:
        return os.open(LAUNCHER_LOCK, _FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None


def _create(dir_fd: int) -> int:
    """A new lock file (mode 0644, whatever the umask), or the one another launcher made just now."""
    try:
        fd = os.open(LAUNCHER_LOCK, _FLAGS | os.O_CREAT | os.O_EXCL, ARTIFACT_MODE, dir_fd=dir_fd)
    except FileExistsError:
        return os.open(LAUNCHER_LOCK, _FLAGS, dir_fd=dir_fd)
    os.fchmod(fd, ARTIFACT_MODE)  # a later launcher of the folder's owner reads and writes it too
    return fd


def _opened(out_dir: Path, path: Path, opener: Callable[[int], T], dir_fd: int) -> T:
    try:
        return opener(dir_fd)
    except OSError as err:
        raise UsageError(f"--out-dir {out_dir}: cannot open the launcher's lock file {path}: {err.strerror} (a "
                         "link, a folder, or not this user's to write): remove it or pass another --out-dir") from err


def _locked(out_dir: Path, path: Path, fd: int) -> int:
    """``fd`` locked; InfraError when another launcher holds it (``fd`` is then closed)."""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"--out-dir {out_dir}: {path} is not a regular file; remove it")
        if st.st_nlink != 1:  # writing it would write another file of that name elsewhere
            raise UsageError(f"--out-dir {out_dir}: {path} is a hard link (another file has it too); remove it")
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
def hold(folder: OutDir, check: Callable[[], None] | None = None) -> Iterator[HeldLock]:
    """The launcher's exclusive lock on the output folder, for the life of the block.

    InfraError (exit 6) when another launcher or a harness run holds the folder; either is found
    before the lock file is created or written, so a refused launcher changes nothing there.
    ``check`` (which must change nothing) runs once neither holds it, before the lock file is made."""
    out_dir = folder.path
    path = out_dir / LAUNCHER_LOCK
    existing = _opened(out_dir, path, _open_existing, folder.fd)
    fd = _locked(out_dir, path, existing) if existing is not None else None
    try:
        harness = _harness_holder(folder.fd)
        if harness is not None:
            raise InfraError(f"--out-dir {out_dir} is in use by a harness run ({harness}); wait for it to finish "
                             "or pass another --out-dir")
        if check is not None:
            check()
        if fd is None:  # the first launcher here (one that made the file just before us holds it: refused)
            fd = _locked(out_dir, path, _opened(out_dir, path, _create, folder.fd))
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        yield HeldLock(out_dir, fd)
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock
