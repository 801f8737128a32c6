"""The provisioning media's content: which file goes where, checked against what Windows accepts."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from harness.errors import UsageError
from harness.provision import layout
from harness.provision.script import ScriptOptions, SelftestFlags, render

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
class ProvisionRequest:
    selftest_exe: Path
    drivers_dir: Path
    flags: SelftestFlags
    enable_test_signing: bool = False
    auto_reboot: bool = False


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


def _check_selftest(path: Path) -> None:
    _readable_file(path, "--selftest-exe")
    with path.open("rb") as exe:
        if exe.read(2) != b"MZ":
            raise UsageError(f"--selftest-exe is not a Windows executable (no MZ header): {path}")


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


def build_media(request: ProvisionRequest, version: str) -> Media:
    """Check the inputs and lay out the media: marker, selftest, drivers and provision.cmd."""
    _check_selftest(request.selftest_exe)
    drivers = [(layout.DRIVERS / rel, host) for rel, host in driver_files(request.drivers_dir)]
    infs = tuple(path for path, _ in drivers if path.suffix.lower() == ".inf")
    options = ScriptOptions(request.flags, infs, request.enable_test_signing, request.auto_reboot)
    script = render(options, version).encode("ascii")
    marker = (
        f"Aero Windows 7 virtio test provisioning media, made by aero-win7-harness {version}.\r\n"
        f"Inside the guest, run {layout.on_media(layout.SCRIPT)} as administrator.\r\n"
    ).encode("ascii")
    return Media((
        MediaFile(layout.MARKER, marker),
        MediaFile(layout.SELFTEST, request.selftest_exe),
        *(MediaFile(path, host) for path, host in drivers),
        MediaFile(layout.SCRIPT, script),
    ))
