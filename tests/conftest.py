"""Shared fixtures: real QEMU, free ports, tiny guests, and running the harness as users do."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import docker
import docker.errors
import pytest

from harness.qemu.bootsector import Ending, build_image

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REPO = Path(__file__).resolve().parent.parent


def missing_prerequisite(reason: str) -> NoReturn:
    """Locally a missing prerequisite skips the test with its reason; in CI (which installs
    everything) it fails the test."""
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def require_tool(name: str, why: str) -> str:
    """The tool's path, or missing_prerequisite()."""
    found = shutil.which(name)
    if found is None:
        missing_prerequisite(f"{name} is not installed ({why}); .ci/run installs it")
    return found


@pytest.fixture(scope="session")
def engine() -> Iterator[docker.DockerClient]:
    """A client of the Docker engine (CI starts one with container/ci-docker.sh up)."""
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except (docker.errors.DockerException, OSError) as err:  # requests' errors are OSErrors
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        missing_prerequisite(f"no Docker engine answers at {where}: {err} (start dockerd; CI: container/ci-docker.sh up)")
    yield client
    client.close()


@pytest.fixture(scope="session")
def qemu() -> str:
    require_tool("qemu-img", "the harness validates images with it")
    return require_tool("qemu-system-x86_64", "real QEMU runs")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def ports() -> tuple[int, int]:
    """A free TCP port for HTTP and a free UDP port for the echo."""
    return free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)


MARK = "AERO_VIRTIO_SELFTEST"


def lines(*records: str) -> bytes:
    """Protocol records as the Windows guest writes them (CRLF)."""
    return b"".join(f"{MARK}|{r}\r\n".encode() for r in records)


# What a passing real guest reports in the contract layout (the default), in its order, shortened.
PASSING = ("START|version=1", "TEST|virtio-blk|PASS|write_ok=1|write_bytes=4194304",
           "TEST|virtio-input-bind|PASS|service=aero_virtio_input|devices=2", "TEST|virtio-input|PASS|devices=2",
           "TEST|virtio-snd|SKIP", "TEST|virtio-snd-capture|SKIP|flag_not_set",
           "TEST|virtio-snd-duplex|SKIP|flag_not_set", "TEST|virtio-net-udp|PASS|bytes=1400|small_bytes=32",
           "TEST|virtio-net|PASS|large_ok=1|upload_ok=1", "RESULT|PASS")


@pytest.fixture
def make_guest(tmp_path: Path) -> Callable[..., Path]:
    """Write a boot-sector guest that prints ``message`` on COM1 and then ends as asked."""

    def make(message: bytes, ending: Ending = Ending.HALT, name: str = "guest.img") -> Path:
        path = tmp_path / name
        path.write_bytes(build_image(message, ending))
        return path

    return make


@dataclass
class HarnessRun:
    returncode: int
    stdout: str
    stderr: str
    out_dir: Path

    @property
    def last_line(self) -> str:
        return self.stdout.rstrip("\n").splitlines()[-1] if self.stdout.strip() else ""

    def results(self) -> dict[str, object]:
        import json

        return dict(json.loads((self.out_dir / "results.json").read_text()))


def harness_argv(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "harness", *(str(a) for a in args)]


@pytest.fixture
def run_harness(tmp_path: Path, ports: tuple[int, int]) -> Callable[..., HarnessRun]:
    """Run ``aero-win7-harness`` in a subprocess with free ports, TCG and an out dir in tmp_path."""

    def run(*args: str | Path, timeout: float = 60, out_dir: Path | None = None, ports_: bool = True) -> HarnessRun:
        out = out_dir or tmp_path / "out"
        extra: list[str | Path] = ["--out-dir", out]
        if ports_:
            extra += ["--http-port", str(ports[0]), "--udp-port", str(ports[1])]
        cut = args.index("--") if "--" in args else len(args)  # QEMU arguments stay last
        argv = harness_argv(*args[:cut], *extra, *args[cut:])
        for attempt in (1, 2):
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=tmp_path,
                                  stdin=subprocess.DEVNULL)
            crash = qemu_crash(proc.stdout)
            if crash is None or attempt == 2:
                break
            # QEMU itself died of a signal, or the guest reset before it wrote one byte (both seen
            # about once in a few hundred TCG boots of the reference guest: QEMU's or the guest
            # kernel's early failure, not the harness's or the test's). The harness reported it right
            # (QEMU_EXITED); the test gets one more boot.
            warnings.warn(f"QEMU or the guest failed at boot ({crash}); running the harness once more",
                          stacklevel=2)
        return HarnessRun(proc.returncode, proc.stdout, proc.stderr, out)

    return run


def qemu_crash(stdout: str) -> str | None:
    """What went wrong when the run's verdict says QEMU was killed by a signal it did not get from
    the harness or the test (SIGSEGV, SIGABRT, SIGBUS, SIGILL, SIGFPE), or that QEMU ended on a
    guest reset before the guest wrote anything (a test meaning that gets the same verdict twice)."""
    match = re.search(r"^FAIL: QEMU_EXITED: QEMU ended \(exit code (-(?:11|6|7|4|8))\)", stdout, re.M)
    if match:
        return f"exit code {match.group(1)}"
    if re.search(r"^FAIL: QEMU_EXITED: QEMU ended \(exit code 0\) before a RESULT line \(guest power-off, reboot "
                 r"or crash; [^)]*\); no selftest output", stdout, re.M):
        return "a reset before any output"
    return None


def qemu_children_of(pid: int) -> list[int]:
    """PIDs of live processes whose parent is ``pid`` and that are a run's QEMU (not the short-lived
    ones that answer what QEMU supports or probe KVM)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"qemu-system" in cmdline and b"com1.sock" in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture
def no_stray_qemu(tmp_path: Path) -> Iterator[None]:
    """Fail the test if a QEMU it started (its command line names the test's folder) outlives it."""
    yield
    leftover = _qemu_naming(str(tmp_path).encode())
    assert not leftover, f"QEMU processes left running: {sorted(leftover)}"


def _qemu_naming(needle: bytes) -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"qemu-system" in cmdline and needle in cmdline:
                pids.add(int(entry.name))
    return pids


@pytest.fixture(scope="session")
def guest_ports() -> tuple[int, int]:
    """Free HTTP and UDP ports, baked into the session's reference guests (so runs never collide
    with a harness on the default 18080/18081)."""
    return free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)


def _baked(ports: tuple[int, int]) -> tuple[str, ...]:
    from tests.refguest import HTTP_PATH

    return "--http-url", f"http://10.0.2.2:{ports[0]}{HTTP_PATH}", "--udp-port", str(ports[1])


@pytest.fixture(scope="session")
def guest(tmp_path_factory: pytest.TempPathFactory, guest_ports: tuple[int, int]):  # type: ignore[no-untyped-def]
    """The reference guest, built with the session's ports baked in."""
    from tests.refguest import build

    return build(tmp_path_factory.mktemp("refguest") / "reference-guest.qcow2", *_baked(guest_ports))


@pytest.fixture(scope="session")
def guest_require_snd(tmp_path_factory: pytest.TempPathFactory, guest, guest_ports: tuple[int, int]):  # type: ignore[no-untyped-def]
    """A second build (the cache is warm by then) that requires the sound device."""
    from tests.refguest import build

    return build(tmp_path_factory.mktemp("refguest-snd") / "reference-guest-snd.qcow2", *_baked(guest_ports),
                 "--require-snd")


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``16k``, ``2m``) mounted at ``path`` for the block (root only: CI runs as root)."""
    if os.geteuid() != 0:
        missing_prerequisite("mounting a small tmpfs needs root")
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
