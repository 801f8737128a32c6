"""One case of a matrix: what it runs, and the command lines that run it.

A case is either a ``run`` of a disk image or a ``selfcheck`` (the reference guest in the
harness image). Its flags are the harness's run flags; the fleet adds the ones it owns itself
(``--timeout-seconds`` from ``timeout``, ``--out-dir`` per case, ``--disk-image`` from ``image``).
The JSON form (``to_json``) is what ``matrix list --format json`` prints and what the Kubernetes
ConfigMap holds; ``from_json`` reads it back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from harness.errors import UsageError

JOB_MARGIN_MIN = 30  # a CI job's time beside its case: installing the harness, building its image


def seconds(value: float) -> str:
    """A number of seconds as a flag value: ``1``, ``2.5``."""
    return f"{value:g}"


@dataclass(frozen=True)
class Case:
    name: str
    selfcheck: bool
    image: PurePosixPath | None  # absolute (resolved against the matrix file's folder); None for selfcheck
    flags: tuple[str, ...]  # harness flags, before any '--'
    qemu_args: tuple[str, ...]  # after '--'
    timeout_s: float
    runner: tuple[str, ...]
    harness_image: str | None = None
    memory_mb: int = 2048  # what the flags give the guest (for Kubernetes resource requests)
    smp: int = 2

    @property
    def subcommand(self) -> str:
        return "selfcheck" if self.selfcheck else "run"

    def harness_argv(self, out_dir: PurePosixPath | Path, extra: Sequence[str] = ()) -> list[str]:
        """The arguments after ``aero-win7-harness`` (or ``aero-win7-docker``) that run this case,
        writing into ``out_dir``; ``extra`` flags come after the case's own (the last one wins)."""
        argv = [self.subcommand]
        if self.image is not None:
            argv += ["--disk-image", str(self.image)]
        argv += [*self.flags, "--timeout-seconds", seconds(self.timeout_s), "--out-dir", str(out_dir), *extra]
        return argv + (["--", *self.qemu_args] if self.qemu_args else [])

    def all_flags(self) -> list[str]:
        return [*self.flags, *(["--", *self.qemu_args] if self.qemu_args else [])]

    def with_image(self, image: PurePosixPath) -> Case:
        return replace(self, image=image)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "selfcheck": self.selfcheck,
            "image": str(self.image) if self.image is not None else None,
            "flags": self.all_flags(),
            "timeout": self.timeout_s,
            "runner": list(self.runner),
            "harness_image": self.harness_image,
            "memory_mb": self.memory_mb,
            "smp": self.smp,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Case:
        """A case from its JSON form; UsageError when it is not one."""
        try:
            flags = [str(f) for f in data["flags"]]
            cut = flags.index("--") if "--" in flags else len(flags)
            image = data.get("image")
            return cls(name=str(data["name"]), selfcheck=bool(data["selfcheck"]),
                       image=PurePosixPath(str(image)) if image is not None else None,
                       flags=tuple(flags[:cut]), qemu_args=tuple(flags[cut + 1:]), timeout_s=float(data["timeout"]),
                       runner=tuple(str(r) for r in data.get("runner") or ()),
                       harness_image=data.get("harness_image"), memory_mb=int(data.get("memory_mb", 2048)),
                       smp=int(data.get("smp", 2)))
        except (KeyError, TypeError, ValueError) as err:
            raise UsageError(f"not a matrix case (as 'matrix list --format json' prints): {err!r}") from err


def job_timeout_minutes(cases: Sequence[Case]) -> int:
    """A CI job's timeout for one of these cases: the longest case's timeout in whole minutes, plus
    the time to install the harness and build its image."""
    return math.ceil(max(case.timeout_s for case in cases) / 60) + JOB_MARGIN_MIN


def cases_from_json(data: Any) -> list[Case]:
    if not isinstance(data, list):
        raise UsageError("not a list of matrix cases (as 'matrix list --format json' prints)")
    return [Case.from_json(item if isinstance(item, Mapping) else {}) for item in data]
