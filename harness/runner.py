"""One harness run: validate, boot, serve, watch COM1, decide, clean up, report."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.artifacts import RunRecord, write_junit, write_results
from harness.audio import WavError, analyze, is_silent
from harness.disk import DiskImage, GuestDisk, create_overlay, plan_guest_disk, validate_image
from harness.errors import ExitCode, HarnessError, InfraError, InterruptedRun, UsageError
from harness.logsetup import add_file_log, get_logger, remove_handler, setup_console
from harness.options import RunOptions, options_from_args
from harness.protocol import Record
from harness.qemu.accel import choose_accel
from harness.qemu.binary import QemuBinary, probe_qemu, qemu_img_for
from harness.qemu.cmdline import render
from harness.qemu.command import SND_DEVICE, QemuSpec, SoundSpec, build_argv
from harness.qemu.machine import QemuEndedEarly, QemuMachine, tail_of
from harness.serialport import SerialCapture
from harness.services import guest_services
from harness.verdict import (GuestReport, Verdict, audio_silent_verdict, judge, qemu_exited_verdict,
                             required_tests, timeout_verdict)

HARNESS_LOG = "harness.log"
QEMU_STDERR_LOG = "qemu.stderr.log"
HTTP_LOG = "http.log"
SCREENSHOT = "screenshot.png"
SERIAL_DRAIN_S = 2.0
GIL_SWITCH_INTERVAL_S = 0.0005
RUNTIME_PREFIX = "aero-win7-harness-"
log = get_logger("run")


@dataclass(frozen=True)
class Prepared:
    """Everything checked before anything boots."""

    qemu: QemuBinary
    qemu_img: str
    image: DiskImage
    disk: GuestDisk
    required: tuple[str, ...]

    def spec(self, opts: RunOptions, accel: str, runtime_dir: Path) -> QemuSpec:
        """``runtime_dir``: a short private folder for the Unix sockets (limited to 108 bytes)."""
        sound = None
        if opts.enable_snd:
            sound = SoundSpec(opts.snd_backend, _absolute(opts.wav_capture_path))
        return QemuSpec(
            qemu=self.qemu.path, accel=accel, memory_mb=opts.memory_mb, smp=opts.smp,  # type: ignore[arg-type]
            disk=self.disk, serial_socket=runtime_dir / "com1.sock", qmp_socket=runtime_dir / "qmp.sock",
            sound=sound, extra=opts.qemu_extra)


def _absolute(path: Path | None) -> Path | None:
    return None if path is None else path.absolute()


def prepare(opts: RunOptions) -> Prepared:
    """Validate the options against the file system and QEMU; UsageError on the first problem."""
    opts.check()
    qemu = probe_qemu(opts.qemu_system)
    if opts.enable_snd and not qemu.has_device(SND_DEVICE):
        raise UsageError(f"QEMU {qemu.version_str} ({qemu.path}) has no {SND_DEVICE} device, needed by "
                         "--enable-virtio-snd (QEMU 8.2 or later has it; the Docker image ships one)")
    qemu_img = qemu_img_for(qemu.path)
    image = validate_image(opts.disk_image, qemu_img)
    if opts.out_dir.exists() and not opts.out_dir.is_dir():
        raise UsageError(f"--out-dir is not a directory: {opts.out_dir}")
    disk = plan_guest_disk(image, opts.out_dir.absolute(), snapshot=opts.snapshot,
                           write_to_image=opts.write_to_image)
    return Prepared(qemu, qemu_img, image, disk, required_tests(opts.enable_snd))


def run_from_args(args: argparse.Namespace) -> int:
    return run(options_from_args(args))


def run(opts: RunOptions) -> int:
    """Run the harness; prints the verdict line last and returns the exit code."""
    setup_console(opts.log_format)
    prepared = prepare(opts)
    if opts.dry_run:
        if opts.accel == "auto":
            log.info("--dry-run with --accel auto: KVM is not probed; the command lists QEMU's own fallback")
        placeholder = Path(tempfile.gettempdir(), f"{RUNTIME_PREFIX}XXXXXXXX")  # made fresh by a real run
        print(render(build_argv(prepared.spec(opts, opts.accel, placeholder))), flush=True)
        return int(ExitCode.PASS)
    return asyncio.run(Session(opts, prepared).execute())


@dataclass
class Session:
    opts: RunOptions
    prepared: Prepared
    report: GuestReport = field(default_factory=GuestReport)
    accel: str | None = None
    argv: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    result_received: float | None = None
    verdict_printed: float | None = None
    printed: Verdict | None = None

    async def execute(self) -> int:
        opts = self.opts
        started = time.monotonic()
        try:
            opts.out_dir.mkdir(parents=True, exist_ok=True)
            handler = add_file_log(opts.out_dir / HARNESS_LOG)
        except OSError as err:
            raise UsageError(f"cannot write to --out-dir {opts.out_dir}: {err.strerror} "
                             f"(uid {os.getuid()}; in Docker, run with --user \"$(id -u):$(id -g)\")") from err
        # The service and child-watcher threads could otherwise hold the GIL for CPython's default
        # 5 ms switch interval right when the RESULT line arrives; the verdict must follow in ~1 ms.
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        # From here to the end, SIGINT/SIGTERM only ask the run to stop: QEMU is always shut down
        # and the reports written, whatever phase the signal lands in.
        self._interrupted: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        restore = _install_signal_handlers(self._interrupted)
        try:
            try:
                verdict = await self._run()
            except HarnessError as err:
                verdict = Verdict(err.token, err.exit_code, err.detail)
            except Exception as err:  # noqa: BLE001 - reported as one INFRA line; the traceback goes to harness.log
                log.exception("internal error")
                verdict = Verdict("INFRA", ExitCode.INFRA, f"internal error: {type(err).__name__}: {err}")
            if self.printed is not None and verdict != self.printed:
                log.error("after the verdict was printed: %s", verdict.line())
                verdict = self.printed  # what stdout said is what the exit code says
            self._print(verdict)
            self._write_reports(verdict, time.monotonic() - started)
            log.info("verdict", extra={"token": verdict.token, "exit_code": int(verdict.exit_code)})
            return int(verdict.exit_code)
        finally:
            restore()
            remove_handler(handler)

    async def _stop_if_interrupted(self) -> None:
        await asyncio.sleep(0)  # let a signal that came during blocking work reach its handler
        if self._interrupted.done():
            raise InterruptedRun(f"stopped by {self._interrupted.result()} before QEMU started")

    async def _run(self) -> Verdict:
        opts, prepared = self.opts, self.prepared
        self.accel = choose_accel(opts.accel, prepared.qemu.path)
        await self._stop_if_interrupted()
        create_overlay(prepared.qemu_img, prepared.image, prepared.disk)
        self.extra["disk"] = {"image": str(prepared.image.path), "format": prepared.image.format,
                              "mode": prepared.disk.mode.value, "opened": str(prepared.disk.file)}
        wav = opts.wav_capture_path
        if wav is not None:
            wav.unlink(missing_ok=True)  # a stale capture must not pass for this run's
        runtime_dir = Path(tempfile.mkdtemp(prefix=RUNTIME_PREFIX))  # private (0700), unpredictable
        try:
            self.argv = build_argv(prepared.spec(opts, self.accel, runtime_dir))
            log.info("QEMU command: %s", render(self.argv))
            with guest_services(opts.http_port, opts.http_path, opts.udp_port, opts.out_dir / HTTP_LOG):
                await self._stop_if_interrupted()
                verdict = await self._boot_and_watch(runtime_dir)
        finally:
            shutil.rmtree(runtime_dir, ignore_errors=True)
        if wav is not None and verdict.passed:
            verdict = self._check_audio(wav)
        return verdict

    def _on_records(self, records: list[Record], received: float) -> None:
        for record in records:
            self.report.add(record)
            log.info("guest: %s", record.text)
            if self.report.result is not None and self.result_received is None:
                self.result_received = received
                self._result_event.set()

    async def _boot_and_watch(self, runtime_dir: Path) -> Verdict:
        opts = self.opts
        self._result_event = asyncio.Event()
        serial = SerialCapture(runtime_dir / "com1.sock", opts.serial_log_path, self._on_records,
                               follow=opts.follow_serial)
        await serial.start()
        stderr_path = opts.out_dir / QEMU_STDERR_LOG
        stderr_path.unlink(missing_ok=True)
        machine = QemuMachine(self.argv, runtime_dir / "qmp.sock", stderr_path)
        try:
            try:
                await machine.start()
            except QemuEndedEarly as early:
                if early.returncode is None:
                    raise InfraError(f"QEMU did not open its QMP connection: {tail_of(stderr_path)}") from early
                return qemu_exited_verdict(self.report, early.returncode, tail_of(stderr_path))
            self.extra["qemu_pid"] = machine.proc.pid if machine.proc else None
            verdict = await self._await_outcome(machine, serial, self._interrupted, stderr_path)
            serial.stop_following()
            if not verdict.passed and verdict.exit_code != ExitCode.INTERRUPTED and machine.running:
                shot = opts.out_dir / SCREENSHOT
                if await machine.screendump(shot.absolute()):
                    self.extra["screenshot"] = str(shot)
            if opts.wav_capture_path is None or not verdict.passed:
                self._print(verdict)  # as soon as it is known; nothing below can change it
            return verdict
        finally:
            await machine.shutdown()
            await serial.close()
            self.extra["serial_bytes"] = serial.bytes_received

    async def _await_outcome(self, machine: QemuMachine, serial: SerialCapture,
                             interrupted: asyncio.Future[str], stderr_path: Path) -> Verdict:
        result = asyncio.ensure_future(self._result_event.wait())
        exited = asyncio.ensure_future(machine.wait())
        waiters: set[asyncio.Future[Any]] = {result, exited, interrupted}
        try:
            done, _ = await asyncio.wait(waiters, timeout=self.opts.timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            result.cancel()
            exited.cancel()
        if self.report.result is not None:
            return judge(self.report, self.prepared.required)
        if interrupted in done:
            return Verdict("INTERRUPTED", ExitCode.INTERRUPTED, f"stopped by {interrupted.result()}; QEMU was shut down")
        if exited in done:
            await serial.drain(SERIAL_DRAIN_S)  # a RESULT written just before power-off still counts
            if self.report.result is not None:
                return judge(self.report, self.prepared.required)
            return qemu_exited_verdict(self.report, machine.returncode, tail_of(stderr_path))
        return timeout_verdict(self.report, self.opts.timeout_s)

    def _check_audio(self, wav: Path) -> Verdict:
        try:
            stats = analyze(wav)
        except (OSError, WavError) as err:
            return audio_silent_verdict(f"no usable capture at {wav}: {err}")
        self.extra["audio"] = stats.to_json()
        if not stats.header_complete:
            log.warning("WAV header incomplete (QEMU did not quit cleanly): %s", wav)
        if is_silent(stats, self.opts.audio_peak_threshold, self.opts.audio_rms_threshold):
            return audio_silent_verdict(
                f"guest passed but the capture is silent: peak {stats.peak} (> {self.opts.audio_peak_threshold} "
                f"needed) and RMS {stats.rms:.1f} (> {self.opts.audio_rms_threshold:g} needed) over "
                f"{stats.seconds:.2f} s in {wav}")
        log.info("audio capture: peak %d, RMS %.1f, %.2f s", stats.peak, stats.rms, stats.seconds)
        return Verdict("PASS", ExitCode.PASS, "AERO_VIRTIO_SELFTEST|RESULT|PASS")

    def _print(self, verdict: Verdict) -> None:
        if self.printed is None:
            print(verdict.line(), flush=True)
            self.verdict_printed = time.monotonic()
            self.printed = verdict

    def _write_reports(self, verdict: Verdict, duration: float) -> None:
        if self.result_received is not None and self.verdict_printed is not None:
            self.extra["timing"] = {
                "detection_latency_ms": round((self.verdict_printed - self.result_received) * 1000, 3)}
        record = RunRecord(verdict=verdict, report=self.report, required=self.prepared.required, accel=self.accel,
                           qemu_version=self.prepared.qemu.version_text, qemu_argv=self.argv, duration_s=duration,
                           extra=self.extra)
        for write in (write_results, write_junit):
            try:
                write(record, self.opts.out_dir)
            except Exception:  # noqa: BLE001 - a report that cannot be written must not change the verdict
                log.exception("could not write a report (%s) to %s", write.__name__, self.opts.out_dir)


def _install_signal_handlers(interrupted: asyncio.Future[str]) -> Any:
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        log.warning("%s received: shutting QEMU down", sig.name)
        if not interrupted.done():
            interrupted.set_result(sig.name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)

    def restore() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    return restore
