"""The user's extra QEMU arguments (after ``--``): anything the harness could no longer supervise is
refused before anything boots.

The harness must own QEMU's lifetime, COM1 and its QMP connection: ``-daemonize`` would detach
QEMU so that it outlives the run, ``-pidfile`` would have QEMU write (and lock) a file of the
user's choosing, and another ``-serial``, ``-qmp`` or monitor would take the place of the
harness's own. QEMU takes ``--option`` as ``-option``, so both spellings are checked.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.errors import UsageError

REFUSED: dict[str, str] = {
    "daemonize": "it detaches QEMU, which would outlive the run",
    "pidfile": "the harness supervises QEMU itself and writes no pid file",
    "serial": "COM1 is the harness's (it reads the selftest there)",
    "qmp": "the harness holds QEMU's QMP connection",
    "qmp-pretty": "the harness holds QEMU's QMP connection",
    "mon": "the harness holds QEMU's monitor",
    "monitor": "the harness holds QEMU's monitor",
}
OWN_CHARDEV_IDS = ("com1", "qmp")


def _option_name(arg: str) -> str | None:
    if not arg.startswith("-") or arg in ("-", "--"):
        return None
    return arg[2:] if arg.startswith("--") else arg[1:]


def check_extra_args(extra: Sequence[str]) -> None:
    """UsageError naming the first argument the harness cannot allow."""
    for index, arg in enumerate(extra):
        name = _option_name(arg)
        if name is None:
            continue
        name = name.split("=", 1)[0]
        if name in REFUSED:
            raise UsageError(f"QEMU argument {arg} is not allowed after --: {REFUSED[name]}")
        if name == "chardev" and index + 1 < len(extra):
            ids = [part.removeprefix("id=") for part in extra[index + 1].split(",") if part.startswith("id=")]
            clash = [i for i in ids if i in OWN_CHARDEV_IDS]
            if clash:
                raise UsageError(f"QEMU argument -chardev {extra[index + 1]} uses the id {clash[0]}, which is the "
                                 "harness's own (COM1 or QMP): pick another id")
