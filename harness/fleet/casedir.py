"""A case's out dir, made ready before the case runs: created when missing (by this process, so
as its own user), never through a symbolic link, and emptied of an earlier run's verdicts
(``results.json``, ``junit.xml``, ``report.html``, ``screenshot.png``, ``case.json``,
``console.log``): a run that ends before it writes its own (a USAGE exit, a killed container, a
pod that died) must leave nothing a merge could take for its verdict. ``matrix run`` (each case's
``OUT/<case>``) and ``matrix exec`` (a Kubernetes pod's ``case-<index>``) both call ``prepare``.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.errors import UsageError
from harness.fleet.record import CASE_JSON, CONSOLE_LOG
from harness.outputs import STALE_REPORTS

STALE = (*STALE_REPORTS, CASE_JSON, CONSOLE_LOG)


def index_folder(index: int) -> str:
    """The folder of a Kubernetes completion index in the shared out volume."""
    return f"case-{index}"


def _who() -> str:
    return f"uid {os.getuid()}, groups {','.join(str(g) for g in sorted({os.getgid(), *os.getgroups()}))}"


def prepare(folder: Path) -> Path:
    """``folder``, existing, writable and without an earlier run's reports; UsageError otherwise."""
    if folder.is_symlink():
        raise UsageError(f"{folder} is a symbolic link: the fleet does not write through links; remove it")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create the case's out dir {folder}: {err.strerror} (this process: {_who()}; "
                         f"{folder.parent} must be writable by it)") from err
    for name in STALE:
        try:
            (folder / name).unlink(missing_ok=True)
        except IsADirectoryError:
            raise UsageError(f"{folder / name} is a folder where an earlier run's report goes: remove it") from None
        except OSError as err:
            raise UsageError(f"cannot remove the earlier run's {name} from {folder}: {err.strerror} (this process: "
                             f"{_who()}; {folder} must be writable by it)") from err
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"the case's out dir {folder} is not writable by this process ({_who()})")
    return folder
