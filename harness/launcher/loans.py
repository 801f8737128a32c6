"""Who a lent output folder goes back to, kept where the borrower cannot reach it.

While a root caller's folder is lent, uid 10001 owns it and may delete or replace anything in it,
so nothing in it can say whom the folder belongs to. The owner is recorded instead in a folder of
root's own, outside every output folder: ``/var/lib/aero-win7-docker`` (``$AERO_WIN7_DOCKER_STATE_DIR``
overrides it), one file per lent folder, named by its device and inode, holding its path and owner.
A launcher killed while its folder was lent (``kill -9``) leaves its record; the next root launcher
of that folder gives the folder back to the recorded owner, and only while the folder is still the
borrower's and at the same path (a record of a folder since removed, whose inode was reused, is
ignored). The record goes once the folder is given back whole.

The state folder and every folder above it must be root's and writable by nobody else (a sticky
folder such as ``/tmp`` above it is fine); otherwise the launcher refuses to lend (INFRA).
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from harness.errors import InfraError
from harness.launcher.outdir import open_dir_nofollow
from harness.logsetup import get_logger

STATE_ENV = "AERO_WIN7_DOCKER_STATE_DIR"
DEFAULT_STATE_DIR = Path("/var/lib/aero-win7-docker")
log = get_logger("launcher.loans")


def _name(identity: tuple[int, int]) -> str:
    return f"loan-{identity[0]}-{identity[1]}.json"


@dataclass(frozen=True)
class Records:
    """The state folder of root's loans (checked when made, and again at each use)."""

    path: Path

    def _open(self) -> int:
        def trusted(where: Path, st: os.stat_result) -> None:
            sticky = where != self.path and st.st_mode & stat.S_ISVTX  # /tmp: nobody renames root's folder in it
            if st.st_uid != 0 or (st.st_mode & 0o022 and not sticky):
                why = "not root's" if st.st_uid != 0 else "writable by others"
                raise InfraError(f"the launcher's state folder {self.path} is not safe to keep root's records in: "
                                 f"{where} is {why} (uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}); fix it "
                                 f"or set {STATE_ENV}")

        try:
            return open_dir_nofollow(self.path, trusted)
        except OSError as err:
            raise InfraError(f"cannot open the launcher's state folder {self.path}: {err.strerror} (a link, or "
                             f"not a folder); fix it or set {STATE_ENV}") from err

    def record(self, identity: tuple[int, int], folder: Path, owner: tuple[int, int]) -> None:
        """Note ``owner`` for the folder ``identity`` at ``folder`` (replacing an earlier record)."""
        fd = self._open()
        try:
            data = json.dumps({"path": str(folder), "owner": list(owner), "pid": os.getpid()}).encode()
            tmp = f".loan.{secrets.token_hex(8)}.tmp"
            tmp_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                             dir_fd=fd)
            try:
                try:
                    os.write(tmp_fd, data + b"\n")
                    os.fsync(tmp_fd)
                finally:
                    os.close(tmp_fd)
                os.replace(tmp, _name(identity), src_dir_fd=fd, dst_dir_fd=fd)
            except BaseException:
                os.unlink(tmp, dir_fd=fd)
                raise
        except OSError as err:
            raise InfraError(f"cannot record the owner of --out-dir {folder} in {self.path}: {err.strerror}") from err
        finally:
            os.close(fd)

    def recorded(self, identity: tuple[int, int], folder: Path) -> tuple[int, int] | None:
        """The owner recorded for the folder ``identity`` at ``folder``, if any."""
        fd = self._open()
        try:
            try:
                entry = os.open(_name(identity), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
            except FileNotFoundError:
                return None
            try:
                st = os.fstat(entry)
                if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_nlink != 1:
                    return None
                data = json.loads(os.pread(entry, 4096, 0))
            finally:
                os.close(entry)
        except (OSError, ValueError) as err:
            log.warning("ignored the unreadable record of %s in %s: %s", folder, self.path, err)
            return None
        finally:
            os.close(fd)
        if not isinstance(data, dict) or data.get("path") != str(folder):
            return None
        owner = data.get("owner")
        if not isinstance(owner, list) or len(owner) != 2 or not all(isinstance(n, int) and n >= 0 for n in owner):
            return None
        return int(owner[0]), int(owner[1])

    def clear(self, identity: tuple[int, int]) -> None:
        """The folder is back with its owner: its record goes (a failure is logged: the folder is back,
        and a record left over is believed only while the folder is the borrower's)."""
        try:
            fd = self._open()
        except InfraError as err:
            log.warning("could not remove the record %s: %s", _name(identity), err.detail)
            return
        try:
            os.unlink(_name(identity), dir_fd=fd)
        except FileNotFoundError:
            pass
        except OSError as err:
            log.warning("could not remove the record %s in %s: %s", _name(identity), self.path, err.strerror)
        finally:
            os.close(fd)


def records() -> Records:
    """The state folder (made, root's and mode 0700, when missing); InfraError when it is unsafe."""
    path = Path(os.environ.get(STATE_ENV) or DEFAULT_STATE_DIR)
    if not path.is_absolute() or ".." in path.parts:
        raise InfraError(f"{STATE_ENV}={path} is not an absolute path without '..'")
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        raise InfraError(f"cannot create the launcher's state folder {path}: {err.strerror}") from err
    found = Records(path)
    os.close(found._open())
    return found
