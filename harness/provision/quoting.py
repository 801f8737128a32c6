"""Windows command lines, and the same lines written into a cmd.exe batch file.

Two layers, each with its own rules:

1. **argv quoting** (how a Windows program's C runtime, and ``CommandLineToArgvW``, split its
   command line): arguments are separated by spaces or tabs; ``"`` groups; ``2n`` backslashes
   before a ``"`` stand for ``n`` backslashes (and the ``"`` groups), ``2n+1`` for ``n`` and a
   literal ``"``; backslashes anywhere else are literal. So ``D:\\dir\\`` quoted becomes
   ``"D:\\dir\\\\"``: a lone backslash before the closing quote would escape it.
2. **batch escaping** (how cmd.exe reads a line of a ``.cmd`` file before it starts the program):
   ``%`` is expanded everywhere, so a literal one is written ``%%``; outside a quoted stretch (cmd
   flips its quote state at every ``"``, escaped or not) ``^ & | < > ( )`` are operators, so they
   are written with a ``^`` in front. The script turns delayed expansion off, so ``!`` is literal.

A line in a batch file may refer to a cmd variable (``%AERO_DRIVE%``): :class:`CmdVar` pieces are
written verbatim. Their values must not need quoting themselves (no quote, blank, operator, or
trailing backslash), which holds for the drive letters the script uses them for.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_BLANKS = " \t"
_CMD_OPERATORS = "^&|<>()"
_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # line breaks, NUL and other controls (tab is fine)
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class CmdVar:
    """A reference to a cmd variable, expanded when the script runs: ``CmdVar("X")`` is ``%X%``."""

    name: str

    def __post_init__(self) -> None:
        if not _VAR_NAME.fullmatch(self.name):
            raise ValueError(f"not a cmd variable name: {self.name!r}")


Piece = str | CmdVar
Arg = str | tuple[Piece, ...]  # a literal argument, or literal text mixed with variables


def check_text(value: str, what: str) -> None:
    """Refuse text no Windows command line (or batch file line) can carry; ValueError names it."""
    bad = _FORBIDDEN.search(value)
    if bad is not None:
        raise ValueError(f"{what} holds a control character ({bad.group()!r}): {value!r}")


def _pieces(arg: Arg) -> tuple[Piece, ...]:
    return (arg,) if isinstance(arg, str) else arg


def _escape_inside_quotes(text: str, *, closing: bool) -> str:
    """Escape ``text`` for use between quotes: backslash runs before a ``"`` (or the closing one) double."""
    out: list[str] = []
    backslashes = 0
    for ch in text:
        if ch == "\\":
            backslashes += 1
            continue
        if ch == '"':
            out.append("\\" * (2 * backslashes + 1) + '"')
        else:
            out.append("\\" * backslashes + ch)
        backslashes = 0
    out.append("\\" * (2 * backslashes if closing else backslashes))
    return "".join(out)


def _quote_pieces(arg: Arg) -> list[Piece]:
    pieces = [p for p in _pieces(arg) if p != ""]
    literal = "".join(p for p in pieces if isinstance(p, str))
    check_text(literal, "an argument")
    if pieces and not any(ch in _BLANKS or ch == '"' for ch in literal):
        return pieces
    quoted: list[Piece] = ['"']
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        quoted.append(piece if isinstance(piece, CmdVar) else _escape_inside_quotes(piece, closing=last))
    quoted.append('"')
    return quoted


def quote_arg(arg: str) -> str:
    """One argument as a Windows program's C runtime will read it back (quoted only when needed)."""
    return "".join(str(p) for p in _quote_pieces(arg))


def join_args(args: Sequence[str]) -> str:
    """A Windows command line whose argv is exactly ``args``."""
    return " ".join(quote_arg(a) for a in args)


def batch_text(pieces: Sequence[Piece]) -> str:
    """Text for a batch file line that cmd.exe reads back as ``pieces`` (variables expanded)."""
    out: list[str] = []
    quoted = False
    for piece in pieces:
        if isinstance(piece, CmdVar):
            out.append(f"%{piece.name}%")
            continue
        for ch in piece:
            if ch == "%":
                out.append("%%")
            elif ch == '"':
                quoted = not quoted
                out.append(ch)
            elif ch in _CMD_OPERATORS and not quoted:
                out.append("^" + ch)
            else:
                out.append(ch)
    return "".join(out)


def batch_command(args: Sequence[Arg]) -> str:
    """One line of a batch file that runs ``args[0]`` with exactly the argv ``args``."""
    pieces: list[Piece] = []
    for index, arg in enumerate(args):
        if index:
            pieces.append(" ")
        pieces.extend(_quote_pieces(arg))
    return batch_text(pieces)
