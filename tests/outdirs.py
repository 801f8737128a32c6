"""Output folders as the launcher's tests look at them: every entry's owner, and the state of a
whole tree, to show that a refused run changed nothing."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

IMAGE_UID = 10001  # the image's own user, what a root caller's container runs as
OWNER = (4242, 4243)  # an owner that is neither root nor the image's user: who the folder goes back to
REPORTS = ("results.json", "junit.xml", "report.html")  # a run's verdict, as CI reads it
PASS_RESULTS = json.dumps({"verdict": "PASS", "token": "PASS", "exit_code": 0}, indent=2) + "\n"


def previous_run(out: Path) -> None:
    """What a finished run left: a PASS verdict (as the harness writes its reports' first bytes) and its logs."""
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(PASS_RESULTS)
    (out / "junit.xml").write_text('<?xml version="1.0" encoding="utf-8"?>\n<testsuites><testsuite/></testsuites>\n')
    (out / "report.html").write_text("<!DOCTYPE html>\n<html><head><title>PASS: PASS · aero-win7-harness</title>\n")
    (out / "screenshot.png").write_bytes(b"\x89PNG")
    (out / "serial.log").write_text("AERO_VIRTIO_SELFTEST|RESULT|PASS\n")


def tree_state(top: Path) -> dict[str, tuple[int, ...]]:
    """Every entry under ``top`` (and ``top`` itself, as ``.``): type, owner, mode, size, inode and
    modification time; links are not followed."""
    state: dict[str, tuple[int, ...]] = {}
    for folder, dirs, files in os.walk(top):
        for name in [".", *dirs, *files] if folder == str(top) else [*dirs, *files]:
            path = Path(folder) / name
            st = path.lstat()
            key = os.path.normpath(os.path.relpath(path, top))
            state[key] = (stat.S_IFMT(st.st_mode), st.st_uid, st.st_gid, st.st_mode, st.st_size, st.st_ino,
                          st.st_mtime_ns)
    return state


def owners(top: Path) -> dict[str, tuple[int, int]]:
    """Each entry's uid and gid (links themselves), ``.`` for ``top``."""
    return {name: (entry[1], entry[2]) for name, entry in tree_state(top).items()}


def lent_entries(top: Path) -> list[str]:
    """The entries still owned by the image's user."""
    return sorted(name for name, (uid, _) in owners(top).items() if uid == IMAGE_UID)
