"""The guest selftest protocol on COM1: records and a scanner that finds them in any byte stream.

A record is a line that starts with ``AERO_VIRTIO_SELFTEST|<KIND>|...`` and ends in LF or CRLF.
The real guest also writes two kinds of lines without the prefix that the verdict needs: diagnostic
lines ``virtio-<name>|INFO|key=value...`` (interrupt modes, miniport flags; kind DIAG) and free
text ``virtio-<dev>: ...`` (the cause of a skipped test; kind TEXT).
Only whitespace and control bytes (what a UART or an interleaved kernel message may leave) may come
before the prefix: a free-text line that merely mentions a record (``log: ... RESULT|PASS``) is
not one, as in the upstream harness. The scanner accepts the stream in chunks of any size,
tolerates invalid UTF-8 and binary noise, and keeps memory bounded however long a line without a
newline grows, without ever losing a record to that bound.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

PREFIX = b"AERO_VIRTIO_SELFTEST|"
MAX_RECORD_BYTES = 16 * 1024  # a record longer than this is not a record
MAX_PENDING_BYTES = 64 * 1024  # an unfinished line is trimmed once it grows past this
_TRAILING_NOISE = "".join(map(chr, range(0x21))) + "\x7f"  # CR, spaces, NULs and other control bytes
_LEADING_NOISE = bytes(range(0x21)) + b"\x7f"  # what may stand before the prefix on a record's line


class Kind(str, Enum):
    START = "START"
    CONFIG = "CONFIG"
    TEST = "TEST"
    RESULT = "RESULT"
    DIAG = "DIAG"  # virtio-<name>|INFO|... or |WARN|... (no prefix): parts are (name, level, fields...)
    TEXT = "TEXT"  # virtio-<dev>: free text (no prefix): parts are (dev, text)


GUEST_TEXT = b"virtio-"  # how the real guest's diagnostic and free-text lines start
_DIAG = re.compile(r"^(virtio-[a-z0-9-]+)\|(INFO|WARN)(?:\|(.*))?$")
_TEXT = re.compile(r"^(virtio-[a-z0-9-]+): (.+)$")


class Status(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"
    READY = "READY"
    INFO = "INFO"

    @property
    def is_final(self) -> bool:
        return self in (Status.PASS, Status.FAIL, Status.SKIP)


@dataclass(frozen=True)
class Record:
    """One protocol line. ``parts`` are the ``|``-separated parts after ``<KIND>``."""

    kind: str
    parts: tuple[str, ...]
    text: str  # the whole record, from the prefix on, without the line end


@dataclass(frozen=True)
class TestMarker:
    """A ``TEST|<name>|<STATUS>[|key=value...]`` record, taken apart."""

    name: str
    status: Status
    fields: dict[str, str] = field(default_factory=dict)
    reason: str | None = None  # bare words after the status, e.g. ``SKIP|flag_not_set``


def parse_key_values(parts: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """Split ``key=value`` parts into a dict; the others are returned as bare words."""
    fields: dict[str, str] = {}
    words: list[str] = []
    for part in parts:
        key, sep, value = part.partition("=")
        if sep and key:
            fields[key] = value
        elif part:
            words.append(part)
    return fields, words


def _guest_line(line: bytes) -> Record | None:
    if len(line) > MAX_RECORD_BYTES:
        return None
    text = line.decode("utf-8", errors="replace").rstrip(_TRAILING_NOISE)
    match = _DIAG.match(text)
    if match:
        name, level, rest = match.groups()
        return Record(kind=Kind.DIAG, parts=(name, level, *(rest.split("|") if rest else ())), text=text)
    match = _TEXT.match(text)
    if match:
        return Record(kind=Kind.TEXT, parts=match.groups(), text=text)
    return None


def parse_line(line: bytes) -> Record | None:
    """The record a line (line end already removed) is, or None if it is none."""
    line = line.lstrip(_LEADING_NOISE)
    if not line.startswith(PREFIX):
        return _guest_line(line) if line.startswith(GUEST_TEXT) else None
    text = line.decode("utf-8", errors="replace").rstrip(_TRAILING_NOISE)
    pieces = text.split("|")
    if len(pieces) < 2 or not pieces[1]:
        return None
    return Record(kind=pieces[1], parts=tuple(pieces[2:]), text=text)


def as_test_marker(record: Record) -> TestMarker | None:
    """Interpret a TEST record; None when it is malformed (no name or unknown status)."""
    if record.kind != Kind.TEST or len(record.parts) < 2 or not record.parts[0]:
        return None
    try:
        status = Status(record.parts[1].strip().upper())
    except ValueError:
        return None
    fields, words = parse_key_values(record.parts[2:])
    return TestMarker(name=record.parts[0], status=status, fields=fields, reason=" ".join(words) or None)


def result_of(record: Record) -> str | None:
    """``PASS`` or ``FAIL`` for a RESULT record, None otherwise."""
    if record.kind != Kind.RESULT or not record.parts:
        return None
    verdict = record.parts[0].strip().upper()
    return verdict if verdict in ("PASS", "FAIL") else None


class Scanner:
    """Feed it bytes in chunks of any size; it returns the records completed by each chunk."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self._skipping = False  # the current line was found to be no record: drop it up to its newline

    def feed(self, chunk: bytes) -> list[Record]:
        records: list[Record] = []
        if self._skipping:
            newline = chunk.find(b"\n")
            if newline < 0:
                return records
            chunk = chunk[newline + 1:]
            self._skipping = False
        if not chunk:
            return records
        self._pending += chunk
        last_nl = self._pending.rfind(b"\n")
        if last_nl >= 0:
            complete = bytes(self._pending[: last_nl + 1])
            del self._pending[: last_nl + 1]
            for line in complete.split(b"\n")[:-1]:
                record = parse_line(line) if PREFIX in line or GUEST_TEXT in line else None
                if record is not None:
                    records.append(record)
        if len(self._pending) > MAX_PENDING_BYTES:
            self._trim()
        return records

    def flush(self) -> list[Record]:
        """The record on an unfinished last line (the stream ended without a newline)."""
        record = parse_line(bytes(self._pending))
        self._pending.clear()
        return [record] if record is not None else []

    def _trim(self) -> None:
        """An overlong unfinished line: keep it only while it may still become a record."""
        line = bytes(self._pending).lstrip(_LEADING_NOISE)
        may_be_record = line.startswith(PREFIX) if len(line) >= len(PREFIX) else PREFIX.startswith(line)
        self._pending[:] = line
        if not may_be_record or len(line) > MAX_RECORD_BYTES:
            self._pending.clear()
            self._skipping = True

    @property
    def pending_bytes(self) -> int:
        return len(self._pending)
