"""The files a run writes: which they are, the checks that keep them from destroying anything, and
how they are written.

Every output path is checked before anything boots: it must be a regular file or not exist yet, it
must not be the disk image or a file of its backing chain (by path or by inode: a hard link counts),
two outputs must not be one file, and a symbolic link where an output goes is refused. Files are
then written by replacing, never by writing into an existing inode: the old name is removed and
a new file is created with ``O_EXCL | O_NOFOLLOW``, or a temporary file is renamed into place, so
neither a planted link nor a hard link can redirect a write onto someone else's data.

One run at a time owns an output folder: ``lock_out_dir`` takes an exclusive lock for the life of
the run, and a second run is refused naming the holder.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import os
import socket
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, overload

from harness.errors import HarnessError, InfraError, UsageError

SERIAL_LOG = "serial.log"
HARNESS_LOG = "harness.log"
QEMU_STDERR_LOG = "qemu.stderr.log"
HTTP_LOG = "http.log"
RESULTS = "results.json"
JUNIT = "junit.xml"
REPORT_HTML = "report.html"
SCREENSHOT = "screenshot.png"
WAV = "virtio-snd.wav"
OVERLAY = "disk-overlay.qcow2"
LOCK = ".aero-win7-harness.lock"
# Every file a run writes in its out-dir under its default name (the launcher lends exactly these).
ARTIFACTS = (SERIAL_LOG, HARNESS_LOG, QEMU_STDERR_LOG, HTTP_LOG, RESULTS, JUNIT, REPORT_HTML, SCREENSHOT, WAV,
             OVERLAY, LOCK)
# A previous run's verdicts: removed when a run starts, so a run that dies cannot leave them behind.
STALE_REPORTS = (RESULTS, JUNIT, REPORT_HTML, SCREENSHOT)
ARTIFACT_MODE = 0o644
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def output_path(value: str) -> Path:
    """argparse ``type=`` of a flag that names a file the run writes (the launcher maps these into
    its output folder). An empty value would be the current folder: refused."""
    return path_arg(value)


def path_arg(value: str) -> Path:
    """argparse ``type=`` of every path flag: ``""`` is a mistake (an unset variable in a script),
    not the current folder, which ``Path("")`` would silently be."""
    if not value.strip():
        raise argparse.ArgumentTypeError("an empty path (give a file or folder, or leave the flag out)")
    return Path(value)


def check_path_text(label: str, path: Path) -> None:
    """A path with a newline or NUL cannot be handed on safely (logs, QEMU options)."""
    if any(c in str(path) for c in "\n\r\0"):
        raise UsageError(f"{label} must not contain a newline or NUL: {str(path)!r}")


@dataclass(frozen=True)
class Protected:
    """Files no output may be: the disk image and its backing chain."""

    paths: frozenset[Path]
    inodes: frozenset[tuple[int, int]]

    @classmethod
    def of(cls, files: Iterable[Path]) -> Protected:
        paths: set[Path] = set()
        inodes: set[tuple[int, int]] = set()
        for path in files:
            paths.add(path.resolve())
            try:
                st = path.stat()
            except OSError:
                continue
            inodes.add((st.st_dev, st.st_ino))
        return cls(frozenset(paths), frozenset(inodes))


def _where(path: Path) -> Path:
    """The path with its folder resolved and its last component kept as it is (it may be a link)."""
    return path.parent.resolve() / path.name


def check_output_file(label: str, path: Path, protected: Protected) -> None:
    """UsageError unless ``path`` may be (re)created by the run; creates nothing."""
    check_path_text(label, path)
    try:
        st = path.lstat()
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise UsageError(f"{label}: directory does not exist: {path.parent}") from None
        st = None
    except OSError as err:
        raise UsageError(f"{label} cannot be reached: {path}: {err.strerror}") from err
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise UsageError(f"{label} is a symbolic link ({path} -> {os.readlink(path)}): the harness does not "
                             "write through links; remove it or pass another path")
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{label} is a directory: {path}")
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{label} is not a regular file (a device, pipe or socket): {path}")
        if (st.st_dev, st.st_ino) in protected.inodes:
            raise UsageError(f"{label} is the disk image or a file of its backing chain (same inode): {path}")
    if _where(path) in protected.paths or path.resolve() in protected.paths:
        raise UsageError(f"{label} is the disk image or a file of its backing chain: {path}")


def check_outputs(files: Iterable[tuple[str, Path]], protected: Protected) -> None:
    """Check every output; two outputs that are one file are refused too."""
    seen: dict[Path, str] = {}
    for label, path in files:
        check_output_file(label, path, protected)
        where = _where(path)
        if where in seen:
            raise UsageError(f"{label} and {seen[where]} are the same file: {path}")
        seen[where] = label


@overload
def open_new(path: Path, *, text: Literal[True]) -> IO[str]: ...
@overload
def open_new(path: Path, *, text: Literal[False] = False) -> IO[bytes]: ...


def open_new(path: Path, *, text: bool = False) -> IO[str] | IO[bytes]:
    """A new file at ``path`` (mode 0644), replacing what was there by name: an earlier file's inode
    is never written to, and a link planted in between makes the open fail instead of being followed."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    fd = os.open(path, _NEW_FILE_FLAGS, ARTIFACT_MODE)
    try:
        os.fchmod(fd, ARTIFACT_MODE)  # whatever the umask: artifacts are for CI uploaders and colleagues
    except OSError:
        os.close(fd)
        raise
    if text:
        return os.fdopen(fd, "w", encoding="utf-8")
    return os.fdopen(fd, "wb")


def write_atomically(path: Path, data: bytes) -> None:
    """Write a temporary file beside ``path`` and rename it into place: a reader (or a run that dies)
    sees the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, ARTIFACT_MODE)
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def partial_file(path: Path) -> Path:
    """A new empty file beside ``path`` with an unpredictable name, for a writer (QEMU) that opens by
    name; ``os.replace`` it onto ``path`` once complete."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.fchmod(fd, ARTIFACT_MODE)
    os.close(fd)
    return Path(tmp)


def clear_stale(out_dir: Path, extra: Iterable[Path] = ()) -> list[str]:
    """Remove a previous run's reports and leftover temporary files; returns what was removed."""
    removed = []
    candidates = [out_dir / name for name in STALE_REPORTS] + list(extra)
    candidates += [p for name in (*STALE_REPORTS, WAV, OVERLAY) for p in out_dir.glob(f".{name}.*")
                   if p.suffix in (".tmp", ".partial")]
    for path in candidates:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path.name)
    return removed


def discard_reports(out_dir: Path, *, dir_fd: int | None = None) -> list[str]:
    """A run refused for bad input leaves no earlier verdict behind to be taken for its own (a CI
    step reading results.json), unless another run owns the folder; returns what it removed, never
    raises. ``dir_fd``: the folder itself, already open (the launcher's), else ``out_dir`` is opened.

    Only what is recognisably an earlier report goes: the refusal may be about a file that merely
    has a report's name (the disk image kept as results.json); a link, a hard link (a file that
    has another name too) or anything but a regular file is left alone, and never read."""
    removed: list[str] = []
    try:
        fd = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) if dir_fd is None else os.dup(dir_fd)
    except OSError:  # none yet, or not a folder
        return removed
    try:
        with lock_out_dir(out_dir, dir_fd=fd):
            for name, signature in _REPORT_SIGNATURES.items():
                head = _head(name, fd)
                if head is None or not signature(head[1]):
                    continue
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if (st.st_dev, st.st_ino) == head[0]:  # still the file read: nothing swapped in meanwhile
                    os.unlink(name, dir_fd=fd)
                    removed.append(name)
    except (OSError, HarnessError):
        return removed
    finally:
        os.close(fd)
    return removed


def _one_file(st: os.stat_result) -> bool:
    """A regular file with no other name (writing or removing it touches nothing elsewhere)."""
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1


def _head(name: str, dir_fd: int) -> tuple[tuple[int, int], bytes] | None:
    """The (device, inode) and first bytes of the file ``name`` in ``dir_fd``, if it is a regular file
    of one name; no link is followed and nothing else (a FIFO, a device) is opened."""
    try:
        if not _one_file(os.stat(name, dir_fd=dir_fd, follow_symlinks=False)):
            return None
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not _one_file(st):
            return None
        return (st.st_dev, st.st_ino), os.pread(fd, 512, 0)
    finally:
        os.close(fd)


_REPORT_SIGNATURES: dict[str, Callable[[bytes], bool]] = {
    RESULTS: lambda head: head.startswith(b'{\n  "verdict": '),
    JUNIT: lambda head: head.startswith(b"<?xml") and b"<testsuites" in head,
    REPORT_HTML: lambda head: head.startswith(b"<!DOCTYPE html>") and b"aero-win7-harness</title>" in head,
}


def unwritable_out_dir(out_dir: Path, err: OSError) -> UsageError:
    return UsageError(f"cannot write to --out-dir {out_dir}: {err.strerror} "
                      f"(uid {os.getuid()}; in Docker, run with --user \"$(id -u):$(id -g)\")")


@contextmanager
def lock_out_dir(out_dir: Path, *, dir_fd: int | None = None) -> Iterator[None]:
    """Hold an exclusive lock on the output folder for the life of the block; InfraError (exit 6)
    naming the holder when another run has it. ``dir_fd``: the folder, already open. The lock file
    is written only when it is a regular file of one name: never through a link or a hard link."""
    path = out_dir / LOCK
    try:
        fd = os.open(LOCK if dir_fd is not None else path,
                     os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, ARTIFACT_MODE,
                     dir_fd=dir_fd)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UsageError(f"--out-dir {out_dir}: {path} is a symbolic link; remove it") from err
        raise unwritable_out_dir(out_dir, err) from err
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"--out-dir {out_dir}: {path} is not a regular file; remove it")
        if st.st_nlink != 1:
            raise UsageError(f"--out-dir {out_dir}: {path} is a hard link (another file has it too); remove it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
            who = f"pid {holder[0]}" + (f" on {holder[1]}" if len(holder) > 1 else "") if holder else "another process"
            raise InfraError(f"--out-dir {out_dir} is in use by another run ({who}); wait for it to finish or "
                             "pass another --out-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
