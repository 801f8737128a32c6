"""Run options: the validated form of the ``run`` flags. The device families' own flags live with
each family (``harness/devices``); these are the run's."""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.devices import Device, Layout, default_devices, devices_from_args
from harness.errors import UsageError
from harness.outputs import SERIAL_LOG, check_path_text

MIN_PROGRESS_INTERVAL_S = 0.1  # ten console lines a second at most: a log, not a flood
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
    layout: Layout = Layout.CONTRACT
    msix_vectors: int | None = None
    disable_msix: bool = False
    require_irq: Literal["intx", "msi"] | None = None
    pci_preflight: bool = True
    network_isolation: Literal["auto", "on", "off"] = "auto"
    devices: tuple[Device, ...] = field(default_factory=default_devices)
    out_dir: Path = Path("out")
    serial_log: Path | None = None
    follow_serial: bool = False
    raw_serial: bool = False
    stop_on_stdin_eof: bool = False
    quiet: bool = False
    progress_interval_s: float = 30.0
    log_format: Literal["text", "json"] = "text"

    @property
    def serial_log_path(self) -> Path:
        return self.serial_log if self.serial_log is not None else self.out_dir / SERIAL_LOG

    def device(self, kind: type[Device]) -> Device:
        return next(d for d in self.devices if isinstance(d, kind))

    def check(self) -> None:
        """The checks that need no file system or QEMU; UsageError on the first problem."""
        for flag, path in (("--disk-image", self.disk_image), ("--out-dir", self.out_dir),
                           ("--serial-log", self.serial_log)):
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
        if self.snapshot and self.write_to_image:
            raise UsageError("--snapshot and --write-to-image exclude each other")
        if self.raw_serial and not self.follow_serial:
            raise UsageError("--raw-serial needs --follow-serial")
        if not math.isfinite(self.progress_interval_s) or not self.progress_interval_s >= MIN_PROGRESS_INTERVAL_S:
            raise UsageError(f"--progress-interval must be a number of seconds of at least "
                             f"{MIN_PROGRESS_INTERVAL_S:g}, not {self.progress_interval_s:g}")
        if self.msix_vectors is not None:
            from harness.devices.base import MAX_VECTORS

            if not 0 <= self.msix_vectors <= MAX_VECTORS:
                raise UsageError(f"--virtio-msix-vectors must be between 0 and {MAX_VECTORS}, not {self.msix_vectors}")
            if self.disable_msix:
                raise UsageError("--virtio-disable-msix and --virtio-msix-vectors exclude each other "
                                 "(INTx only means vectors=0)")


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
    require_irq = "intx" if args.require_intx else "msi" if args.require_msi else None
    if args.require_intx and args.require_msi:
        raise UsageError("--require-intx and --require-msi exclude each other")
    values: dict[str, object] = dict(
        disk_image=args.disk_image, qemu_system=args.qemu_system, snapshot=args.snapshot,
        write_to_image=args.write_to_image, memory_mb=args.memory_mb, smp=args.smp, accel=args.accel,
        timeout_s=args.timeout_seconds, dry_run=args.dry_run, qemu_extra=_extra(args),
        layout=Layout(args.virtio_layout), msix_vectors=args.virtio_msix_vectors,
        disable_msix=args.virtio_disable_msix, require_irq=require_irq, pci_preflight=not args.no_qemu_preflight_pci,
        network_isolation=args.network_isolation,
        devices=devices_from_args(args), out_dir=out_dir, serial_log=args.serial_log,
        follow_serial=args.follow_serial, raw_serial=args.raw_serial, stop_on_stdin_eof=args.stop_on_stdin_eof,
        quiet=args.quiet, progress_interval_s=args.progress_interval, log_format=args.log_format,
    )
    values.update(overrides)
    return RunOptions(**values)  # type: ignore[arg-type]
