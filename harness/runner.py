"""One harness run: validate, boot, serve, watch COM1, decide, clean up, report."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from qemu.qmp import QMPError

from harness.actions import ActionLog, Qmp, Reaction, run_reaction
from harness.artifacts import RunRecord, results_document, write_junit, write_results
from harness.devices import Board, DeviceSet
from harness.disk import DiskImage, GuestDisk, WriteMode, create_overlay, plan_guest_disk, validate_image
from harness.errors import ExitCode, HarnessError, InfraError, InterruptedRun, UsageError
from harness.logsetup import add_file_log, get_logger, quiet_console, remove_handler, setup_console
from harness.netns import Isolation, isolate
from harness.options import RunOptions, options_from_args
from harness.outputs import (
    HARNESS_LOG,
    JUNIT,
    LOCK,
    OVERLAY,
    QEMU_STDERR_LOG,
    REPORT_HTML,
    RESULTS,
    SCREENSHOT,
    Protected,
    check_outputs,
    clear_stale,
    lock_out_dir,
    partial_file,
    unwritable_out_dir,
    write_atomically,
)
from harness.progress import Progress, choose_mode
from harness.protocol import Kind, Record, Status
from harness.qemu import preflight
from harness.qemu.accel import abort_probes, choose_accel
from harness.qemu.binary import QemuBinary, probe_qemu, qemu_img_for
from harness.qemu.capabilities import Capabilities, capabilities
from harness.qemu.cmdline import render
from harness.qemu.command import MACHINE, QemuSpec, build_argv
from harness.qemu.extra import check_extra_args
from harness.qemu.machine import QemuEndedEarly, QemuMachine, tail_of
from harness.report import write_report
from harness.runtime import RUNTIME_PREFIX, make_runtime_dir, sweep_stale
from harness.serialport import SerialCapture
from harness.timeline import Timeline
from harness.verdict import GuestReport, Rule, Verdict, judge, qemu_exited_verdict, timeout_verdict

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
    devices: DeviceSet
    rules: tuple[Rule, ...]

    def spec(self, opts: RunOptions, accel: str, runtime_dir: Path, written: dict[Path, Path] | None = None
             ) -> QemuSpec:
        """``runtime_dir``: a short private folder for the Unix sockets (limited to 108 bytes);
        ``written``: where QEMU writes each of its output files (renamed to the real one afterwards)."""
        return QemuSpec(
            qemu=self.qemu.path, accel=accel, memory_mb=opts.memory_mb, smp=opts.smp,  # type: ignore[arg-type]
            serial_socket=runtime_dir / "com1.sock", qmp_socket=runtime_dir / "qmp.sock", devices=self.devices,
            written=written or {}, paused=True, extra=opts.qemu_extra)


def output_files(opts: RunOptions, disk: GuestDisk | None) -> list[tuple[str, Path]]:
    """Every file a run writes, with the flag that names it (for the one-line refusals); the
    overlay only once ``disk`` says there is one."""
    out = opts.out_dir
    files = [("--serial-log" if opts.serial_log else "--out-dir", opts.serial_log_path)]
    files += [(o.flag, o.path) for device in opts.devices for o in device.outputs(out)]
    names = [HARNESS_LOG, QEMU_STDERR_LOG, RESULTS, JUNIT, REPORT_HTML, SCREENSHOT, LOCK]
    if disk is not None and disk.mode is WriteMode.OVERLAY:
        names.append(OVERLAY)
    files += [("--out-dir", out / name) for name in names]
    if not out.is_dir():
        # The run creates the folder, so nothing can be in the way of a file directly in it. Which
        # files those are is decided on the resolved paths, not the spelling: ``new/../disk.img``
        # is not in ``new``, and is checked like any other path (it is the image once ``new``
        # exists). A file deeper in the new folder is checked too, and refused: its folder is missing.
        new_dir = Path(os.path.realpath(out))
        files = [(flag, path) for flag, path in files if Path(os.path.realpath(path)).parent != new_dir]
    return files


def board_for(opts: RunOptions, caps: Capabilities, disk: GuestDisk) -> Board:
    return Board(layout=opts.layout, caps=caps, disk=disk, out_dir=opts.out_dir, msix_vectors=opts.msix_vectors,
                 disable_msix=opts.disable_msix)


def prepare(opts: RunOptions) -> Prepared:
    """Validate the options against the file system and QEMU; UsageError on the first problem."""
    opts.check()
    check_extra_args(opts.qemu_extra)
    # The output paths first against the image itself (cheap, before QEMU is asked anything), then
    # below against its whole backing chain, which qemu-img reads.
    check_outputs(output_files(opts, None), Protected.of((opts.disk_image,)))
    qemu = probe_qemu(opts.qemu_system)
    caps = capabilities(qemu.path)
    cpu_max = caps.max_cpus(MACHINE)
    if cpu_max and opts.smp > cpu_max:
        raise UsageError(f"--smp {opts.smp} is more than QEMU's {MACHINE} machine takes ({cpu_max} CPUs)")
    qemu_img = qemu_img_for(qemu.path)
    image = validate_image(opts.disk_image, qemu_img)
    if opts.out_dir.exists() and not opts.out_dir.is_dir():
        raise UsageError(f"--out-dir is not a directory: {opts.out_dir}")
    disk = plan_guest_disk(image, opts.out_dir.absolute(), snapshot=opts.snapshot,
                           write_to_image=opts.write_to_image)
    devices = DeviceSet(opts.devices, board_for(opts, caps, disk), opts.require_irq)
    devices.check()
    check_outputs(output_files(opts, disk), Protected.of((image.path, *image.chain)))
    return Prepared(qemu, qemu_img, image, disk, devices, tuple(devices.rules()))


def run_from_args(args: argparse.Namespace) -> int:
    return run(options_from_args(args))


def run(opts: RunOptions) -> int:
    """Run the harness; prints the verdict line last and returns the exit code."""
    began = time.monotonic()
    setup_console(opts.log_format, logging.WARNING if opts.quiet else logging.INFO)
    # Bad input is refused first, whatever the isolation can do here; preparing runs only
    # subprocesses, so the process still has one thread, which a new namespace requires.
    prepared = prepare(opts)
    isolating = time.monotonic()
    isolation = Isolation(False, "--dry-run") if opts.dry_run else isolate(opts.network_isolation)
    isolation_ms = round((time.monotonic() - isolating) * 1000, 3)
    if opts.dry_run:
        if opts.accel == "auto":
            log.info("--dry-run with --accel auto: KVM is not probed; the command lists QEMU's own fallback")
        placeholder = Path(tempfile.gettempdir(), f"{RUNTIME_PREFIX}XXXXXXXX")  # made fresh by a real run
        argv = build_argv(prepared.spec(opts, opts.accel, placeholder))
        print(json.dumps(argv), flush=True)
        print(render(argv), flush=True)
        return int(ExitCode.PASS)
    session = Session(opts, prepared, isolation=isolation, began=began)
    session.extra["timing"] = {"isolation_ms": isolation_ms}
    return asyncio.run(session.execute())


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
    isolation: Isolation | None = None
    timeline: Timeline = field(default_factory=Timeline)
    progress: Progress | None = None
    began: float | None = None  # time.monotonic() when run() was called: the figures of "run start to ..."

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
                # QEMU's own outputs (the WAV capture) go too: an empty new capture must not leave the
                # previous run's sound to be analysed.
                removed = clear_stale(opts.out_dir, self.prepared.devices.qemu_outputs())
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
        task: asyncio.Future[T] = asyncio.ensure_future(work)
        waiters: set[asyncio.Future[Any]] = {task, self._interrupted}
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
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
        devices = prepared.devices
        required = frozenset(devices.required_markers())
        self.timeline.required = required
        self.progress = Progress(choose_mode(opts.quiet, opts.follow_serial), opts.timeout_s,
                                 opts.progress_interval_s, required=required)
        self.progress.start()
        self.progress.phase("choosing the accelerator")
        self.accel = await self._interruptible(asyncio.to_thread(choose_accel, opts.accel, prepared.qemu.path),
                                               "before QEMU started (while probing KVM)")
        self.progress.accel = self.accel
        create_overlay(prepared.qemu_img, prepared.image, prepared.disk)
        self.extra["disk"] = {"image": str(prepared.image.path), "format": prepared.image.format,
                              "mode": prepared.disk.mode.value, "opened": str(prepared.disk.file)}
        self.extra["layout"] = opts.layout.value
        if self.isolation is not None:
            self.extra["network_isolation"] = self.isolation.to_json()
        written = {path: partial_file(path) for path in devices.qemu_outputs()}  # renamed into place afterwards
        runtime_dir = make_runtime_dir()
        try:
            self.argv = build_argv(prepared.spec(opts, self.accel, runtime_dir, written))
            log.info("QEMU command: %s", render(self.argv))
            with ExitStack() as services:
                for device in devices.attached():
                    services.enter_context(device.services(devices.board))
                if self._interrupted.done():
                    raise InterruptedRun(f"stopped {self._interrupted.result()} before QEMU started")
                verdict = await self._boot_and_watch(runtime_dir, written)
        finally:
            shutil.rmtree(runtime_dir, ignore_errors=True)
            for final, partial in written.items():
                _settle(partial, final)
        if verdict.passed:
            verdict = await self._after_exit(verdict)
        for device in devices.devices:
            self.extra.update(device.results())
        return verdict

    async def _after_exit(self, verdict: Verdict) -> Verdict:
        """The families' checks once QEMU ended (a WAV capture); interruptible."""
        stop = asyncio.Event()  # each check runs in a thread and gives up when asked to
        devices = self.prepared.devices
        for device in devices.devices:
            try:
                verdict = await self._interruptible(
                    asyncio.to_thread(device.after_exit, devices.board, verdict, stop.is_set),
                    "while the run's captures were checked")
            except InterruptedRun:
                stop.set()
                raise
        return verdict

    def _on_records(self, records: list[Record], received: float) -> None:
        self.timeline.add(records, received)
        progress = self.progress
        if progress is not None and any(r.kind == Kind.RESULT for r in records):
            # The batch that ends the guest's run: the status line goes now rather than just before
            # the verdict, so that these records' log lines are not each drawn above it (on a
            # terminal that costs a fraction of a millisecond a line, on the verdict's path).
            progress.stop()
            progress = None
        for record in records:
            self.report.add(record)
            if record.kind == Kind.TEXT:
                continue  # free text: the serial log has it, the verdict keeps it for the causes of a skip
            log.info("guest: %s", record.text)
            if record.kind == Kind.CONFIG:
                self._check_config()
            elif record.kind == Kind.TEST and len(record.parts) > 1:
                outcome = self.report.tests.get(record.parts[0])
                if outcome is not None and outcome.seq == self.report.records:  # this record set its status
                    outcome.at_s = self.timeline.at(received)
                if record.parts[1] == Status.READY.value:
                    self._react(record.parts[0], received)
                if progress is not None:
                    progress.marker(record.parts[0], record.parts[1])
            elif record.kind == Kind.START and progress is not None:
                progress.phase("selftest started")
            if self.report.result is not None and self.result_received is None:
                self.result_received = received
                self._result_event.set()

    def _check_config(self) -> None:
        """What the guest was provisioned with, checked the moment it says so: a mismatch ends the run;
        what the run asks and the image was not provisioned for is a warning, once."""
        for hint in self.prepared.devices.config_hints():
            warning = hint(self.report.config)
            if warning is not None and warning not in self.extra.setdefault("provisioning_warnings", []):
                self.extra["provisioning_warnings"].append(warning)
                log.warning("%s", warning)
        for check in self.prepared.devices.config_checks():
            verdict = check(self.report.config)
            if verdict is not None:
                self.end_run(verdict)
                return

    def _react(self, marker: str, received: float) -> None:
        """Start the host action a READY marker asks for, as a task of its own."""
        reaction = next((r for r in self._reactions if r.marker == marker), None)
        if reaction is None or marker in self._actions or self.machine is None:
            return
        record = ActionLog(reaction.action, marker)
        record.ready_at_s = self.timeline.at(received)
        if self.progress is not None:
            self.progress.action(reaction.action)
        self._actions[marker] = record
        machine = self.machine
        qmp = Qmp(machine.execute, record, received)
        outcome = self.report.tests[marker]
        task = asyncio.ensure_future(run_reaction(reaction, qmp, outcome, lambda: self._finished(marker)))
        task.add_done_callback(lambda done: self._reaction_done(record, done))
        self._tasks.add(task)

    def _finished(self, marker: str) -> bool:
        outcome = self.report.tests.get(marker)
        return self.report.result is not None or (outcome is not None and outcome.status.is_final)

    def _reaction_done(self, record: ActionLog, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            record.outcome = "cancelled"
            return
        error = task.exception()
        if isinstance(error, HarnessError):
            record.outcome = f"failed: {error.detail}"
            log.debug("host action %s failed: %s", record.reaction, error.detail)  # the verdict line says it
            self.end_run(Verdict(error.token, error.exit_code, error.detail))
        elif error is not None:
            record.outcome = f"failed: {type(error).__name__}: {error}"
            log.error("host action %s failed", record.reaction, exc_info=error)
            self.end_run(Verdict("INFRA", ExitCode.INFRA, f"host action {record.reaction} failed: "
                                                          f"{type(error).__name__}: {error}"))

    async def _start_guest(self, machine: QemuMachine, written: dict[Path, Path]) -> None:
        """Look at the machine before the guest runs (the virtio functions must be what the layout
        wants), send the families' startup commands, then let the guest run."""
        devices = self.prepared.devices
        if self.opts.pci_preflight:
            started = time.monotonic()
            answer = await machine.execute("query-pci")
            found = preflight.functions(answer)  # type: ignore[arg-type]
            self.extra["pci"] = [f.to_json() for f in preflight.virtio(found)]
            preflight.check(found, devices.pci(), devices.board.layout.value)
            self._driver_notes = preflight.driver_notes(found, devices.pci())
            families = {d for want in devices.pci() for d in want.device_ids}
            for extra in preflight.extra_virtio(found, devices.pci()):
                # A second function of a tested family may be the one the guest's test picks: a warning.
                (log.warning if extra.device in families else log.info)(
                    "a virtio function the layout did not add is in the machine: %s at %s (id %r; from the extra "
                    "QEMU arguments?): the guest sees it too", extra.ids, extra.address, extra.qdev_id or "none")
            if self._driver_notes:
                self.extra["pci_notes"] = [n.to_json() for n in self._driver_notes]
                for note in self._driver_notes:
                    log.info("PCI note (%s): %s", note.qdev_id, note.text)
            self.extra.setdefault("timing", {})["preflight_ms"] = round((time.monotonic() - started) * 1000, 3)
        for command, arguments in devices.startup_commands(written):
            reply = await machine.execute(command, arguments)
            # An HMP command reports its failure as text, not as a QMP error.
            if command == "human-monitor-command" and isinstance(reply, str) and reply.strip():
                raise InfraError(f"QEMU refused {arguments.get('command-line')!r}: {reply.strip()}")
            log.debug("QMP %s %s -> %s", command, arguments, reply)
        await machine.execute("cont")  # QEMU started paused (-S)

    def _explained(self, verdict: Verdict) -> Verdict:
        """A failure that a PCI note explains (a driver that cannot start on QEMU's device model) says so."""
        hints = list(dict.fromkeys(note.text for note in self._driver_notes  # one per cause
                                   if note.explains_failure(verdict.token, self.report)))
        if verdict.passed or not hints:
            return verdict
        return Verdict(verdict.token, verdict.exit_code,
                       f"{verdict.detail}; hint, if the guest runs the Aero drivers: {'; '.join(hints)}")

    def _guest_running(self, now: float) -> None:
        """The guest's CPUs run from here (after the preflight's ``cont``, or from QEMU's start without it)."""
        self.timeline.phase("guest_running", now)
        if self.began is not None and self.timeline.origin is not None:
            timing = self.extra.setdefault("timing", {})
            timing["start_to_qemu_ms"] = round((self.timeline.origin - self.began) * 1000, 3)
            timing["start_to_guest_ms"] = round((now - self.began) * 1000, 3)

    async def _refresh_pci(self, machine: QemuMachine) -> None:
        """The PCI table once firmware and guest have set the functions up (IRQs, BAR addresses)."""
        if not machine.running or self._interrupted.done() or "pci" not in self.extra:
            return
        try:
            # After the verdict: a signal cuts it short (the run's end honours it within a second).
            answer = await self._interruptible(machine.execute("query-pci", timeout=2.0), "at the end")
        except InterruptedRun:
            return
        except (TimeoutError, QMPError, OSError, EOFError) as err:
            log.debug("query-pci at the end: %s", err)
            return
        self.extra["pci"] = [f.to_json() for f in preflight.virtio(preflight.functions(answer))]  # type: ignore[arg-type]

    async def _boot_and_watch(self, runtime_dir: Path, written: dict[Path, Path]) -> Verdict:
        opts = self.opts
        self._result_event = asyncio.Event()
        self._reactions: list[Reaction] = self.prepared.devices.reactions()
        self._actions: dict[str, ActionLog] = {}
        self._tasks: set[asyncio.Future[None]] = set()
        self._driver_notes = []
        serial = SerialCapture(runtime_dir / "com1.sock", opts.serial_log_path, self._on_records,
                               follow=opts.follow_serial, raw=opts.raw_serial)
        await serial.start()
        stderr_path = opts.out_dir / QEMU_STDERR_LOG
        machine = self.machine = QemuMachine(self.argv, runtime_dir / "qmp.sock", stderr_path)
        if self._interrupted.done():
            machine.hurry()
        progress = self.progress
        assert progress is not None
        progress.serial_bytes = lambda: serial.bytes_received
        progress.phase("starting QEMU")
        try:
            try:
                self.timeline.start(time.monotonic())
                await self._interruptible(machine.start(), "while QEMU was starting")
            except QemuEndedEarly as early:
                if early.returncode is None:
                    raise InfraError(f"QEMU did not open its QMP connection: {tail_of(stderr_path)}") from early
                return qemu_exited_verdict(self.report, early.returncode, tail_of(stderr_path))
            self.timeline.phase("qemu_up", time.monotonic())
            self.extra["qemu_pid"] = machine.proc.pid if machine.proc else None
            machine.watch_events(self._on_qmp_event)
            try:
                await self._interruptible(self._start_guest(machine, written), "during the PCI preflight")
            except HarnessError as err:
                return Verdict(err.token, err.exit_code, err.detail)
            self._guest_running(time.monotonic())
            progress.phase("QEMU up: firmware and boot")
            verdict = self._explained(await self._await_outcome(machine, serial, stderr_path))
            serial.stop_following()
            if not verdict.passed and verdict.exit_code != ExitCode.INTERRUPTED and machine.running:
                verdict = await self._screenshot(machine, runtime_dir, verdict)
            if not (verdict.passed and self.prepared.devices.changes_a_pass_after_exit()):
                self._print(verdict)  # as soon as it is known; nothing below can change it
            await self._refresh_pci(machine)
            return verdict
        except InterruptedRun as stop:
            return Verdict(stop.token, stop.exit_code, stop.detail)
        finally:
            progress.stop()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await machine.shutdown()
            self.timeline.phase("qemu_ended", time.monotonic())
            if serial.first_byte_at is not None:
                self.timeline.phase("first_serial_byte", serial.first_byte_at)
            await serial.close()
            self.extra["serial_bytes"] = serial.bytes_received
            if self._actions:
                self.extra["actions"] = [a.to_json() for a in self._actions.values()]
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
                log.info("guest screen saved to %s", self.opts.out_dir / SCREENSHOT)
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
        if self._ending.done():  # a CONFIG mismatch or a host failure came first: it is the cause
            return self._ending.result()
        if self.report.result is not None:
            return judge(self.report, self.prepared.rules)
        if self._interrupted in done:
            return Verdict("INTERRUPTED", ExitCode.INTERRUPTED,
                           f"stopped {self._interrupted.result()}; QEMU was shut down")
        if exited in done:
            await serial.drain(SERIAL_DRAIN_S)  # a RESULT written just before power-off still counts
            if self.report.result is not None:
                return judge(self.report, self.prepared.rules)
            return qemu_exited_verdict(self.report, machine.returncode, tail_of(stderr_path))
        return timeout_verdict(self.report, self.opts.timeout_s)

    # -- output -----------------------------------------------------------------------------------

    def _print(self, verdict: Verdict) -> None:
        if self.printed is None:
            if self.progress is not None:
                self.progress.stop()  # its line is gone before the verdict's
            print(verdict.line(), flush=True)
            self.verdict_printed = time.monotonic()
            self.printed = verdict
            quiet_console()  # the verdict stays the last line on the console; harness.log gets the rest

    def _write_reports(self, verdict: Verdict, duration: float) -> None:
        if self.result_received is not None and self.verdict_printed is not None:
            self.extra.setdefault("timing", {})["detection_latency_ms"] = round(
                (self.verdict_printed - self.result_received) * 1000, 3)
        if self.timeline.origin is not None:
            self.extra["timeline"] = self.timeline.to_json()
        record = RunRecord(verdict=verdict, report=self.report,
                           required=tuple(self.prepared.devices.required_markers()),
                           skip_allowed=tuple(self.prepared.devices.skip_allowed()),
                           accel=self.accel,
                           qemu_version=self.prepared.qemu.version_text, qemu_argv=self.argv, duration_s=duration,
                           extra=self.extra)
        artifacts = {"serial_log": self.opts.serial_log_path,
                     **{o.role: o.path for o in self.prepared.devices.outputs()}}
        record.extra["artifacts"] = {role: str(path) for role, path in artifacts.items()}
        for write in (write_results, write_junit, self._write_page):
            try:
                write(record, self.opts.out_dir)
            except Exception:  # noqa: BLE001 - a report that cannot be written must not change the verdict
                log.exception("could not write a report (%s) to %s", write.__name__, self.opts.out_dir)

    def _write_page(self, record: RunRecord, out_dir: Path) -> Path:
        artifacts = {role: Path(path) for role, path in record.extra["artifacts"].items()}
        return write_report(results_document(record), out_dir, artifacts.get("serial_log"),
                            artifacts.get("network_log"), [p for r, p in artifacts.items()
                                                           if r not in ("serial_log", "network_log")])


def _settle(partial: Path, final: Path) -> None:
    """Move QEMU's capture to its final name (replacing, never writing through, what is there)."""
    try:
        if partial.exists() and partial.stat().st_size > 0:
            os.replace(partial, final)
            return
        partial.unlink(missing_ok=True)
    except OSError as err:
        log.warning("the capture could not be moved to %s: %s", final, err)
    try:  # whatever is at the final name is not this run's capture
        final.unlink(missing_ok=True)
    except OSError as err:
        log.warning("an earlier capture could not be removed from %s: %s", final, err)


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
