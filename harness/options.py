"""Run options: the validated form of the ``run`` flags."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.errors import UsageError

OUT_DIR_ENV = "AERO_OUT_DIR"  # the container sets it to /out


@dataclass(frozen=True)
class RunOptions:
    disk_image: Path
    qemu_system: str = "qemu-system-x86_64"
    snapshot: bool = False
    write_to_image: bool = False
    memory_mb: int = 2048
    smp: int = 2
    accel: Literal["auto", "kvm", "tcg"] = "auto"
    timeout_s: float = 600.0
    dry_run: bool = False
    qemu_extra: tuple[str, ...] = field(default_factory=tuple)
    http_port: int = 18080
    http_path: str = "/aero-virtio-selftest"
    udp_port: int = 18081
    enable_snd: bool = False
    snd_backend: Literal["none", "wav"] = "none"
    wav_path: Path | None = None
    audio_peak_threshold: int = 200
    audio_rms_threshold: float = 50.0
    out_dir: Path = Path("out")
    serial_log: Path | None = None
    follow_serial: bool = False
    log_format: Literal["text", "json"] = "text"

    @property
    def serial_log_path(self) -> Path:
        return self.serial_log if self.serial_log is not None else self.out_dir / "serial.log"

    @property
    def wav_capture_path(self) -> Path | None:
        if not self.enable_snd or self.snd_backend != "wav":
            return None
        return self.wav_path if self.wav_path is not None else self.out_dir / "virtio-snd.wav"

    def check(self) -> None:
        """The checks that need no file system or QEMU; UsageError on the first problem."""
        if not self.timeout_s > 0:
            raise UsageError(f"--timeout-seconds must be greater than 0, not {self.timeout_s:g}")
        if self.memory_mb < 16:
            raise UsageError(f"--memory-mb must be at least 16, not {self.memory_mb}")
        if self.smp < 1:
            raise UsageError(f"--smp must be at least 1, not {self.smp}")
        for flag, port in (("--http-port", self.http_port), ("--udp-port", self.udp_port)):
            if not 1 <= port <= 65535:
                raise UsageError(f"{flag} must be between 1 and 65535, not {port}")
        if not self.http_path.startswith("/") or any(c.isspace() for c in self.http_path):
            raise UsageError(f"--http-path must start with '/' and hold no spaces: {self.http_path!r}")
        if self.snapshot and self.write_to_image:
            raise UsageError("--snapshot and --write-to-image exclude each other")
        if self.snd_backend == "wav" and not self.enable_snd:
            raise UsageError("--virtio-snd-audio-backend wav needs --enable-virtio-snd")
        if self.wav_path is not None and self.wav_capture_path is None:
            raise UsageError("--virtio-snd-wav-path needs --enable-virtio-snd --virtio-snd-audio-backend wav")
        for flag, path in (("--serial-log", self.serial_log), ("--virtio-snd-wav-path", self.wav_path)):
            if path is not None:
                _check_output_file(flag, path)


def _check_output_file(flag: str, path: Path) -> None:
    if path.is_dir():
        raise UsageError(f"{flag} is a directory: {path}")
    if not path.parent.is_dir():
        raise UsageError(f"{flag}: directory does not exist: {path.parent}")


def _extra(args: argparse.Namespace) -> tuple[str, ...]:
    extra = list(getattr(args, "qemu_extra", None) or [])
    if extra and extra[0] == "--":
        extra = extra[1:]
    elif extra:
        raise UsageError(f"unexpected argument: {extra[0]} (QEMU arguments go after --)")
    return tuple(extra)


def options_from_args(args: argparse.Namespace, **overrides: object) -> RunOptions:
    out_dir = args.out_dir if args.out_dir is not None else Path(os.environ.get(OUT_DIR_ENV, "out"))
    values: dict[str, object] = dict(
        disk_image=args.disk_image, qemu_system=args.qemu_system, snapshot=args.snapshot,
        write_to_image=args.write_to_image, memory_mb=args.memory_mb, smp=args.smp, accel=args.accel,
        timeout_s=args.timeout_seconds, dry_run=args.dry_run, qemu_extra=_extra(args),
        http_port=args.http_port, http_path=args.http_path, udp_port=args.udp_port,
        enable_snd=args.enable_virtio_snd, snd_backend=args.virtio_snd_audio_backend,
        wav_path=args.virtio_snd_wav_path, audio_peak_threshold=args.audio_peak_threshold,
        audio_rms_threshold=args.audio_rms_threshold, out_dir=out_dir, serial_log=args.serial_log,
        follow_serial=args.follow_serial, log_format=args.log_format,
    )
    values.update(overrides)
    return RunOptions(**values)  # type: ignore[arg-type]
