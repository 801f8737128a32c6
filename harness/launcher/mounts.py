"""Host paths -> bind mounts, and the harness arguments rewritten to the container's paths."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from harness.disk import read_image_head
from harness.errors import UsageError
from harness.options import OUT_DIR_ENV

IMAGES_DIR = PurePosixPath("/images")
OUT_DIR = PurePosixPath("/out")
EXTRA_OUTPUTS_DIR = PurePosixPath("/outputs")

# Options of `run` whose values are host paths of files the harness writes.
OUTPUT_FILE_DESTS = ("serial_log", "virtio_snd_wav_path")


@dataclass(frozen=True)
class BindMount:
    host: Path
    container: PurePosixPath
    read_only: bool

    def as_volume(self) -> str:
        """The docker-py ``volumes`` entry of this mount (``host:container:mode``)."""
        return f"{self.host}:{self.container}:{'ro' if self.read_only else 'rw'}"


@dataclass
class MountPlan:
    """The bind mounts of one container, and the container path of each host path."""

    mounts: list[BindMount] = field(default_factory=list)

    def add(self, host: Path, container: PurePosixPath, *, read_only: bool) -> PurePosixPath:
        for mount in self.mounts:
            if mount.host == host and mount.read_only == read_only:
                return mount.container
        self.mounts.append(BindMount(host, container, read_only))
        return container

    def volumes(self) -> list[str]:
        """One entry a mount: a list, because one host folder may be mounted twice (the image's
        folder read-only at /images and, when it is also the output folder, read-write at /out)."""
        return [mount.as_volume() for mount in self.mounts]


def disk_image_file(path: Path) -> Path:
    """The real file behind ``--disk-image``; UsageError (exit 2) when it is missing or unreadable."""
    read_image_head(path)  # the harness's own checks; they need no QEMU on this host
    return path.resolve()


def default_out_dir(path: Path | None) -> Path:
    """``--out-dir`` on the host: as given, else $AERO_OUT_DIR, else ./out (as the harness does)."""
    if path is not None:
        return path
    return Path(os.environ.get(OUT_DIR_ENV) or "out")


def output_dir(path: Path) -> Path:
    """Create the output folder as the caller (so that it is the caller's, not the engine's)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create the output folder {path}: {err.strerror}") from err
    real = path.resolve()
    if not os.access(real, os.W_OK | os.X_OK):
        raise UsageError(f"the output folder is not writable: {path}")
    return real


def _output_file(plan: MountPlan, out_host: Path, path: Path) -> PurePosixPath:
    """Container path of an output file: under /out when it lies in the output folder, else its
    own folder is mounted read-write under /outputs."""
    target = path.parent.resolve() / path.name
    if target.is_relative_to(out_host):
        return OUT_DIR.joinpath(*target.relative_to(out_host).parts)
    folder = output_dir(target.parent)
    index = sum(1 for m in plan.mounts if m.container.parent == EXTRA_OUTPUTS_DIR)
    return plan.add(folder, EXTRA_OUTPUTS_DIR / str(index), read_only=False) / target.name


def plan_run(args: argparse.Namespace) -> tuple[MountPlan, dict[str, PurePosixPath]]:
    """The mounts of a ``run``, and the container path of each path option (by argparse dest)."""
    plan = MountPlan()
    paths: dict[str, PurePosixPath] = {}
    if args.disk_image is not None:  # selfcheck brings its own disk
        disk = disk_image_file(args.disk_image)
        paths["disk_image"] = plan.add(disk.parent, IMAGES_DIR, read_only=True) / disk.name
    out_host = output_dir(default_out_dir(args.out_dir))
    paths["out_dir"] = plan.add(out_host, OUT_DIR, read_only=False)
    for dest in OUTPUT_FILE_DESTS:
        value: Path | None = getattr(args, dest, None)
        if value is not None:
            paths[dest] = _output_file(plan, out_host, value)
    return plan, paths

