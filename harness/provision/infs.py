"""Which driver INFs ``provision.cmd`` installs: the contract drivers (default), an allow-list, or all.

The drivers folder is copied whole; only the chosen INFs are installed, in the list's order.

An allow-list entry is an INF's file name or its path relative to ``--drivers-dir`` (``/`` or
``\\``; a leading ``.\\`` or ``\\`` is dropped; upstream's form with the folder's own name in front
is accepted too), always compared without regard to case. A name must match one INF; when several
share it, a relative path picks one. In the default list a missing INF is only a warning, and among
INFs sharing a name the one listing the contract's hardware ID wins.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Literal

from harness.errors import UsageError

# The contract drivers, in install order.
DEFAULT_INFS = (
    "aero_virtio_blk.inf",
    "aero_virtio_net.inf",
    "aero_virtio_input.inf",
    "aero_virtio_tablet.inf",
    "aero_virtio_snd.inf",
)
# The driver for the transitional virtio-snd device: in the default list with --allow-virtio-snd-transitional.
TRANSITIONAL_SND_INF = "aero-virtio-snd-legacy.inf"
# The hardware ID each default INF must list to win over another INF of the same name.
CONTRACT_HWIDS = {
    "aero_virtio_blk.inf": "PCI\\VEN_1AF4&DEV_1042&REV_01",
    "aero_virtio_net.inf": "PCI\\VEN_1AF4&DEV_1041&REV_01",
    "aero_virtio_input.inf": "PCI\\VEN_1AF4&DEV_1052&SUBSYS_00101AF4&REV_01",
    "aero_virtio_tablet.inf": "PCI\\VEN_1AF4&DEV_1052&SUBSYS_00121AF4&REV_01",
    "aero_virtio_snd.inf": "PCI\\VEN_1AF4&DEV_1059&REV_01",
    TRANSITIONAL_SND_INF: "PCI\\VEN_1AF4&DEV_1018",
}

Mode = Literal["default", "allow-list", "all"]
MODE_TEXT: dict[Mode, str] = {
    "default": "the default list",
    "allow-list": "--inf-allow-list",
    "all": "--install-all-infs",
}


@dataclass(frozen=True)
class Inf:
    rel: PurePosixPath  # relative to --drivers-dir (and to AERO/drivers on the media)
    host: Path

    @property
    def windows(self) -> str:
        return str(PureWindowsPath(*self.rel.parts))


@dataclass(frozen=True)
class InfSelection:
    mode: Mode
    selected: tuple[PurePosixPath, ...]  # in install order
    missing_defaults: tuple[str, ...] = ()  # default-list names no INF has (warned about, skipped)
    not_selected: tuple[PurePosixPath, ...] = ()  # INFs on the media that are not installed

    @property
    def source(self) -> str:
        return MODE_TEXT[self.mode]


def default_list(transitional_snd: bool) -> tuple[str, ...]:
    return (*DEFAULT_INFS, TRANSITIONAL_SND_INF) if transitional_snd else DEFAULT_INFS


def _entry(text: str) -> str:
    entry = text.strip().replace("/", "\\").lstrip("\\")
    entry = entry.removeprefix(".\\")
    if not entry:
        raise UsageError(f"--inf-allow-list has an empty entry: {text!r}")
    return entry


def _inf_text(path: Path) -> str:
    """An INF's text, whatever its encoding (INFs are often UTF-16); only ASCII IDs are looked for."""
    raw = path.read_bytes()
    for bom, encoding in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
                          (codecs.BOM_UTF8, "utf-8")):
        if raw.startswith(bom):
            return raw[len(bom):].decode(encoding, errors="replace")
    return raw.decode("latin-1")


def _lists_hwid(inf: Inf, hwid: str) -> bool:
    try:
        return hwid.casefold() in _inf_text(inf.host).casefold()
    except OSError as err:
        raise UsageError(f"cannot read the driver file {inf.host}: {err}") from err


def _matches(entry: str, infs: Sequence[Inf], leaf: str) -> list[Inf]:
    wanted = entry.casefold()
    if "\\" in entry:
        return [i for i in infs if wanted in (i.windows.casefold(), f"{leaf}\\{i.windows}".casefold())]
    return [i for i in infs if i.rel.name.casefold() == wanted]


def _listing(infs: Sequence[Inf]) -> str:
    return ", ".join(sorted((str(i.rel) for i in infs), key=str.casefold))


def select_infs(infs: Sequence[Inf], drivers_dir: Path, *, allow_list: Sequence[str] | None = None,
                install_all: bool = False, transitional_snd: bool = False) -> InfSelection:
    """Choose the INFs to install from ``infs`` (every INF under ``drivers_dir``, sorted)."""
    if install_all and allow_list is not None:
        raise UsageError("--install-all-infs and --inf-allow-list contradict each other; give one or the other")
    if install_all:
        return InfSelection("all", tuple(i.rel for i in infs))
    mode: Mode = "default" if allow_list is None else "allow-list"
    entries = default_list(transitional_snd) if allow_list is None else tuple(allow_list)
    leaf = drivers_dir.resolve().name
    chosen: dict[str, Inf] = {}
    missing: list[str] = []
    for text in entries:
        entry = _entry(text)
        found = _matches(entry, infs, leaf)
        if not found and mode == "default":
            missing.append(entry)
            continue
        if not found:
            raise UsageError(f"--inf-allow-list entry {text.strip()!r} matches no .inf under --drivers-dir "
                             f"{drivers_dir}; the INFs there: {_listing(infs)}")
        hwid = CONTRACT_HWIDS.get(entry.casefold())
        if len(found) > 1 and mode == "default" and hwid is not None:
            contract = [i for i in found if _lists_hwid(i, hwid)]
            found = contract if len(contract) == 1 else found
        if len(found) > 1:
            what = (f"--inf-allow-list entry {text.strip()!r}" if mode == "allow-list"
                    else f"the default list's {entry}")
            raise UsageError(f"{what} matches several INFs under --drivers-dir {drivers_dir}: {_listing(found)}; "
                             f"name one by its relative path with --inf-allow-list (e.g. {found[0].rel})")
        chosen.setdefault(str(found[0].rel).casefold(), found[0])
    if not chosen:
        raise UsageError(f"no INF of the default list ({', '.join(entries)}) is under --drivers-dir {drivers_dir}; "
                         "name the INFs with --inf-allow-list or install them all with --install-all-infs")
    selected = tuple(i.rel for i in chosen.values())
    rest = tuple(i.rel for i in infs if str(i.rel).casefold() not in chosen)
    return InfSelection(mode, selected, tuple(missing), rest)
