"""The output folder opened once, and every later step of the launcher done through that descriptor.

The plan resolves ``--out-dir`` to a real path; between that and the container's bind mount the
launcher checks the folder, locks it, removes old reports, writes ``launcher.log`` and, for a root
caller, lends it. A user who controls a folder above it could meanwhile swap a component for a
link to another folder, and root would then check, chown and mount that one. So the folder is
opened once, component by component, following no link (``pinned``), and the checks, the lock,
the removals and the chowns go through the descriptor (``dir_fd``, ``os.scandir(fd)``). The
engine can only be given a path: it is compared with the descriptor (device and inode) just before
the container is created and once it has started (the bind mount is made then); a folder that is
no longer the one the launcher holds is one INFRA line, and the container goes.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.errors import InfraError, UsageError

_CHANGED = (errno.ELOOP, errno.ENOTDIR, errno.ENOENT)


@dataclass(frozen=True)
class OutDir:
    """The output folder: its resolved path (what the engine mounts) and the folder itself."""

    path: Path
    fd: int
    identity: tuple[int, int]  # (st_dev, st_ino) of the folder the launcher opened

    @property
    def via_fd(self) -> Path:
        """A path that reaches this very folder whatever becomes of ``path`` (for code that opens by name)."""
        return Path(f"/proc/self/fd/{self.fd}")

    def verify(self, when: str) -> None:
        """InfraError unless ``path`` (as the engine would follow it) still leads to this folder."""
        try:
            st = os.stat(self.path)
        except OSError as err:
            raise InfraError(f"--out-dir {self.path} is gone {when} ({err.strerror}): the folder the launcher "
                             "checked and locked was moved; the run is refused") from err
        if (st.st_dev, st.st_ino) != self.identity:
            raise InfraError(f"--out-dir {self.path} was replaced {when}: it no longer leads to the folder the "
                             "launcher checked and locked (a folder above it moved or became a link); the run "
                             "is refused")


def open_dir_nofollow(path: Path, check: Callable[[Path, os.stat_result], None] | None = None) -> int:
    """``path`` (absolute, with no link in it) opened component by component, none followed; ``check``
    sees each folder on the way (``/`` first) and may raise. OSError as the kernel said it (ELOOP or
    ENOTDIR for a component that is a link or not a folder)."""
    if not path.is_absolute():
        raise ValueError(f"not an absolute path: {path}")
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        here = Path("/")
        if check is not None:
            check(here, os.fstat(fd))
        parts = path.parts[1:]
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_RDONLY if last else os.O_PATH)
            try:
                inner = os.open(part, flags, dir_fd=fd)
            except PermissionError:
                if not last:
                    raise
                inner = os.open(part, os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_PATH, dir_fd=fd)
            os.close(fd)
            fd = inner
            here = here / part
            st = os.fstat(fd)
            if not stat.S_ISDIR(st.st_mode):  # O_PATH | O_NOFOLLOW would open a link itself
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(here))
            if check is not None:
                check(here, st)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextmanager
def pinned(path: Path) -> Iterator[OutDir]:
    """The output folder at ``path`` (resolved by the plan, existing), open for the life of the block."""
    try:
        fd = open_dir_nofollow(path)
    except OSError as err:
        if err.errno in _CHANGED:
            raise InfraError(f"--out-dir {path} changed after it was checked ({err.strerror}: a folder on its "
                             "path moved or became a link); the run is refused") from err
        raise UsageError(f"cannot open --out-dir {path}: {err.strerror}") from err
    try:
        st = os.fstat(fd)
        folder = OutDir(path, fd, (st.st_dev, st.st_ino))
        folder.verify("while the launcher opened it")
        yield folder
    finally:
        os.close(fd)
