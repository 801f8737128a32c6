"""The WAV check: real WAV files written the way QEMU's wav backend writes them."""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

import pytest

from harness.audio import WavError, analyze, is_silent


def write_wav(path: Path, samples: list[int], *, channels: int = 2, width: int = 2, rate: int = 44100) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        fmt = {1: "B", 2: "h", 4: "i"}[width]
        out.writeframes(struct.pack(f"<{len(samples)}{fmt}", *samples))
    return path


def tone(amplitude: float, frames: int = 44100, channels: int = 2) -> list[int]:
    return [int(amplitude * math.sin(2 * math.pi * 440 * i / 44100)) for i in range(frames) for _ in range(channels)]


def test_a_tone_is_not_silent(tmp_path: Path) -> None:
    stats = analyze(write_wav(tmp_path / "t.wav", tone(8000)))
    assert stats.header_complete and stats.channels == 2 and stats.sample_rate == 44100 and stats.frames == 44100
    assert 7990 <= stats.peak <= 8000 and stats.rms == pytest.approx(8000 / math.sqrt(2), rel=0.01)
    assert not is_silent(stats, 200, 50)
    assert stats.to_json()["seconds"] == 1.0


def test_digital_silence_and_faint_noise_are_silent(tmp_path: Path) -> None:
    assert is_silent(analyze(write_wav(tmp_path / "z.wav", [0] * 88200)), 200, 50)
    faint = analyze(write_wav(tmp_path / "f.wav", [(-1) ** i * 30 for i in range(88200)]))
    assert (faint.peak, round(faint.rms)) == (30, 30) and is_silent(faint, 200, 50)
    assert not is_silent(faint, 200, 20)  # the thresholds are the caller's


def test_a_single_click_passes_on_peak(tmp_path: Path) -> None:
    samples = [0] * 88200
    samples[1000] = 5000
    stats = analyze(write_wav(tmp_path / "c.wav", samples))
    assert stats.peak == 5000 and stats.rms < 50 and not is_silent(stats, 200, 50)


def test_eight_and_thirty_two_bit_are_scaled_to_sixteen(tmp_path: Path) -> None:
    eight = analyze(write_wav(tmp_path / "8.wav", [128 + 64, 128 - 64] * 100, channels=1, width=1))
    assert eight.peak == 64 * 256
    big = analyze(write_wav(tmp_path / "32.wav", [1 << 28, -(1 << 28)] * 100, channels=1, width=4))
    assert big.peak == (1 << 28) >> 16


def test_a_header_left_incomplete_by_a_killed_qemu_is_still_read(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "k.wav", tone(8000, frames=4410))
    data = bytearray(path.read_bytes())
    data[4:8] = b"\0\0\0\0"  # RIFF size
    data[40:44] = b"\0\0\0\0"  # data size: QEMU fixes both only when it quits cleanly
    path.write_bytes(bytes(data))
    stats = analyze(path)
    assert not stats.header_complete and stats.frames == 4410 and stats.peak > 7900


def test_a_finished_capture_without_samples_is_complete_and_silent(tmp_path: Path) -> None:
    stats = analyze(write_wav(tmp_path / "e.wav", []))
    assert stats.header_complete and stats.frames == 0 and stats.peak == 0 and is_silent(stats, 200, 50)


@pytest.mark.parametrize("content", [b"", b"RIFF\0\0\0\0WAVE", b"not a wav at all, just text"])
def test_not_a_wav(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(WavError):
        analyze(path)
