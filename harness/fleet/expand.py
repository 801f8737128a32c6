"""A checked matrix document -> its cases, in file order: ``cases`` first, then each product's
images x flag sets (image by image). Defaults are applied, names checked unique, and every case's
flags checked as ``aero-win7-harness run`` would take them (``harness.flagcheck``: nothing
starts, no QEMU or file is needed).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from harness.errors import UsageError
from harness.fleet.case import Case, seconds
from harness.fleet.loader import Document, Path_, load
from harness.fleet.schema import DEFAULT_RUNNER, NAME_PATTERN

SELFCHECK_PLACEHOLDER = "reference-guest.qcow2"
DEFAULT_FLAGS: Path_ = ("defaults", "flags")


@dataclass(frozen=True)
class Matrix:
    document: Document
    cases: tuple[Case, ...]
    parallelism: int
    image_keys: Mapping[str, Path_]  # case name -> where its image is given (for messages)

    def case(self, name: str) -> Case:
        for case in self.cases:
            if case.name == name:
                return case
        raise UsageError(f"{self.document.path}: no case named '{name}' (cases: {', '.join(self.names())})")

    def names(self) -> list[str]:
        return [case.name for case in self.cases]

    def fail(self, case: Case, what: str) -> UsageError:
        """A UsageError about a case's image, pointing at where the matrix gives it, and naming the
        case when that place does not (a product's image is the image of several cases)."""
        where = self.image_keys[case.name]
        return self.document.fail(where, what if where[0] == "cases" else f"case '{case.name}': {what}")

    def select(self, names: Sequence[str]) -> list[Case]:
        """The named cases in matrix order (all of them for no names)."""
        wanted = set(names)
        for name in names:
            self.case(name)
        return [case for case in self.cases if not wanted or case.name in wanted]


@functools.cache
def _owned_options() -> dict[str, str]:
    """Run options a case may not set, each with the reason: the fleet sets them per case."""
    import argparse

    from harness.cli import build_parser
    from harness.outputs import output_path

    parser = build_parser(quiet=True)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    reasons = {"out_dir": "the fleet gives each case its own out dir",
               "timeout_seconds": "use the case's 'timeout' key", "disk_image": "use the case's 'image' key",
               "dry_run": "a case must run (a dry run writes no results)",
               "stop_on_stdin_eof": "the launcher adds it itself",
               "qemu_system": "the harness image brings its own QEMU"}
    owned: dict[str, str] = {}
    for action in sub.choices["run"]._actions:
        reason = reasons.get(action.dest) or ("the fleet puts every output in the case's out dir"
                                              if action.type is output_path else None)
        for option in action.option_strings if reason else ():
            owned[option] = reason  # type: ignore[assignment]
    return owned


def _split(flags: Sequence[str]) -> tuple[list[str], list[str]]:
    flags = [str(f) for f in flags]
    cut = flags.index("--") if "--" in flags else len(flags)
    return flags[:cut], flags[cut + 1:]


def _refused(lists: Sequence[tuple[Path_, Sequence[str]]], disk: str, timeout: float) -> bool:
    try:
        _check_flags(*_joined(lists), disk, timeout)
    except UsageError:
        return True
    return False


def _joined(lists: Sequence[tuple[Path_, Sequence[str]]]) -> tuple[list[str], list[str]]:
    """The harness flags and the QEMU arguments (after ``--``) of flag lists, in order."""
    flags: list[str] = []
    qemu_args: list[str] = []
    for _where, flag_list in lists:
        before, after = _split(flag_list)
        flags += before
        qemu_args += after
    return flags, qemu_args


def _refuse_owned(flags: Sequence[str]) -> None:
    owned = _owned_options()
    for flag in flags:
        option = flag.split("=", 1)[0] if flag.startswith("--") else flag
        if option in owned:
            raise UsageError(f"{option} is not a case flag: {owned[option]}")


def _check_flags(flags: list[str], qemu_args: list[str], image: str, timeout: float) -> tuple[int, int]:
    """memory_mb and smp of a case whose flags the harness accepts; UsageError otherwise."""
    from harness.flagcheck import check_run_flags

    _refuse_owned(flags)
    argv = [*flags, "--timeout-seconds", seconds(timeout), *(["--", *qemu_args] if qemu_args else [])]
    opts, _devices = check_run_flags(argv, disk_image=image)
    return opts.memory_mb, opts.smp


def _harness_timeout(selfcheck: bool) -> float:
    """The harness's own --timeout-seconds default: selfcheck's, or run's."""
    from harness.commands.selfcheck import DEFAULT_TIMEOUT_S
    from harness.options import RunOptions

    return DEFAULT_TIMEOUT_S if selfcheck else RunOptions(disk_image=Path(SELFCHECK_PLACEHOLDER)).timeout_s


def _image(document: Document, value: str) -> PurePosixPath:
    return PurePosixPath(document.folder) / value  # an absolute value stays as it is


class _Builder:
    def __init__(self, document: Document) -> None:
        self.document = document
        self.defaults: Mapping[str, Any] = document.data.get("defaults") or {}
        self.cases: list[Case] = []
        self.where: dict[str, Path_] = {}
        self.image_keys: dict[str, Path_] = {}

    def add(self, *, name: str, where: Path_, name_where: Path_, image_where: Path_,
            layers: Sequence[Mapping[str, Any]], flag_lists: Sequence[tuple[Path_, Sequence[str]]],
            image: str | None) -> None:
        """One case: ``layers`` are the mappings whose keys apply, least specific first;
        ``flag_lists`` the case's flag lists after the defaults' (each with where it is given)."""
        if not re.match(NAME_PATTERN, name):
            raise self.document.fail(name_where, f"the case name '{name}' does not match {NAME_PATTERN}")
        if name in self.where:
            first = self.document.line(self.where[name])
            raise self.document.fail(name_where, f"duplicate case name '{name}' (first at line {first})")
        self.where[name] = where
        self.image_keys[name] = image_where

        def pick(key: str) -> Any:
            found = None
            for layer in (self.defaults, *layers):
                if key in layer:
                    found = layer[key]
            return found

        lists = [(DEFAULT_FLAGS, self.defaults.get("flags") or []), *flag_lists]
        selfcheck = image is None
        timeout = pick("timeout")
        if timeout is None:
            timeout = _harness_timeout(selfcheck)
        path = _image(self.document, image) if image is not None else None
        disk = str(path or SELFCHECK_PLACEHOLDER)
        try:
            memory_mb, smp = _check_flags(*_joined(lists), disk, float(timeout))
        except UsageError as err:
            raise self._blame(name, lists, disk, float(timeout), err) from None
        flags, qemu_args = _joined(lists)
        self.cases.append(Case(name=name, selfcheck=selfcheck, image=path, flags=tuple(flags),
                               qemu_args=tuple(qemu_args), timeout_s=float(timeout),
                               runner=tuple(pick("runner") or DEFAULT_RUNNER), harness_image=pick("harness_image"),
                               memory_mb=memory_mb, smp=smp))

    def _blame(self, name: str, lists: Sequence[tuple[Path_, Sequence[str]]], disk: str, timeout: float,
               err: UsageError) -> UsageError:
        """The error at the flag list that made the case's flags fail: the first list whose flags,
        joined to those before it, are refused (so a mistake in ``defaults.flags`` or a product's
        ``flags`` is blamed there, not on every case that inherits it). Only for the same error: a
        list refused alone for want of what a later list supplies (``--raw-serial`` before the case's
        ``--follow-serial``) is not where the whole case's error is."""
        for count in range(1, len(lists)):
            if not lists[count - 1][1]:
                continue
            try:
                _check_flags(*_joined(lists[:count]), disk, timeout)
            except UsageError as found:
                if found.detail == err.detail:
                    err, lists = found, lists[:count]
                    break
        where, _flags = lists[-1]
        joined = self._with(lists, disk, timeout)
        who = f"case '{name}': " if where[0] == "products" and where[2] == "flag_sets" else ""
        return self.document.fail(where, f"{who}{err.detail}{joined}")

    def _with(self, lists: Sequence[tuple[Path_, Sequence[str]]], disk: str, timeout: float) -> str:
        """`` (with defaults.flags)``: the earlier lists the last one is refused with, when it is
        accepted on its own; else nothing."""
        *earlier, last = lists
        earlier = [layer for layer in earlier if layer[1]]
        if not earlier or _refused([last], disk, timeout):
            return ""
        causes = [layer for layer in earlier if _refused([layer, last], disk, timeout)] or earlier
        return f" (with {' and '.join(self._label(where) for where, _flags in causes)})"

    @staticmethod
    def _label(where: Path_) -> str:
        """``defaults.flags``, ``products[0].flags``."""
        return "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in where).removeprefix(".")


def expand(document: Document) -> Matrix:
    builder = _Builder(document)
    for i, case in enumerate(document.data.get("cases") or []):
        where: Path_ = ("cases", i)
        builder.add(name=str(case["name"]), where=where, name_where=(*where, "name"), image_where=(*where, "image"),
                    layers=[case], flag_lists=[((*where, "flags") if "flags" in case else where,
                                                case.get("flags") or [])],
                    image=None if case.get("selfcheck") else str(case["image"]))
    for p, product in enumerate(document.data.get("products") or []):
        prefix = f"{product['prefix']}-" if product.get("prefix") else ""
        for image_key, image in product["images"].items():
            for set_key, set_flags in product["flag_sets"].items():
                where = ("products", p, "flag_sets", set_key)
                builder.add(name=f"{prefix}{image_key}-{set_key}", where=where,
                            name_where=("products", p, "images", image_key),
                            image_where=("products", p, "images", image_key), layers=[product],
                            flag_lists=[(("products", p, "flags"), product.get("flags") or []), (where, set_flags)],
                            image=None if isinstance(image, Mapping) else str(image))
    return Matrix(document, tuple(builder.cases), int(document.data.get("parallelism") or 1), builder.image_keys)


def load_matrix(path: Path) -> Matrix:
    """Read, check and expand a matrix file; UsageError (one line) on the first problem."""
    return expand(load(path))
