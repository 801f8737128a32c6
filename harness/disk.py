"""The user's disk image: validate it, and decide how the guest may write without changing it.

Three modes: an overlay qcow2 in the output folder whose backing file is the image (default: the
guest's writes can be inspected after a failure), QEMU's ``snapshot=on`` (writes discarded), or,
only when asked explicitly, the image itself.
"""

from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from harness.errors import InfraError, UsageError
from harness.outputs import OVERLAY, partial_file
from harness.qemu.binary import check_image_metadata, image_chain

_MBR_SIGNATURE = b"\x55\xaa"


class WriteMode(Enum):
    OVERLAY = "overlay"
    SNAPSHOT = "snapshot"
    IN_PLACE = "in-place"


@dataclass(frozen=True)
class DiskImage:
    path: Path  # absolute
    format: str  # as qemu-img detected it
    virtual_size: int
    chain: tuple[Path, ...] = ()  # the image and its backing files, resolved


@dataclass(frozen=True)
class GuestDisk:
    """What QEMU opens: ``file`` in ``format``, with ``snapshot=on`` or not."""

    file: Path
    format: str
    snapshot: bool
    mode: WriteMode


def read_image_head(path: Path) -> bytes:
    """The first sector of the image file, checking it exists, is a regular file and can be read;
    UsageError otherwise. Needs no QEMU (the Docker launcher calls it on hosts without one)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as err:
        raise UsageError(f"disk image not found: {path}") from err
    except OSError as err:
        raise UsageError(f"disk image cannot be reached: {path}: {err.strerror}") from err
    if stat.S_ISDIR(mode):
        raise UsageError(f"disk image is a directory, not a file: {path}")
    if not stat.S_ISREG(mode):
        raise UsageError(f"disk image is not a regular file: {path}")
    try:
        with path.open("rb") as stream:
            return stream.read(512)
    except OSError as err:
        raise UsageError(f"disk image is not readable: {path}: {err.strerror}") from err


def validate_image(path: Path, qemu_img: str) -> DiskImage:
    """Check the image exists, is a readable file and is a disk image; UsageError otherwise."""
    head = read_image_head(path)
    chain = image_chain(qemu_img, path.absolute())
    info = chain[0]
    fmt = str(info.get("format", ""))
    size = int(info.get("virtual-size", 0))
    if fmt == "raw" and (len(head) < 512 or head[510:512] != _MBR_SIGNATURE):
        # qemu-img calls any file "raw"; a bootable raw disk starts with an MBR (or GPT's protective MBR).
        raise UsageError(f"not a bootable disk image (raw, no MBR boot signature): {path}")
    if size <= 0:
        raise UsageError(f"disk image has no content (virtual size 0): {path}")
    files = tuple(Path(str(link["filename"])).resolve() for link in chain if link.get("filename"))
    for link in chain:
        if link.get("filename") and link.get("format"):
            check_image_metadata(qemu_img, Path(str(link["filename"])), str(link["format"]))
    return DiskImage(path=path.resolve(), format=fmt, virtual_size=size, chain=files)


def plan_guest_disk(image: DiskImage, out_dir: Path, *, snapshot: bool, write_to_image: bool) -> GuestDisk:
    """Decide what QEMU opens; creates nothing (see ``create_overlay``)."""
    if snapshot and write_to_image:
        raise UsageError("--snapshot and --write-to-image exclude each other")
    if write_to_image:
        if not os.access(image.path, os.W_OK):
            raise UsageError(f"--write-to-image, but the image is not writable: {image.path}")
        return GuestDisk(image.path, image.format, snapshot=False, mode=WriteMode.IN_PLACE)
    if snapshot:
        return GuestDisk(image.path, image.format, snapshot=True, mode=WriteMode.SNAPSHOT)
    overlay = (out_dir / OVERLAY).resolve()
    if overlay == image.path or overlay in image.chain:
        # Replacing the overlay would delete the user's image (e.g. inspecting an earlier run's overlay).
        raise UsageError(f"the disk image is {overlay} (or backs it), which this run would replace with its "
                         "own overlay: pass another --out-dir, or --snapshot")
    return GuestDisk(overlay, "qcow2", snapshot=False, mode=WriteMode.OVERLAY)


def create_overlay(qemu_img: str, image: DiskImage, disk: GuestDisk) -> None:
    """Create (or replace) the overlay qcow2 whose backing file is the user's image: made under a
    fresh unpredictable name and renamed into place, so nothing planted at the overlay's path is
    ever written through."""
    if disk.mode is not WriteMode.OVERLAY:
        return
    fresh = partial_file(disk.file)
    argv = [qemu_img, "create", "-q", "-f", "qcow2", "-F", image.format, "-b", str(image.path), str(fresh)]
    try:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise InfraError(f"qemu-img could not create the overlay {disk.file}: {err}") from err
        if proc.returncode != 0:
            raise InfraError(f"qemu-img could not create the overlay {disk.file}: {proc.stderr.strip()}")
        os.replace(fresh, disk.file)
    finally:
        fresh.unlink(missing_ok=True)
