"""Run options: the validated form of the ``run`` flags."""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.errors import UsageError
from harness.outputs import SERIAL_LOG, WAV, check_path_text

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
    raw_serial: bool = False
    stop_on_stdin_eof: bool = False
    log_format: Literal["text", "json"] = "text"

    @property
    def serial_log_path(self) -> Path:
        return self.serial_log if self.serial_log is not None else self.out_dir / SERIAL_LOG

    @property
    def wav_capture_path(self) -> Path | None:
        if not self.enable_snd or self.snd_backend != "wav":
            return None
        return self.wav_path if self.wav_path is not None else self.out_dir / WAV

    def check(self) -> None:
        """The checks that need no file system or QEMU; UsageError on the first problem."""
        for flag, path in (("--disk-image", self.disk_image), ("--out-dir", self.out_dir),
                           ("--serial-log", self.serial_log), ("--virtio-snd-wav-path", self.wav_path)):
            if path is not None:
                check_path_text(flag, path)
        if not math.isfinite(self.timeout_s) or not self.timeout_s > 0:
            raise UsageError(f"--timeout-seconds must be a finite number greater than 0, not {self.timeout_s:g}")
        if self.memory_mb < 16:
            raise UsageError(f"--memory-mb must be at least 16, not {self.memory_mb}")
        host_mb = host_memory_mb()
        if host_mb is not None and self.memory_mb > host_mb:
            raise UsageError(f"--memory-mb {self.memory_mb} is more than this host (or container) has: {host_mb} MB")
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
        if self.raw_serial and not self.follow_serial:
            raise UsageError("--raw-serial needs --follow-serial")


def host_memory_mb() -> int | None:
    """What a guest may get here: the host's memory, or the container's (cgroup) limit if lower."""
    limits = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                limits.append(int(line.split()[1]) // 1024)
    except (OSError, ValueError, IndexError):
        pass
    for cgroup_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(cgroup_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            limits.append(int(text) // (1024 * 1024))
    return min(limits) if limits else None


def default_out_dir() -> Path:
    """$AERO_OUT_DIR, else ./out; an AERO_OUT_DIR that is set but empty is a mistake, not the current folder."""
    value = os.environ.get(OUT_DIR_ENV)
    if value is None:
        return Path("out")
    if not value.strip():
        raise UsageError(f"{OUT_DIR_ENV} is set but empty: unset it or give the output folder")
    return Path(value)


def _extra(args: argparse.Namespace) -> tuple[str, ...]:
    extra = list(getattr(args, "qemu_extra", None) or [])
    if extra and extra[0] == "--":
        extra = extra[1:]
    elif extra:
        raise UsageError(f"unexpected argument: {extra[0]} (QEMU arguments go after --)")
    return tuple(extra)


def options_from_args(args: argparse.Namespace, **overrides: object) -> RunOptions:
    out_dir = args.out_dir if args.out_dir is not None else default_out_dir()
    values: dict[str, object] = dict(
        disk_image=args.disk_image, qemu_system=args.qemu_system, snapshot=args.snapshot,
        write_to_image=args.write_to_image, memory_mb=args.memory_mb, smp=args.smp, accel=args.accel,
        timeout_s=args.timeout_seconds, dry_run=args.dry_run, qemu_extra=_extra(args),
        http_port=args.http_port, http_path=args.http_path, udp_port=args.udp_port,
        enable_snd=args.enable_virtio_snd, snd_backend=args.virtio_snd_audio_backend,
        wav_path=args.virtio_snd_wav_path, audio_peak_threshold=args.audio_peak_threshold,
        audio_rms_threshold=args.audio_rms_threshold, out_dir=out_dir, serial_log=args.serial_log,
        follow_serial=args.follow_serial, raw_serial=args.raw_serial, stop_on_stdin_eof=args.stop_on_stdin_eof,
        log_format=args.log_format,
    )
    values.update(overrides)
    return RunOptions(**values)  # type: ignore[arg-type]
