"""Test-side models of how Windows reads command lines, written from the documented rules.

They are independent of ``harness.provision.quoting``: the tests check that what the harness writes
is read back, by these models, as what it meant.

- ``cmd_line``: what cmd.exe makes of one line of a batch file before it starts the program:
  ``%%`` is ``%``, ``%NAME%`` is the variable's value; at every ``"`` the quote state flips; outside
  quotes ``^`` takes the next character literally, and an unescaped operator ends the command (the
  model refuses it, since the harness never writes one by accident).
- ``argv``: how a C runtime program (and ``CommandLineToArgvW``) splits its command line.
"""

from __future__ import annotations

import re

_VAR = re.compile(r"%([A-Za-z_][A-Za-z0-9_]*)%")
OPERATORS = "&|<>()"


def _expand_percent(line: str, env: dict[str, str]) -> str:
    out: list[str] = []
    i = 0
    while i < len(line):
        if line[i] != "%":
            out.append(line[i])
            i += 1
        elif line.startswith("%%", i):
            out.append("%")
            i += 2
        else:
            match = _VAR.match(line, i)
            assert match is not None, f"stray % at {i} in {line!r}"
            out.append(env[match.group(1)])
            i = match.end()
    return "".join(out)


def cmd_line(line: str, env: dict[str, str] | None = None) -> str:
    """The command line cmd.exe hands to the program for one batch-file line (no redirections)."""
    text = _expand_percent(line, env or {})
    out: list[str] = []
    quoted = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "^":
            i += 1
            assert i < len(text), "a caret at the end of a line continues it"
            ch = text[i]
        elif not quoted and ch in OPERATORS:
            raise AssertionError(f"unescaped operator {ch!r} at {i} in {text!r}")
        out.append(ch)
        i += 1
    return "".join(out)


def argv(line: str) -> list[str]:
    """Split a Windows command line the way the C runtime does (argv[0] by its own rule)."""
    args: list[str] = []
    i, n = 0, len(line)
    # argv[0]: up to the next quote when it starts quoted, else up to a blank; no escapes.
    if line.startswith('"'):
        end = line.index('"', 1)
        args.append(line[1:end])
        i = end + 1
    else:
        match = re.match(r"[^ \t]*", line)
        assert match is not None
        args.append(match.group())
        i = match.end()
    while True:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n:
            return args
        arg: list[str] = []
        quoted = False
        while i < n and (quoted or line[i] not in " \t"):
            ch = line[i]
            if ch == "\\":
                j = i
                while j < n and line[j] == "\\":
                    j += 1
                count = j - i
                if j < n and line[j] == '"':
                    arg.append("\\" * (count // 2))
                    if count % 2:
                        arg.append('"')
                        j += 1
                else:
                    arg.append("\\" * count)
                i = j
            elif ch == '"':
                if quoted and i + 1 < n and line[i + 1] == '"':
                    arg.append('"')
                    i += 2
                else:
                    quoted = not quoted
                    i += 1
            else:
                arg.append(ch)
                i += 1
        args.append("".join(arg))
