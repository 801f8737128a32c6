"""A root caller's output folder: lent to the image's user for the run, then given back.

A root caller's container runs as the image's own user (10001), which must write the output
folder. The launcher lends it the folder (and the harness's own files at its top) and, once the
container has ended, on every way out (a verdict, a failure, an interrupt, an engine that went
away), gives the folder back to the owner it had (the folder first, so that a container still
alive can add nothing more at its top) and hands every file and folder in it that the image's
user owns (what the container made or changed) to that owner, never following a link, never a
file that has another name too (a hard link: its other name may be outside the folder). Whom the
folder goes back to is recorded outside it (``loans``), never in a file the borrower could replace;
a launcher lock file at the top that is not the one the launcher holds was planted, and is removed.

Lending a folder lets its borrower delete or replace anything in it, and the files it leaves
there end up owned by the folder's owner. So only a folder that is the harness's is lent: one
that holds anything but the harness's artifacts (the caller's home, a project folder, the disk
image's folder) is refused before anything changes, with a hint to use a new or empty folder.
The harness's artifacts are regular files of one name (no link, no hard link) with its names
(``serial.log``, ``results.json``..., their temporary siblings), the launcher's, the fleet's
(``case.json``, ``console.log``), the files this run's own flags name, and folders, whatever their
names, that hold nothing else (an earlier ``selfcheck``'s folder), except at the top a folder with
the name of a file written there; never the disk image, whatever its name. Everything is done
through the launcher's descriptor of the folder (``outdir``), not its path.
"""

from __future__ import annotations

import itertools
import os
import signal
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from harness.errors import UsageError
from harness.fleet.record import CASE_JSON, CONSOLE_LOG
from harness.launcher import loans
from harness.launcher.outdir import OutDir
from harness.launcher.outlock import LAUNCHER_LOCK, HeldLock
from harness.logsetup import get_logger
from harness.outputs import ARTIFACTS

IMAGE_USER = (10001, 10001)  # the image's own user (Dockerfile): what a root caller's container runs as
LAUNCHER_LOG = "launcher.log"
HARNESS_FILES = ARTIFACTS  # what the harness in the container writes, and so needs to own
LAUNCHER_FILES = (LAUNCHER_LOG, LAUNCHER_LOCK)  # written on the host, by the launcher itself
OWN_NAMES = frozenset((*HARNESS_FILES, *LAUNCHER_FILES, CASE_JSON, CONSOLE_LOG))
MAX_DEPTH = 3  # how deep an artifacts-only folder inside the output folder may go
MAX_ENTRIES = 2000  # more than this is not an output folder
SHOWN = 3  # foreign names quoted in the refusal
log = get_logger("launcher.ownership")


def _own_name(name: str, allowed: frozenset[str]) -> bool:
    """One of the harness's names, or the temporary sibling of one (``.results.json.x1y2.tmp``)."""
    if name in allowed:
        return True
    return name.startswith(".") and name.endswith((".tmp", ".partial")) and \
        any(name.startswith(f".{own}.") for own in allowed)


def _not_one_file(st: os.stat_result) -> str | None:
    """Why an entry cannot be one of the harness's files: only a regular file of one name can be."""
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_nlink != 1:
        return "a hard link"
    return None


_WRITTEN = frozenset((*HARNESS_FILES, *LAUNCHER_FILES))  # files made at the top: never a folder there
_SUBDIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _foreign(dir_fd: int, allowed: frozenset[str], written: frozenset[str], depth: int, budget: list[int],
             kept: tuple[int, int] | None) -> list[str]:
    """The entries of the folder ``dir_fd`` (relative names) that are not the harness's; links are not
    followed. The harness's: a regular file of one name (no hard link) with one of its names, and a
    folder, whatever its name, holding only such files, except at the top a folder where a file is
    written (``written``: the harness's, the launcher's, this run's). ``kept``: the (device, inode) of a
    file that is never the harness's, whatever its name."""
    found: list[str] = []
    with os.scandir(dir_fd) as scan:
        entries = sorted(itertools.islice(scan, max(0, budget[0]) + 1), key=lambda entry: entry.name)
        for entry in entries:
            budget[0] -= 1
            if budget[0] < 0:
                return [*found, f"more than {MAX_ENTRIES} entries"]
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                if entry.name in written:
                    found.append(f"{entry.name}/ (a folder where a file is written)")
                elif depth < MAX_DEPTH:
                    inner_fd = os.open(entry.name, _SUBDIR_FLAGS, dir_fd=dir_fd)
                    try:
                        inner = _foreign(inner_fd, OWN_NAMES, frozenset(), depth + 1, budget, kept)
                    finally:
                        os.close(inner_fd)
                    found += [f"{entry.name}/{name}" for name in inner]
                else:
                    found.append(entry.name + "/")
                continue
            why = _not_one_file(st)
            if _own_name(entry.name, allowed) and why is None and (st.st_dev, st.st_ino) != kept:
                continue
            found.append(entry.name + (f" ({why})" if why is not None and _own_name(entry.name, allowed) else ""))
    return found


def check_lendable(folder: OutDir, run_names: Iterable[str] = (), keep: Path | None = None) -> None:
    """UsageError (exit 2) unless the output folder may be lent to the image's user; reads, changes nothing.

    ``run_names``: the files this run's flags put at the top of the folder (``--serial-log
    OUT/com1.log`` is ``com1.log``; a root caller's flags may name no file deeper, ``mounts``).
    ``keep``: the disk image, never the harness's even when it has one of the harness's names."""
    out_dir = folder.path
    names = frozenset(run_names)
    allowed = OWN_NAMES | names
    try:
        kept = None
        if keep is not None:
            st = keep.stat()
            kept = (st.st_dev, st.st_ino)
        foreign = _foreign(folder.fd, allowed, _WRITTEN | names, 1, [MAX_ENTRIES], kept)
    except OSError as err:
        raise UsageError(f"--out-dir {out_dir} cannot be read: {err.strerror}") from err
    if foreign:
        shown = ", ".join(foreign[:SHOWN]) + (f" and {len(foreign) - SHOWN} more" if len(foreign) > SHOWN else "")
        raise UsageError(f"--out-dir {out_dir} holds files that are not the harness's ({shown}): a root caller's "
                         f"output folder is lent to the container's user (uid {IMAGE_USER[0]}) for the run, who "
                         "could change or replace them; pass a new or empty folder (or run aero-win7-docker as a "
                         "normal user)")


@dataclass
class Loan:
    """The output folder lent to the image's user; ``give_back`` returns it (and what was made in it)."""

    out_dir: Path
    dir_fd: int  # the folder itself, whatever happens to its path meanwhile
    identity: tuple[int, int]  # the folder's (st_dev, st_ino): the key of its record
    owner: tuple[int, int]
    lock: HeldLock
    records: loans.Records
    own: frozenset[tuple[int, int]]  # the launcher's own files in it (its lock file, launcher.log)
    borrower: tuple[int, int] = IMAGE_USER

    def give_back(self) -> None:
        """The folder to its owner, and every entry the borrower owns (links themselves, never their
        targets) to the folder's owner. SIGINT and SIGTERM wait until it is done: an interrupt must
        not leave half the files lent. A failure on one entry is logged and the rest still goes back."""
        with _signals_deferred():
            try:
                failures = self._give_back()
            finally:
                os.close(self.dir_fd)
            if not failures:
                self.records.clear(self.identity)
            else:
                log.warning("could not give %d entries of %s back to uid %d (first: %s); the next run as root gives "
                            "them back", len(failures), self.out_dir, self.owner[0], failures[0],
                            extra={"out_dir": str(self.out_dir), "failures": failures[:20]})

    def _planted_lock(self, st: os.stat_result) -> bool:
        """Whether the launcher's lock file at the top is not the one this launcher holds: put there by
        the borrower, it is removed, never given to the owner nor believed."""
        if (st.st_dev, st.st_ino) == self.lock.identity:
            return False
        try:
            os.unlink(LAUNCHER_LOCK, dir_fd=self.dir_fd)
            log.warning("removed %s from %s: not the launcher's own lock file (the container's user replaced it)",
                        LAUNCHER_LOCK, self.out_dir, extra={"out_dir": str(self.out_dir)})
        except FileNotFoundError:
            pass
        except OSError as err:  # a folder: left as it is, lent
            log.warning("left %s in %s: not the launcher's own lock file, and it cannot be removed: %s",
                        LAUNCHER_LOCK, self.out_dir, err.strerror, extra={"out_dir": str(self.out_dir)})
        return True

    def _give_back(self) -> list[str]:
        uid, gid = self.owner
        failures: list[str] = []
        linked: list[str] = []
        given = 0
        try:  # first: from here on the borrower (a container still alive) can add nothing at the top
            os.chown(self.dir_fd, uid, gid)
        except OSError as err:
            failures.append(f".: {err.strerror}")
        for folder, dirs, files, fd in os.fwalk(".", dir_fd=self.dir_fd, follow_symlinks=False):
            for name in (*dirs, *files):
                where = os.path.normpath(os.path.join(folder, name))
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if folder == "." and name == LAUNCHER_LOCK and self._planted_lock(st):
                        continue
                    lent = st.st_uid == self.borrower[0]
                    mine = folder == "." and (st.st_dev, st.st_ino) in self.own and st.st_nlink == 1
                    if lent and not stat.S_ISDIR(st.st_mode) and not stat.S_ISLNK(st.st_mode) and st.st_nlink != 1:
                        linked.append(where)  # its other name may be outside the folder: not the owner's to get
                        continue
                    if lent or mine:
                        os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)  # the kernel drops set-id bits
                        given += lent
                except FileNotFoundError:
                    continue
                except OSError as err:
                    failures.append(f"{where}: {err.strerror}")
        if linked:
            log.warning("left %d hard links in %s with uid %d (first: %s): a file with another name elsewhere is "
                        "not given to the folder's owner", len(linked), self.out_dir, self.borrower[0], linked[0],
                        extra={"out_dir": str(self.out_dir), "hard_links": linked[:20]})
        log.debug("gave %s back to uid %d gid %d (%d entries the container's user owned)", self.out_dir, uid, gid,
                  given, extra={"out_dir": str(self.out_dir), "owner": f"{uid}:{gid}", "entries": given})
        return failures


def _lend_file(fd: int, name: str, borrower: tuple[int, int]) -> str | None:
    """One of the harness's files at the top lent to ``borrower``; why it cannot be, if it cannot."""
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    why = _not_one_file(st)
    if why is not None:
        return why
    if (st.st_uid, st.st_gid) == borrower:
        return None
    entry = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, dir_fd=fd)
    try:
        now = os.fstat(entry)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or _not_one_file(now) is not None:
            return "replaced while it was lent"
        os.fchown(entry, *borrower)  # the very file checked, whatever its name is by now
    finally:
        os.close(entry)
    return None


def lend(folder: OutDir, lock: HeldLock, borrower: tuple[int, int] = IMAGE_USER,
         records: loans.Records | None = None) -> Loan:
    """Lend the output folder (checked by ``check_lendable``, locked by ``lock``) and the harness's
    files at its top to ``borrower``; the caller must ``give_back`` the returned loan on every way
    out (a failure here gives back what was lent before it raises).

    The owner it goes back to: the folder's owner now; when that is the borrower (the folder was
    left lent), the owner a root launcher recorded for it (``loans``), else the caller."""
    out_dir = folder.path
    records = records if records is not None else loans.records()
    fd = os.dup(folder.fd)
    try:
        st = os.fstat(fd)
        identity = (st.st_dev, st.st_ino)
        owner = (st.st_uid, st.st_gid)
        if owner[0] == borrower[0]:
            owner = records.recorded(identity, out_dir) or (os.getuid(), os.getgid())
            if owner[0] == borrower[0]:
                owner = (os.getuid(), os.getgid())
        own = {lock.identity}
        try:
            log_st = os.stat(LAUNCHER_LOG, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISREG(log_st.st_mode):
                own.add((log_st.st_dev, log_st.st_ino))
        except FileNotFoundError:
            pass
        records.record(identity, out_dir, owner)
    except BaseException:
        os.close(fd)
        raise
    loan = Loan(out_dir, fd, identity, owner, lock, records, frozenset(own), borrower)
    try:
        name = "."
        try:
            if (st.st_uid, st.st_gid) != borrower:
                os.chown(fd, *borrower)
            for name in HARNESS_FILES:
                why = _lend_file(fd, name, borrower)
                if why is not None:
                    raise UsageError(f"cannot lend --out-dir {out_dir} to the container's user (uid {borrower[0]}): "
                                     f"{name} is {why}; remove it or pass a new or empty folder")
        except OSError as err:
            raise UsageError(f"cannot lend --out-dir {out_dir} to the container's user (uid {borrower[0]}): "
                             f"{name}: {err.strerror}") from err
    except BaseException:
        loan.give_back()
        raise
    log.info("lent %s to uid %d for the run (it goes back to uid %d gid %d)", out_dir, borrower[0], *owner,
             extra={"out_dir": str(out_dir), "owner": f"{owner[0]}:{owner[1]}", "borrower": borrower[0]})
    return loan


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM held back for the block, then delivered to the handlers that were in place."""
    pending: list[int] = []

    def defer(signum: int, _frame: FrameType | None) -> None:
        pending.append(signum)

    try:
        previous = {signum: signal.signal(signum, defer) for signum in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: signals are not this thread's to handle
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if pending:
            signal.raise_signal(pending[0])
