"""Reading what a guest wrote on COM1 (a run's serial.log), independently of the harness's parser.

The tests that boot the reference guest check its vocabulary here, line by line, as a person reading
the log would: records, their order, their fields, the free text between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MARK = "AERO_VIRTIO_SELFTEST|"


@dataclass
class Record:
    kind: str  # START, CONFIG, TEST, RESULT
    name: str  # the test name for TEST records, else ""
    status: str  # PASS/FAIL/SKIP/INFO/READY for TEST, PASS/FAIL for RESULT
    words: list[str]  # bare words after the status
    fields: dict[str, str]
    line: str

    def __getitem__(self, key: str) -> str:
        return self.fields[key]


def parse_record(line: str) -> Record | None:
    if not line.startswith(MARK):
        return None
    parts = line[len(MARK):].split("|")
    kind, rest = parts[0], parts[1:]
    name = status = ""
    if kind == "TEST":
        name, status, rest = rest[0], rest[1], rest[2:]
    elif kind == "RESULT":
        status, rest = rest[0], rest[1:]
    words = [p for p in rest if "=" not in p]
    fields = dict(p.split("=", 1) for p in rest if "=" in p)
    return Record(kind, name, status, words, fields, line)


@dataclass
class Transcript:
    raw: bytes
    lines: list[str]  # every complete COM1 line, free text too
    records: list[Record]

    @classmethod
    def read(cls, serial_log: Path) -> Transcript:
        raw = serial_log.read_bytes()
        lines = raw.decode("utf-8", "replace").split("\r\n")
        lines.pop()  # an incomplete last line (or "")
        return cls(raw, lines, [r for r in map(parse_record, lines) if r is not None])

    def test(self, name: str) -> Record:
        found = [r for r in self.records if r.kind == "TEST" and r.name == name and r.status != "READY"]
        assert len(found) == 1, f"{name}: {len(found)} final markers in\n" + "\n".join(self.lines)
        return found[0]

    def ready(self, name: str) -> Record:
        found = [r for r in self.records if r.kind == "TEST" and r.name == name and r.status == "READY"]
        assert len(found) == 1, f"{name}: {len(found)} READY markers"
        return found[0]

    @property
    def result(self) -> str:
        return next(r.status for r in self.records if r.kind == "RESULT")

    def names(self) -> list[str]:
        """Test names in the order of their final markers (READY and INFO left out)."""
        return [r.name for r in self.records if r.kind == "TEST" and r.status not in ("READY", "INFO")]

    def assert_order(self, *names: str) -> None:
        """``names`` ("virtio-blk|PASS", "virtio-snd") appear in this order among the TEST records."""
        seen = [f"{r.name}|{r.status}" for r in self.records if r.kind == "TEST"]
        positions = [next(i for i, s in enumerate(seen) if s == n or s.startswith(n + "|")) for n in names]
        assert positions == sorted(positions), seen
