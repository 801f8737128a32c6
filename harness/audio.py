"""Checking a WAV capture from QEMU's ``wav`` audio backend: is there sound in it?

QEMU writes the RIFF header with zero sizes first and fixes them when it quits cleanly; a capture
whose QEMU was killed keeps the zeros. Such a file is still read (its data runs to the end of the
file) and reported as incomplete.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

_CHUNK_BYTES = 1 << 20
ENVELOPE_POINTS = 400  # the waveform report.html draws: its min and max in this many stretches


@dataclass(frozen=True)
class AudioStats:
    path: str
    header_complete: bool
    channels: int
    sample_rate: int
    bits_per_sample: int
    frames: int
    peak: int  # on a 16-bit scale
    rms: float  # on a 16-bit scale
    envelope: tuple[tuple[int, int], ...] = ()  # (min, max) of ENVELOPE_POINTS equal stretches, 16-bit scale

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0

    def to_json(self) -> dict[str, object]:
        out = {**asdict(self), "seconds": round(self.seconds, 3), "rms": round(self.rms, 2)}
        out["envelope"] = [list(point) for point in self.envelope]
        return out


class WavError(Exception):
    """The file is not a WAV this checker understands."""


class AnalysisStopped(WavError):
    """``should_stop`` said so (the run was interrupted)."""


@dataclass(frozen=True)
class _Layout:
    channels: int
    rate: int
    bits: int
    data_offset: int
    data_bytes: int
    header_complete: bool


def _layout(path: Path) -> _Layout:
    size = path.stat().st_size
    with path.open("rb") as stream:
        head = stream.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise WavError("not a RIFF/WAVE file")
        riff_size = struct.unpack("<I", head[4:8])[0]
        fmt: tuple[int, int, int, int, int, int] | None = None
        while True:
            chunk = stream.read(8)
            if len(chunk) < 8:
                raise WavError("no data chunk")
            cid, csize = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"fmt ":
                body = stream.read(csize + (csize & 1))
                fmt = struct.unpack("<HHIIHH", body[:16])
            elif cid == b"data":
                if fmt is None:
                    raise WavError("data chunk before fmt chunk")
                offset = stream.tell()
                # A killed QEMU leaves the RIFF size at 0; a clean quit writes it even for no samples.
                complete = riff_size != 0 and offset + csize <= size
                data_bytes = csize if complete else size - offset
                tag, channels, rate, _, _, bits = fmt
                if tag not in (1, 0xFFFE) or bits not in (8, 16, 32):
                    raise WavError(f"unsupported sample format (tag {tag}, {bits} bits)")
                return _Layout(channels, rate, bits, offset, data_bytes, complete)
            else:
                stream.seek(csize + (csize & 1), 1)


def analyze(path: Path, should_stop: Callable[[], bool] = lambda: False) -> AudioStats:
    """Peak and RMS of all samples, scaled to 16 bits; raises WavError or OSError. ``should_stop``
    is asked between chunks (1 MiB), so a long capture can be abandoned at once."""
    layout = _layout(path)
    width = layout.bits // 8
    typecode = {1: "b", 2: "h", 4: "i"}[width]
    shift = layout.bits - 16
    peak = 0
    sum_sq = 0.0
    count = 0
    channels = max(layout.channels, 1)
    total = layout.data_bytes // width
    stretch = max(channels, -(-total // ENVELOPE_POINTS) // channels * channels)  # whole frames each
    envelope: list[tuple[int, int]] = []
    carry = array(typecode if width > 1 else "h")  # samples of a stretch split across two chunks
    with path.open("rb") as stream:
        stream.seek(layout.data_offset)
        remaining = layout.data_bytes - layout.data_bytes % (width * max(layout.channels, 1))
        while remaining > 0:
            if should_stop():
                raise AnalysisStopped("stopped")
            raw = stream.read(min(_CHUNK_BYTES, remaining))
            if not raw:
                break
            raw = raw[: len(raw) - len(raw) % width]
            remaining -= len(raw)
            samples = array(typecode)
            samples.frombytes(raw)
            if width == 1:  # 8-bit WAV is unsigned
                samples = array("h", ((s & 0xFF) - 128 for s in samples))
            if sys.byteorder == "big" and width > 1:
                samples.byteswap()
            if samples:
                peak = max(peak, max(samples), -min(samples))
                sum_sq += math.fsum(float(s) * s for s in samples)
                count += len(samples)
                carry.extend(samples)
                whole = len(carry) - len(carry) % stretch
                for start in range(0, whole, stretch):
                    part = carry[start:start + stretch]
                    envelope.append((min(part), max(part)))
                del carry[:whole]
    if carry:
        envelope.append((min(carry), max(carry)))
    scale = 2.0 ** -shift  # 8-bit samples up by 256, 32-bit ones down by 65536
    rms = math.sqrt(sum_sq / count) * scale if count else 0.0
    frames = count // layout.channels if layout.channels else 0
    return AudioStats(str(path), layout.header_complete, layout.channels, layout.rate, layout.bits, frames,
                      int(peak * scale), rms, tuple((int(lo * scale), int(hi * scale)) for lo, hi in envelope))


def is_silent(stats: AudioStats, peak_threshold: int, rms_threshold: float) -> bool:
    """Silent unless the peak or the RMS exceeds its threshold (the old harness: 200 / 50)."""
    return not (stats.peak > peak_threshold or stats.rms > rms_threshold)
