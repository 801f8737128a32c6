"""Host paths -> bind mounts, and the harness arguments rewritten to the container's paths.

Two folders are mounted, no more: the disk image's folder read-only at /images, and the output
folder read-write at /out. Every other output path (``--serial-log``, ``--virtio-snd-wav-path``)
must lie inside the output folder: mounting a file's own folder read-write would hand the
container ``/`` or ``/etc`` for ``--serial-log /etc/x.log``. Mounts go through the engine's
structured mount API, so a ``:`` or ``,`` in a host path is just a character.
"""

from __future__ import annotations

import argparse
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from docker.types import Mount

from harness.disk import read_image_head
from harness.errors import UsageError
from harness.options import default_out_dir as harness_default_out_dir
from harness.outputs import check_path_text, output_path

IMAGES_DIR = PurePosixPath("/images")
OUT_DIR = PurePosixPath("/out")


@dataclass(frozen=True)
class BindMount:
    host: Path
    container: PurePosixPath
    read_only: bool

    def as_mount(self) -> Mount:
        return Mount(target=str(self.container), source=str(self.host), type="bind", read_only=self.read_only)

    def describe(self) -> str:
        return f"{self.host} -> {self.container} ({'ro' if self.read_only else 'rw'})"


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

    def docker_mounts(self) -> list[Mount]:
        """A list, because one host folder may be mounted twice (the image's folder read-only at
        /images and, when it is also the output folder, read-write at /out)."""
        return [mount.as_mount() for mount in self.mounts]

    def describe(self) -> list[str]:
        return [mount.describe() for mount in self.mounts]


def disk_image_file(path: Path) -> Path:
    """The real file behind ``--disk-image``; UsageError (exit 2) when it is missing or unreadable."""
    check_path_text("--disk-image", path)
    read_image_head(path)  # the harness's own checks; they need no QEMU on this host
    return path.resolve()


def default_out_dir(path: Path | None) -> Path:
    """``--out-dir`` on the host: as given, else as the harness decides ($AERO_OUT_DIR, else ./out)."""
    return path if path is not None else harness_default_out_dir()


def output_dir(path: Path) -> Path:
    """The output folder's real path; ``/`` is refused. Nothing is created yet."""
    check_path_text("--out-dir", path)
    real = path.resolve()
    if real == Path(real.anchor):
        raise UsageError(f"--out-dir {path} is the root folder: the output folder is mounted read-write into the "
                         "container; give the run a folder of its own (e.g. ./out)")
    return real


def create_output_dir(path: Path) -> None:
    """Create the output folder as the caller (so that it is the caller's, not the engine's)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        pass  # not a folder: said below
    except OSError as err:
        raise UsageError(f"cannot create the output folder {path}: {err.strerror}") from err
    if not path.is_dir():
        raise UsageError(f"--out-dir is not a directory: {path}")
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"the output folder is not writable: {path}")


def _inside_out_dir(flag: str, path: Path, out_host: Path, top_only: bool) -> PurePosixPath:
    check_path_text(flag, path)
    target = path.parent.resolve() / path.name
    if not target.is_relative_to(out_host) or target == out_host:
        raise UsageError(f"{flag} {path} lies outside the output folder {out_host}: in the container only that "
                         "folder can be written; put the file inside --out-dir")
    parts = target.relative_to(out_host).parts
    if top_only and len(parts) > 1:
        raise UsageError(f"{flag} {path} is in a folder inside the output folder {out_host}: a root caller's "
                         "container runs as the image's user, which is lent only the top of the output folder; "
                         "put the file directly in --out-dir (or run aero-win7-docker as a normal user)")
    return OUT_DIR.joinpath(*parts)


def output_flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    """dest -> flag of every option whose value is a file the harness writes (``type=output_path``)."""
    return {a.dest: a.option_strings[0] for a in parser._actions if a.type is output_path and a.option_strings}


def plan_run(parser: argparse.ArgumentParser, args: argparse.Namespace, *,
             top_only: bool = False) -> tuple[MountPlan, dict[str, PurePosixPath]]:
    """The mounts of a ``run``, and the container path of each path option (by argparse dest).
    ``top_only`` (a root caller, whose folder is lent to the image's user at its top only): every
    output file must lie directly in the output folder."""
    plan = MountPlan()
    paths: dict[str, PurePosixPath] = {}
    if args.disk_image is not None:  # selfcheck brings its own disk
        disk = disk_image_file(args.disk_image)
        paths["disk_image"] = plan.add(disk.parent, IMAGES_DIR, read_only=True) / disk.name
    out_host = output_dir(default_out_dir(args.out_dir))
    paths["out_dir"] = plan.add(out_host, OUT_DIR, read_only=False)
    for dest, flag in output_flags(parser).items():
        value: Path | None = getattr(args, dest, None)
        if value is not None:
            paths[dest] = _inside_out_dir(flag, value, out_host, top_only)
    create_output_dir(out_host)  # the last check: a refused run creates nothing
    return plan, paths


def out_host(plan: MountPlan) -> Path:
    """The host folder mounted at /out."""
    return next(mount.host for mount in plan.mounts if mount.container == OUT_DIR)


def run_names(paths: dict[str, PurePosixPath]) -> set[str]:
    """What this run's output flags put in the top of the output folder (a file, or the folder it is in;
    a root caller's flags name files at the top only)."""
    return {path.relative_to(OUT_DIR).parts[0] for dest, path in paths.items()
            if dest not in ("out_dir", "disk_image") and path.is_relative_to(OUT_DIR) and path != OUT_DIR}


def _readable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether ``uid:gid`` may read ``path`` once its folder is mounted (the folders above it on the
    host do not matter then: the engine mounts it)."""
    return _permits(path, uid, gid, stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH)


def _permits(path: Path, uid: int, gid: int, user_bit: int, group_bit: int, other_bit: int) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_uid == uid:
        return bool(st.st_mode & user_bit)
    if st.st_gid == gid:
        return bool(st.st_mode & group_bit)
    return bool(st.st_mode & other_bit)


def check_image_readable(plan: MountPlan, paths: dict[str, PurePosixPath], user: tuple[int, int]) -> None:
    """For a root caller, whose container runs as the image's user: the disk image must be
    readable by that user, and its folder searchable (UsageError otherwise; changes nothing)."""
    uid, gid = user
    for mount in plan.mounts:
        if mount.container == IMAGES_DIR and "disk_image" in paths:
            image = mount.host / paths["disk_image"].name
            if not _permits(mount.host, uid, gid, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):
                raise UsageError(f"the folder {mount.host} is not searchable by the container's user (uid {uid}), "
                                 "which a root caller's container runs as: make it searchable by others "
                                 "(chmod o+x) or run aero-win7-docker as a normal user")
            if not _readable_by(image, uid, gid):
                raise UsageError(f"the disk image {image} is not readable by the container's user (uid {uid}), "
                                 "which a root caller's container runs as: make it readable by others "
                                 "(chmod o+r) or run aero-win7-docker as a normal user")
