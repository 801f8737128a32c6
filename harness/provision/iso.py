"""Writing the media: an ISO 9660 image with Joliet names (pycdlib), or a plain folder.

Windows reads the Joliet names, which keep the files' real (long, mixed-case) names. The ISO 9660
names beside them are only for readers without Joliet: upper case, ``A-Z 0-9 _``, at most 30
characters, made unique per folder.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath

import pycdlib
from pycdlib.pycdlibexception import PyCdlibException

from harness.errors import UsageError
from harness.provision import layout
from harness.provision.media import Media

_NOT_D_CHARS = re.compile(r"[^A-Z0-9_]")
_ISO_MAX_FILE = 30
_ISO_MAX_DIR = 31


def _iso_name(name: str, *, is_dir: bool, taken: set[str]) -> str:
    """A unique ISO 9660 level-3 name for ``name`` among ``taken`` (which it joins)."""
    stem, dot, ext = name.rpartition(".")
    if is_dir or not dot or not stem:
        stem, ext = name, ""
    stem = _NOT_D_CHARS.sub("_", stem.upper()) or "_"
    ext = _NOT_D_CHARS.sub("_", ext.upper())[:3]
    room = _ISO_MAX_DIR if is_dir else _ISO_MAX_FILE - len(ext) - 1
    number = 0
    while True:
        tail = f"_{number}" if number else ""
        candidate = stem[: room - len(tail)] + tail + ("" if is_dir else f".{ext}")
        if candidate not in taken:
            taken.add(candidate)
            return candidate
        number += 1


class _IsoPaths:
    """Maps media paths to ISO 9660 paths, folder by folder."""

    def __init__(self) -> None:
        self._paths: dict[PurePosixPath, str] = {PurePosixPath("."): ""}
        self._taken: dict[PurePosixPath, set[str]] = {}

    def add(self, path: PurePosixPath, *, is_dir: bool) -> str:
        parent = self._paths[path.parent]
        name = _iso_name(path.name, is_dir=is_dir, taken=self._taken.setdefault(path.parent, set()))
        self._paths[path] = f"{parent}/{name}"
        return self._paths[path] + ("" if is_dir else ";1")


def write_iso(media: Media, target: Path) -> None:
    """Write ``media`` to ``target`` as an ISO (atomically: a temporary file renamed into place)."""
    check_iso_target(target)
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, vol_ident=layout.VOLUME_ID)
    paths = _IsoPaths()
    try:
        for folder in media.directories():
            iso.add_directory(paths.add(folder, is_dir=True), joliet_path=f"/{folder}")
        for item in media.files:
            iso_path, joliet_path = paths.add(item.path, is_dir=False), f"/{item.path}"
            if isinstance(item.source, bytes):
                iso.add_fp(io.BytesIO(item.source), len(item.source), iso_path, joliet_path=joliet_path)
            else:
                iso.add_file(str(item.source), iso_path, joliet_path=joliet_path)
        _write_atomically(iso, target)
    except PyCdlibException as err:
        raise UsageError(f"cannot build the provisioning ISO {target}: {err}") from err
    except OSError as err:
        raise UsageError(f"cannot write the provisioning ISO {target}: {err}") from err
    finally:
        iso.close()


def _write_atomically(iso: pycdlib.PyCdlib, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    try:
        iso.write(temp)
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    finally:
        Path(temp).unlink(missing_ok=True)


# A folder holding either file holds earlier media (the first name is the one this harness used before).
_EARLIER_MEDIA = (layout.DESCRIPTION, layout.MARKER)


def check_tree_target(target: Path) -> None:
    """``target`` can take the media: missing, empty, or holding earlier media (which gets replaced)."""
    if target.exists() and not target.is_dir():
        raise UsageError(f"--output-dir is not a folder: {target}")
    holds_media = any((target / name).is_file() for name in _EARLIER_MEDIA)
    if target.is_dir() and any(target.iterdir()) and not holds_media:
        raise UsageError(f"--output-dir is not empty and holds no earlier provisioning media: {target}")


def check_iso_target(target: Path) -> None:
    """``target`` can take the ISO: a file or nothing, not a folder."""
    if target.is_dir():
        raise UsageError(f"--output-iso is a folder, not a file path: {target}")


def write_tree(media: Media, target: Path) -> None:
    """Write ``media`` as files under ``target``: missing or empty, or holding earlier media (replaced)."""
    check_tree_target(target)
    try:
        if (target / layout.MEDIA_ROOT).exists():
            shutil.rmtree(target / layout.MEDIA_ROOT)
        target.mkdir(parents=True, exist_ok=True)
        for item in media.files:
            dest = target / item.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(item.source, bytes):
                dest.write_bytes(item.source)
            else:
                shutil.copyfile(item.source, dest)
    except OSError as err:
        raise UsageError(f"cannot write the provisioning media to {target}: {err}") from err
