"""``matrix run``: a matrix's cases on this host, each an ``aero-win7-docker`` subprocess (so a
container with its own QEMU: the host needs none), N at a time, then merged.

Each case writes into ``OUT/<case>``: the harness's artifacts, ``console.log`` (the launcher's
stdout and stderr) and ``case.json`` (``harness.fleet.record``). The merge goes into ``OUT``
itself (``harness.fleet.merge``). Everything is checked before the first case starts: the matrix,
the flags, each image file, the Docker engine and the harness images in it.

Ctrl-C or SIGTERM: the running launchers get SIGINT (each stops its container and writes what it
can), no further case starts, the merge is written, and the exit code is 130. A second one kills
the launchers. A launcher dies with this process even after ``kill -9`` (PDEATHSIG), and its
container with the launcher (the launcher holds the container's stdin).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from harness.errors import ExitCode, InterruptedRun, UsageError
from harness.fleet.case import Case
from harness.fleet.casedir import prepare
from harness.fleet.expand import Matrix
from harness.fleet.merge import Merged, merge
from harness.fleet.record import CONSOLE_LOG, CaseRecord, last_verdict_line, now
from harness.logsetup import get_logger
from harness.qemu.binary import die_with_parent

DEFAULT_OUT = Path("out/matrix")
STOP_GRACE_S = 60.0
log = get_logger("fleet.local")


def default_jobs() -> int:
    """Half the cores this process may use, at least one: a TCG guest keeps a core busy."""
    return max(1, len(os.sched_getaffinity(0)) // 2)


def launcher_command() -> list[str]:
    """``aero-win7-docker`` of this installation (beside this Python), else the same module."""
    beside = Path(sys.executable).parent / "aero-win7-docker"
    return [str(beside)] if beside.is_file() else [sys.executable, "-m", "harness.launcher.cli"]


def harness_image(case: Case, override: str | None) -> str:
    from harness.launcher.cli import DEFAULT_IMAGE

    return override or case.harness_image or os.environ.get("AERO_WIN7_IMAGE") or DEFAULT_IMAGE


def check_images(matrix: Matrix, cases: Sequence[Case]) -> None:
    """Every run case's disk image exists and is a disk image (the launcher's own checks)."""
    from harness.launcher.mounts import disk_image_file

    for case in cases:
        if case.image is not None:
            try:
                disk_image_file(Path(case.image))
            except UsageError as err:
                raise matrix.fail(case, err.detail) from None


def check_harness_images(matrix: Matrix, cases: Sequence[Case], override: str | None) -> None:
    """The Docker engine answers and has every harness image; the KVM probe is run (and cached)
    once per image here rather than by N launchers at once."""
    import docker.errors

    from harness.launcher import kvm
    from harness.launcher.engine import connect
    from harness.launcher.retry import RetryPolicy

    client = connect(RetryPolicy(attempts=3, backoff_s=0.5), 60.0)
    try:
        for image in dict.fromkeys(harness_image(case, override) for case in cases):
            try:
                client.images.get(image)
            except docker.errors.ImageNotFound:
                users = [c.name for c in cases if harness_image(c, override) == image]
                raise UsageError(f"{matrix.document.path}: case '{users[0]}': harness_image: {image} is not in the "
                                 "Docker engine (build it: make image, or pass --image)") from None
            if kvm.KVM_DEVICE.exists():
                kvm.log_decision(kvm.decide("auto", probe_in_image=kvm.image_prober(client, image)))
    finally:
        client.close()


def _case_dir(root: Path, case: Case) -> Path:
    return prepare(root / case.name)


@dataclass
class LocalRun:
    matrix: Matrix
    cases: list[Case]
    out_root: Path
    jobs: int
    image: str | None = None
    launcher: list[str] = field(default_factory=launcher_command)
    stopping: threading.Event = field(default_factory=threading.Event, init=False)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def argv(self, case: Case, folder: Path) -> list[str]:
        return [*self.launcher, "--image", harness_image(case, self.image), *case.harness_argv(folder)]

    def _start(self, case: Case, argv: list[str], console: IO[bytes]) -> subprocess.Popen[bytes] | None:
        """The launcher, started unless the run is stopping (checked under the lock the stop takes)."""
        with self._lock:
            if self.stopping.is_set():
                return None
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=die_with_parent)
            self._procs[case.name] = proc
            return proc

    def _run_case(self, case: Case, folder: Path) -> int:
        argv = self.argv(case, folder)
        record = CaseRecord(case, argv, "matrix run", now(), console=CONSOLE_LOG)
        record.write(folder)
        began = time.monotonic()
        with (folder / CONSOLE_LOG).open("wb") as console:
            proc = self._start(case, argv, console)
            if proc is None:
                record.exit_code = int(ExitCode.INTERRUPTED)
                record.verdict_line = "FAIL: INTERRUPTED: not started: the fleet run was stopped first"
                record.write(folder)
                return record.exit_code
            log.info("case %s: started", case.name, extra={"case": case.name, "argv": argv})
            code = proc.wait()
            with self._lock:
                del self._procs[case.name]
        record.wall_s = round(time.monotonic() - began, 3)
        record.exit_code = code
        text = (folder / CONSOLE_LOG).read_text(encoding="utf-8", errors="replace")
        record.verdict_line = last_verdict_line(text.splitlines())
        record.write(folder)
        log.info("case %s: exit %d in %.1f s: %s", case.name, code, record.wall_s, record.verdict_line or "no verdict",
                 extra={"case": case.name, "exit_code": code, "wall_s": record.wall_s})
        return code

    def _signal_all(self, signum: int) -> None:
        with self._lock:
            for proc in self._procs.values():
                try:
                    proc.send_signal(signum)
                except ProcessLookupError:
                    pass

    def run(self) -> Merged:
        folders = {case.name: _case_dir(self.out_root, case) for case in self.cases}
        log.info("matrix: %d case(s), %d at a time, in %s", len(self.cases), self.jobs, self.out_root)
        interrupted: str | None = None
        pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="case")
        futures = [pool.submit(self._run_case, case, folders[case.name]) for case in self.cases]
        try:
            for future in futures:
                future.result()
        except KeyboardInterrupt as stop:
            interrupted = str(stop.args[0]) if stop.args else "SIGINT"
            self.stopping.set()
            log.warning("interrupted: stopping the running cases")
            self._signal_all(signal.SIGINT)
            try:
                deadline = time.monotonic() + STOP_GRACE_S
                for future in futures:
                    future.exception(timeout=max(0.0, deadline - time.monotonic()))
            except (KeyboardInterrupt, TimeoutError):
                self._signal_all(signal.SIGKILL)
        finally:
            pool.shutdown(wait=True)
        merged, _files = merge(list(folders.values()), self.out_root, [case.name for case in self.cases])
        if interrupted is not None:
            raise InterruptedRun(f"stopped by {interrupted}; {self.out_root} has the cases that ran, merged")
        return merged
