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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from harness.artifacts import RunRecord, write_junit, write_results
from harness.audio import WavError, analyze, is_silent
from harness.disk import DiskImage, GuestDisk, WriteMode, create_overlay, plan_guest_disk, validate_image
from harness.errors import ExitCode, HarnessError, InfraError, InterruptedRun, UsageError
from harness.logsetup import add_file_log, get_logger, quiet_console, remove_handler, setup_console
from harness.options import RunOptions, options_from_args
from harness.outputs import (HARNESS_LOG, HTTP_LOG, JUNIT, LOCK, OVERLAY, QEMU_STDERR_LOG, REPORT_HTML, RESULTS,
                             SCREENSHOT, Protected, check_outputs, clear_stale, lock_out_dir, partial_file,
                             unwritable_out_dir, write_atomically)
from harness.protocol import Record
from harness.qemu.accel import abort_probes, choose_accel
from harness.qemu.binary import QemuBinary, probe_qemu, qemu_img_for
from harness.qemu.cmdline import render
from harness.qemu.capabilities import capabilities
from harness.qemu.command import MACHINE, SND_DEVICE, QemuSpec, SoundSpec, build_argv
from harness.qemu.extra import check_extra_args
from harness.qemu.machine import QemuEndedEarly, QemuMachine, tail_of
from harness.runtime import RUNTIME_PREFIX, make_runtime_dir, sweep_stale
from harness.serialport import SerialCapture
from harness.services import guest_services
from harness.verdict import (GuestReport, Verdict, audio_silent_verdict, judge, qemu_exited_verdict,
                             required_tests, timeout_verdict)

SERIAL_DRAIN_S = 2.0
GIL_SWITCH_INTERVAL_S = 0.0005
log = get_logger("run")
T = TypeVar("T")


@dataclass(frozen=True)
class Prepared:
    """Everything checked before anything boots."""

    qemu: QemuBinary
    qemu_img: str
    image: DiskImage
    disk: GuestDisk
    required: tuple[str, ...]

    def spec(self, opts: RunOptions, accel: str, runtime_dir: Path, wav_file: Path | None = None) -> QemuSpec:
        """``runtime_dir``: a short private folder for the Unix sockets (limited to 108 bytes);
        ``wav_file``: where QEMU writes the capture (renamed to its final place afterwards)."""
        sound = None
        if opts.enable_snd:
            wav = wav_file if wav_file is not None else opts.wav_capture_path
            sound = SoundSpec(opts.snd_backend, None if wav is None else wav.absolute())
        return QemuSpec(
            qemu=self.qemu.path, accel=accel, memory_mb=opts.memory_mb, smp=opts.smp,  # type: ignore[arg-type]
            disk=self.disk, serial_socket=runtime_dir / "com1.sock", qmp_socket=runtime_dir / "qmp.sock",
            sound=sound, extra=opts.qemu_extra)


def output_files(opts: RunOptions, disk: GuestDisk | None) -> list[tuple[str, Path]]:
    """Every file a run writes, with the flag that names it (for the one-line refusals); the
    overlay only once ``disk`` says there is one."""
    out = opts.out_dir
    files = [("--serial-log" if opts.serial_log else "--out-dir", opts.serial_log_path)]
    wav = opts.wav_capture_path
    if wav is not None:
        files.append(("--virtio-snd-wav-path" if opts.wav_path else "--out-dir", wav))
    names = [HARNESS_LOG, QEMU_STDERR_LOG, HTTP_LOG, RESULTS, JUNIT, REPORT_HTML, SCREENSHOT, LOCK]
    if disk is not None and disk.mode is WriteMode.OVERLAY:
        names.append(OVERLAY)
    files += [("--out-dir", out / name) for name in names]
    if not out.is_dir():  # created by the run: nothing can be in the way inside it
        files = [(flag, path) for flag, path in files if not path.is_relative_to(out)]
    return files


def prepare(opts: RunOptions) -> Prepared:
    """Validate the options against the file system and QEMU; UsageError on the first problem."""
    opts.check()
    check_extra_args(opts.qemu_extra)
    # The output paths first against the image itself (cheap, before QEMU is asked anything), then
    # below against its whole backing chain, which qemu-img reads.
    check_outputs(output_files(opts, None), Protected.of((opts.disk_image,)))
    qemu = probe_qemu(opts.qemu_system)
    cpu_max = capabilities(qemu.path).max_cpus(MACHINE)
    if cpu_max and opts.smp > cpu_max:
        raise UsageError(f"--smp {opts.smp} is more than QEMU's {MACHINE} machine takes ({cpu_max} CPUs)")
    if opts.enable_snd and not qemu.has_device(SND_DEVICE):
        raise UsageError(f"QEMU {qemu.version_str} ({qemu.path}) has no {SND_DEVICE} device, needed by "
                         "--enable-virtio-snd (QEMU 8.2 or later has it; the Docker image ships one)")
    qemu_img = qemu_img_for(qemu.path)
    image = validate_image(opts.disk_image, qemu_img)
    if opts.out_dir.exists() and not opts.out_dir.is_dir():
        raise UsageError(f"--out-dir is not a directory: {opts.out_dir}")
    disk = plan_guest_disk(image, opts.out_dir.absolute(), snapshot=opts.snapshot,
                           write_to_image=opts.write_to_image)
    check_outputs(output_files(opts, disk), Protected.of((image.path, *image.chain)))
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
    machine: QemuMachine | None = None

    async def execute(self) -> int:
        opts = self.opts
        started = time.monotonic()
        try:
            opts.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise unwritable_out_dir(opts.out_dir, err) from err
        # The service and child-watcher threads could otherwise hold the GIL for CPython's default
        # 5 ms switch interval right when the RESULT line arrives; the verdict must follow in ~1 ms.
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        # From here to the end, SIGINT/SIGTERM ask the run to stop within a second, whatever phase
        # the signal lands in: QEMU is always shut down and the reports written. A second signal
        # kills QEMU at once.
        loop = asyncio.get_running_loop()
        self._interrupted: asyncio.Future[str] = loop.create_future()
        self._ending: asyncio.Future[Verdict] = loop.create_future()  # a watcher ends the run early
        restore = _install_signal_handlers(self._on_signal)
        if opts.stop_on_stdin_eof:
            restore = _watch_stdin(self._stop, restore)
        try:
            with lock_out_dir(opts.out_dir):
                removed = clear_stale(opts.out_dir)
                try:
                    handler = add_file_log(opts.out_dir / HARNESS_LOG)
                except OSError as err:
                    raise unwritable_out_dir(opts.out_dir, err) from err
                try:
                    if removed:
                        log.info("removed the previous run's reports: %s", ", ".join(removed))
                    sweep_stale()
                    return self._finish(await self._decide(), time.monotonic() - started, handler)
                finally:
                    remove_handler(handler)
        finally:
            restore()
            quiet_console(False)

    async def _decide(self) -> Verdict:
        try:
            return await self._run()
        except HarnessError as err:
            return Verdict(err.token, err.exit_code, err.detail)
        except Exception as err:  # noqa: BLE001 - reported as one INFRA line; the traceback goes to harness.log
            log.exception("internal error")
            return Verdict("INFRA", ExitCode.INFRA, f"internal error: {type(err).__name__}: {err}")

    def _finish(self, verdict: Verdict, duration: float, handler: Any) -> int:
        if self._interrupted.done() and verdict.exit_code != ExitCode.INTERRUPTED:
            # A signal wins over what was found before it: the run was stopped before it ended.
            if self.printed is not None:
                self.extra["interrupted_after"] = self.printed.line()
            verdict = Verdict("INTERRUPTED", ExitCode.INTERRUPTED,
                              f"stopped {self._interrupted.result()}; QEMU was shut down")
            self.printed = None
        elif self.printed is not None and verdict != self.printed:
            log.error("after the verdict was printed: %s", verdict.line())
            verdict = self.printed  # what stdout said is what the exit code says
        self._print(verdict)
        if handler.errors_seen:
            self.extra["harness_log_error"] = f"{handler.first_error} ({handler.errors_seen} records lost)"
        self._write_reports(verdict, duration)
        log.debug("verdict", extra={"token": verdict.token, "exit_code": int(verdict.exit_code)})
        return int(verdict.exit_code)

    # -- signals ----------------------------------------------------------------------------------

    def _on_signal(self, sig: signal.Signals) -> None:
        self._stop(f"by {sig.name}")

    def _stop(self, why: str) -> None:
        """Stop the run within a second (a signal, or the launcher's stdin closing); again: kill QEMU.
        ``why`` completes "stopped ...": "by SIGTERM", "because ..."."""
        if not self._interrupted.done():
            log.warning("stopped %s: shutting QEMU down", why)
            self._interrupted.set_result(why)
            abort_probes()
            if self.machine is not None:
                self.machine.hurry()
            return
        log.warning("stopped %s again: killing QEMU", why)
        if self.machine is not None:
            self.machine.kill()

    async def _interruptible(self, work: Awaitable[T], during: str) -> T:
        """``work``, unless a signal comes first: then it is cancelled and InterruptedRun raised."""
        task = asyncio.ensure_future(work)
        await asyncio.wait({task, self._interrupted}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise InterruptedRun(f"stopped {self._interrupted.result()} {during}")

    def end_run(self, verdict: Verdict) -> None:
        """A watcher (QMP events, later the CONFIG checks) ends the run now with ``verdict``."""
        if not self._ending.done():
            self._ending.set_result(verdict)

    # -- phases -----------------------------------------------------------------------------------

    async def _run(self) -> Verdict:
        opts, prepared = self.opts, self.prepared
        self.accel = await self._interruptible(asyncio.to_thread(choose_accel, opts.accel, prepared.qemu.path),
                                               "before QEMU started (while probing KVM)")
        create_overlay(prepared.qemu_img, prepared.image, prepared.disk)
        self.extra["disk"] = {"image": str(prepared.image.path), "format": prepared.image.format,
                              "mode": prepared.disk.mode.value, "opened": str(prepared.disk.file)}
        wav = opts.wav_capture_path
        wav_partial = None if wav is None else partial_file(wav)  # renamed onto wav once QEMU is done
        runtime_dir = make_runtime_dir()
        try:
            self.argv = build_argv(prepared.spec(opts, self.accel, runtime_dir, wav_partial))
            log.info("QEMU command: %s", render(self.argv))
            with guest_services(opts.http_port, opts.http_path, opts.udp_port, opts.out_dir / HTTP_LOG):
                if self._interrupted.done():
                    raise InterruptedRun(f"stopped {self._interrupted.result()} before QEMU started")
                verdict = await self._boot_and_watch(runtime_dir)
        finally:
            shutil.rmtree(runtime_dir, ignore_errors=True)
            if wav is not None and wav_partial is not None:
                _settle(wav_partial, wav)
        if wav is not None and verdict.passed:
            verdict = await self._check_audio(wav)
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
                               follow=opts.follow_serial, raw=opts.raw_serial)
        await serial.start()
        stderr_path = opts.out_dir / QEMU_STDERR_LOG
        machine = self.machine = QemuMachine(self.argv, runtime_dir / "qmp.sock", stderr_path)
        if self._interrupted.done():
            machine.hurry()
        try:
            try:
                await self._interruptible(machine.start(), "while QEMU was starting")
            except QemuEndedEarly as early:
                if early.returncode is None:
                    raise InfraError(f"QEMU did not open its QMP connection: {tail_of(stderr_path)}") from early
                return qemu_exited_verdict(self.report, early.returncode, tail_of(stderr_path))
            self.extra["qemu_pid"] = machine.proc.pid if machine.proc else None
            machine.watch_events(self._on_qmp_event)
            verdict = await self._await_outcome(machine, serial, stderr_path)
            serial.stop_following()
            if not verdict.passed and verdict.exit_code != ExitCode.INTERRUPTED and machine.running:
                verdict = await self._screenshot(machine, runtime_dir, verdict)
            if opts.wav_capture_path is None or not verdict.passed:
                self._print(verdict)  # as soon as it is known; nothing below can change it
            return verdict
        except InterruptedRun as stop:
            return Verdict(stop.token, stop.exit_code, stop.detail)
        finally:
            await machine.shutdown()
            await serial.close()
            self.extra["serial_bytes"] = serial.bytes_received
            if serial.log_error:
                self.extra["serial_log_error"] = serial.log_error

    async def _screenshot(self, machine: QemuMachine, runtime_dir: Path, verdict: Verdict) -> Verdict:
        """Save the guest's screen (a bugcheck shows there, not on COM1); a signal cuts it short."""
        shot = runtime_dir / SCREENSHOT
        try:
            taken = await self._interruptible(machine.screendump(shot.absolute()), "while saving the screen")
        except InterruptedRun as stop:
            return Verdict(stop.token, stop.exit_code, f"{stop.detail}; QEMU was shut down")
        if taken:
            try:
                write_atomically(self.opts.out_dir / SCREENSHOT, shot.read_bytes())
                self.extra["screenshot"] = str(self.opts.out_dir / SCREENSHOT)
            except OSError as err:
                log.warning("the screenshot could not be saved: %s", err)
        return verdict

    def _on_qmp_event(self, name: str, data: dict[str, Any]) -> None:
        if name == "BLOCK_IO_ERROR":
            self.extra.setdefault("qmp_events", []).append({"event": name, "data": data})
            self.end_run(_disk_error_verdict(data, self.prepared.disk))

    async def _await_outcome(self, machine: QemuMachine, serial: SerialCapture, stderr_path: Path) -> Verdict:
        result = asyncio.ensure_future(self._result_event.wait())
        exited = asyncio.ensure_future(machine.wait())
        waiters: set[asyncio.Future[Any]] = {result, exited, self._interrupted, self._ending}
        try:
            done, _ = await asyncio.wait(waiters, timeout=self.opts.timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            result.cancel()
            exited.cancel()
        if self.report.result is not None:
            return judge(self.report, self.prepared.required)
        if self._interrupted in done:
            return Verdict("INTERRUPTED", ExitCode.INTERRUPTED,
                           f"stopped {self._interrupted.result()}; QEMU was shut down")
        if self._ending in done:
            return self._ending.result()
        if exited in done:
            await serial.drain(SERIAL_DRAIN_S)  # a RESULT written just before power-off still counts
            if self.report.result is not None:
                return judge(self.report, self.prepared.required)
            return qemu_exited_verdict(self.report, machine.returncode, tail_of(stderr_path))
        return timeout_verdict(self.report, self.opts.timeout_s)

    async def _check_audio(self, wav: Path) -> Verdict:
        stop = asyncio.Event()  # the analysis runs in a thread and stops when asked to
        try:
            stats = await self._interruptible(asyncio.to_thread(analyze, wav, stop.is_set),
                                              "while the capture was analysed")
        except InterruptedRun:
            stop.set()
            raise
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

    # -- output -----------------------------------------------------------------------------------

    def _print(self, verdict: Verdict) -> None:
        if self.printed is None:
            print(verdict.line(), flush=True)
            self.verdict_printed = time.monotonic()
            self.printed = verdict
            quiet_console()  # the verdict stays the last line on the console; harness.log gets the rest

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


def _settle(partial: Path, final: Path) -> None:
    """Move QEMU's capture to its final name (replacing, never writing through, what is there)."""
    try:
        if partial.exists() and partial.stat().st_size > 0:
            os.replace(partial, final)
        else:
            partial.unlink(missing_ok=True)
    except OSError as err:
        log.warning("the capture could not be moved to %s: %s", final, err)


def _disk_error_verdict(data: dict[str, Any], disk: GuestDisk) -> Verdict:
    """QEMU paused the guest on a disk error (BLOCK_IO_ERROR): say which file system, at once."""
    if disk.mode is WriteMode.SNAPSHOT:
        where = Path(os.environ.get("TMPDIR") or "/var/tmp")
        what = f"QEMU's temporary snapshot file in {where}"
    else:
        where = disk.file.parent
        what = str(disk.file)
    try:
        free = shutil.disk_usage(where).free
        space = f", {free // (1024 * 1024)} MiB free"
    except OSError:
        space = ""
    operation = data.get("operation", "write")
    if data.get("nospace"):
        return Verdict("INFRA", ExitCode.INFRA, f"the file system holding the guest's disk writes is full "
                                                f"({what}{space}): QEMU paused the guest on a {operation} error; "
                                                "free space there or pass another --out-dir")
    reason = data.get("reason") or "I/O error"
    return Verdict("INFRA", ExitCode.INFRA, f"the guest's disk hit an I/O error on the host ({reason}, {operation} "
                                            f"of {what}); QEMU paused the guest")


def _watch_stdin(stop: Callable[[str], None], restore_before: Callable[[], None]) -> Callable[[], None]:
    """Call ``stop`` once standard input reaches its end (--stop-on-stdin-eof)."""
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            stop("because standard input closed (the launcher went away)")

    try:
        loop.add_reader(fd, readable)
    except (OSError, ValueError) as err:
        restore_before()
        raise UsageError(f"--stop-on-stdin-eof needs standard input to be a pipe or socket: {err}") from err

    def restore() -> None:
        loop.remove_reader(fd)
        restore_before()

    return restore


def _install_signal_handlers(on_signal: Callable[[signal.Signals], None]) -> Callable[[], None]:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)

    def restore() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    return restore
