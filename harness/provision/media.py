"""The provisioning media's content: which file goes where, checked against what Windows accepts.

Everything is checked and generated here, before anything is written: bad input leaves no media.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from harness.errors import UsageError
from harness.provision import description, flags, layout, manifest
from harness.provision.infs import Inf, InfSelection, select_infs
from harness.provision.request import ProvisionRequest
from harness.provision.script import ScriptOptions, render
from harness.provision.task import TaskDefinition, define_task

JOLIET_MAX_NAME = 64
_BAD_NAME_CHARS = re.compile(r'[<>:"/\\|?*;\x00-\x1f\x7f]')
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{n}" for n in range(1, 10)), *(f"LPT{n}" for n in range(1, 10))}


@dataclass(frozen=True)
class MediaFile:
    path: PurePosixPath  # on the media, with its real (Joliet) name
    source: Path | bytes  # a host file to copy, or generated content


@dataclass(frozen=True)
class Media:
    files: tuple[MediaFile, ...]

    def directories(self) -> list[PurePosixPath]:
        """Every folder the files need, parents first."""
        found = {parent for f in self.files for parent in f.path.parents if parent != PurePosixPath(".")}
        return sorted(found, key=lambda p: (len(p.parts), p.parts))


@dataclass(frozen=True)
class MediaPlan:
    """The media, and what it was made to do (for the console)."""

    media: Media
    infs: InfSelection
    task: TaskDefinition


def check_name(name: str, where: Path) -> None:
    """A file or folder name must be usable on the media (Joliet) and by Windows."""
    problem = None
    if len(name) > JOLIET_MAX_NAME:
        problem = f"longer than {JOLIET_MAX_NAME} characters"
    elif bad := _BAD_NAME_CHARS.search(name):
        problem = f"holds {bad.group()!r}, which Windows or Joliet does not allow"
    elif name.endswith((" ", ".")):
        problem = "ends in a space or a dot"
    elif any(ord(ch) > 0xFFFF for ch in name):
        problem = "holds a character outside the Basic Multilingual Plane"
    elif name.split(".")[0].upper() in _RESERVED:
        problem = "is a reserved device name on Windows"
    if problem is not None:
        raise UsageError(f"cannot put {where} on the provisioning media: its name {name!r} {problem}")


def _readable_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise UsageError(f"{what} is not a file: {path}")
    if not os.access(path, os.R_OK):
        raise UsageError(f"{what} is not readable: {path}")
    return path


def _read_selftest(path: Path) -> bytes:
    """The selftest's bytes (read once, so the manifest's hash is the hash of what lands on the media)."""
    _readable_file(path, "--selftest-exe")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UsageError(f"cannot read --selftest-exe {path}: {err}") from err
    if data[:2] != b"MZ":
        raise UsageError(f"--selftest-exe is not a Windows executable (no MZ header): {path}")
    return data


def driver_files(drivers_dir: Path) -> list[tuple[PurePosixPath, Path]]:
    """(path relative to the drivers folder, host file) for every file under ``drivers_dir``, sorted."""
    if not drivers_dir.is_dir():
        raise UsageError(f"--drivers-dir is not a folder: {drivers_dir}")
    found: list[tuple[PurePosixPath, Path]] = []
    for root, dirs, files in os.walk(drivers_dir):
        dirs.sort()
        for name in sorted(files):
            host = Path(root) / name
            rel = PurePosixPath(host.relative_to(drivers_dir).as_posix())
            found.append((rel, _readable_file(host, "a driver file")))
    _check_names(drivers_dir, [rel for rel, _ in found])
    if not any(rel.suffix.lower() == ".inf" for rel, _ in found):
        raise UsageError(f"--drivers-dir holds no .inf file: {drivers_dir}")
    return found


def _check_names(base: Path, paths: list[PurePosixPath]) -> None:
    """Each name valid, and no two siblings whose names differ only by case (Windows would merge them)."""
    seen: dict[tuple[str, ...], PurePosixPath] = {}
    for rel in paths:
        for depth in range(1, len(rel.parts) + 1):
            partial = PurePosixPath(*rel.parts[:depth])
            check_name(partial.name, base / partial)
            key = tuple(part.casefold() for part in partial.parts)
            other = seen.setdefault(key, partial)
            if other != partial:
                raise UsageError(f"{base / other} and {base / partial} differ only by case; Windows cannot hold both")


def build_media(request: ProvisionRequest, version: str) -> MediaPlan:
    """Check the inputs and lay out the media: marker, description, selftest, drivers, script, manifest."""
    flags.check(request.options)
    steps = request.steps
    selftest = _read_selftest(request.selftest_exe)
    sha256 = hashlib.sha256(selftest).hexdigest()
    drivers = driver_files(request.drivers_dir)
    infs = [Inf(rel, host) for rel, host in drivers if rel.suffix.lower() == ".inf"]
    chosen = select_infs(infs, request.drivers_dir, allow_list=steps.inf_allow_list,
                         install_all=steps.install_all_infs,
                         transitional_snd=request.options.allow_virtio_snd_transitional)
    task = define_task(request.options, version)
    script = render(ScriptOptions(task, tuple(layout.DRIVERS / rel for rel in chosen.selected),
                                  steps.enable_test_signing, steps.auto_reboot,
                                  steps.enable_virtio_input_compat_id_name), version).encode("ascii")
    record = manifest.manifest(options=request.options, steps=steps, infs=chosen, selftest_sha256=sha256,
                               task=task, version=version)
    text = description.description(description.Contents(request.options, steps, chosen, sha256, task, version))
    files = [
        MediaFile(layout.MARKER, description.marker(version)),
        MediaFile(layout.DESCRIPTION, text),
        MediaFile(layout.SELFTEST, selftest),
        *(MediaFile(layout.DRIVERS / rel, host) for rel, host in drivers),
        MediaFile(layout.SCRIPT, script),
        MediaFile(layout.MANIFEST, manifest.render(record)),
    ]
    if task.xml is not None:
        files.append(MediaFile(layout.TASK_XML, task.xml))
    return MediaPlan(Media(tuple(files)), chosen, task)
