"""Building QEMU command lines safely.

QEMU's option syntax is ``driver,key=value,key=value``. A comma inside a value must be doubled
(``,,``); everything else (spaces, quotes, ``=``) is fine because the command is always an
argument list, never a shell string.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping


def escape_value(value: object) -> str:
    """Escape one option value for QEMU (a comma becomes ``,,``)."""
    text = _as_text(value)
    if "\n" in text or "\0" in text:
        raise ValueError(f"QEMU option value cannot hold a newline or NUL: {text!r}")
    return text.replace(",", ",,")


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def opts(head: str | None = None, params: Mapping[str, object] | None = None, /, **kwargs: object) -> str:
    """``opts("virtio-blk-pci", drive="d0")`` -> ``virtio-blk-pci,drive=d0``.

    ``head`` is the leading driver/backend name (not escaped: it is ours, never the user's);
    values of ``None`` are left out; booleans become on/off. Keys with dashes go in ``params``.
    """
    merged: dict[str, object] = {**(params or {}), **kwargs}
    parts = [head] if head else []
    parts += [f"{key}={escape_value(val)}" for key, val in merged.items() if val is not None]
    return ",".join(parts)


def render(argv: Iterable[str]) -> str:
    """A command line as one copy-pastable shell string (for --dry-run and logs only)."""
    return shlex.join(list(argv))
