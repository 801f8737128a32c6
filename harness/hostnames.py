"""DNS host names as the guest and the harness use them (``--dns-host``, ``--dns-record``, CONFIG)."""

from __future__ import annotations

import re

_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", re.IGNORECASE)


def is_host_name(name: str) -> bool:
    """Dot-separated labels of letters, digits and inner '-', 253 characters at most (one trailing
    dot allowed)."""
    bare = name.removesuffix(".")
    return 0 < len(bare) <= 253 and all(_LABEL.fullmatch(label) for label in bare.split("."))
