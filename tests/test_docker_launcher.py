"""``aero-win7-docker`` against a real Docker engine.

Marked ``docker``. Tests that need the engine skip locally when it does not answer and fail in
CI (CI=true), where .ci/run starts one. Until the harness runner and the reference guest exist,
the container side is a stand-in image: the base image plus a shell script in place of the
harness, which records what it was given and exits with the code it is asked for.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors
import docker.models.images
import pytest

from harness.launcher import loans
from tests.conftest import missing_prerequisite
from tests.outdirs import IMAGE_UID, OWNER, REPORTS, lent_entries, owners, previous_run, tree_state

pytestmark = pytest.mark.docker

BASE_IMAGE = os.environ.get("AERO_BASE_IMAGE", "debian:trixie-slim")
FAKE_IMAGE = "aero-win7-harness-fake:test"
FAKE_LABEL = "aero-win7-harness.launcher"

# Stands in for `aero-win7-harness`: writes what it saw to /out/fake.txt, and what a container's
# user may leave in a folder it was lent (a folder, a link out of /out, a set-uid file); --http-path
# /exit/N makes it exit N, /sleep makes it wait for a signal (and exit 130 on SIGINT, like the harness).
FAKE_HARNESS = r"""#!/bin/sh
out=/out
path=""
prev=""
for arg in "$@"; do
    [ "$prev" = "--http-path" ] && path="$arg"
    [ "$prev" = "--out-dir" ] && out="$arg"
    prev="$arg"
done
{
    echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"
    echo "args=$*"
    if touch /images/probe 2>/dev/null; then echo "images=rw"; else echo "images=ro"; fi
    if [ -e /dev/kvm ]; then echo "kvm=yes"; else echo "kvm=no"; fi
} >"$out/fake.txt"
mkdir -p "$out/sub" && echo made >"$out/sub/made"
ln -sfn ../victim "$out/link"
echo '#!/bin/sh' >"$out/suid" && chmod 4755 "$out/suid"
echo "fake harness on stderr" >&2
case "$path" in
    /exit/*) code="${path#/exit/}" ;;
    /sleep) trap 'echo "FAIL: INTERRUPTED: stopped by a signal"; exit 130' INT TERM
            echo "sleeping"
            exec 3<&0; cat <&3 >/dev/null & wait $!  # until the launcher's end of stdin closes (or a signal)
            echo "FAIL: INTERRUPTED: stopped because standard input closed"; exit 130 ;;
    *) code=0 ;;
esac
if [ "$code" = 0 ]; then echo "PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS"; else echo "FAIL: SELFTEST_FAILED: fake exit $code"; fi
exit "$code"
"""


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Root's record of loans (a launcher killed mid-run leaves one), this test's own; launchers inherit it."""
    path = tmp_path / "state"
    monkeypatch.setenv(loans.STATE_ENV, str(path))
    return path


@pytest.fixture(scope="module")
def fake_image(engine: docker.DockerClient) -> str:
    try:
        engine.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        missing_prerequisite(f"base image {BASE_IMAGE} missing: run container/build-base-image.sh")
    dockerfile = (f"FROM {BASE_IMAGE}\nCOPY aero-win7-harness /usr/local/bin/aero-win7-harness\n"
                  "RUN chmod 755 /usr/local/bin/aero-win7-harness && mkdir -m 1777 /out /images\n"
                  "USER 10001:10001\nENTRYPOINT [\"aero-win7-harness\"]\n").encode()
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in (("Dockerfile", dockerfile), ("aero-win7-harness", FAKE_HARNESS.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    engine.images.build(fileobj=context, custom_context=True, tag=FAKE_IMAGE, rm=True, pull=False)
    return FAKE_IMAGE


def launcher(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.launcher.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, check=False)


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    path = tmp_path / "images" / "win7.qcow2"
    path.parent.mkdir()
    path.write_bytes(b"not really an image\n")
    return path


# --- without an engine --------------------------------------------------------------------------

@pytest.mark.fault
def test_unreachable_engine_exits_6_with_one_line_after_logged_retries(tmp_path: Path, disk: Path) -> None:
    sock_path = tmp_path / "closed.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(sock_path))
    sock.close()  # the socket file stays; nobody listens: connection refused
    started = time.monotonic()
    proc = launcher("--engine-attempts", "3", "--engine-backoff", "0.2", "--accel", "tcg",
                    "--disk-image", str(disk), "--out-dir", str(tmp_path / "out"),
                    env={"DOCKER_HOST": f"unix://{sock_path}"})
    assert proc.returncode == 6, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        f"FAIL: INFRA: Docker engine at unix://{sock_path} unreachable after 3 attempts (connect): Connection refused"]
    assert "Traceback" not in proc.stderr
    retries = [line for line in proc.stderr.splitlines() if '"harness.launcher.retry"' in line]
    assert len(retries) == 2 and all("Connection refused" in line for line in retries)
    assert 0.5 <= time.monotonic() - started < 30  # 0.2 s + 0.4 s of back-off, bounded
    launcher_log = (tmp_path / "out" / "launcher.log").read_text()
    assert launcher_log.count('"harness.launcher.retry"') == 2
    assert '"token": "INFRA"' in launcher_log


@pytest.mark.bad_input
def test_missing_disk_image_exits_2(tmp_path: Path) -> None:
    proc = launcher("--disk-image", str(tmp_path / "missing.qcow2"), "--out-dir", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert proc.stdout.splitlines() == [f"FAIL: USAGE: disk image not found: {tmp_path}/missing.qcow2"]


# --- with the engine and the stand-in harness ---------------------------------------------------

def test_pass_streams_output_and_returns_0(fake_image: str, tmp_path: Path, disk: Path) -> None:
    out = tmp_path / "out"
    proc = launcher("--image", fake_image, "--accel", "tcg", "--disk-image", str(disk), "--out-dir", str(out),
                    "--timeout-seconds", "30", "--", "-smp", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS"
    assert "fake harness on stderr" in proc.stderr
    seen = (out / "fake.txt").read_text()
    uid, gid = (os.getuid(), os.getgid()) if os.getuid() else (10001, 10001)  # root: the image's own user
    assert f"uid={uid} gid={gid}" in seen
    assert ("args=run --stop-on-stdin-eof --disk-image /images/win7.qcow2 --accel tcg --timeout-seconds 30.0 "
            "--out-dir /out -- -smp 1") in seen
    assert "images=ro" in seen and "kvm=no" in seen
    assert (out / "fake.txt").stat().st_uid == os.getuid()  # the folder's owner's, also when root lent it


@pytest.mark.parametrize("code", [1, 2, 3, 4, 5, 6])
def test_harness_exit_codes_pass_through_unretried(fake_image: str, tmp_path: Path, disk: Path, code: int) -> None:
    proc = launcher("--image", fake_image, "--accel", "tcg", "--disk-image", str(disk),
                    "--out-dir", str(tmp_path / "out"), "--http-path", f"/exit/{code}")
    assert proc.returncode == code
    assert proc.stdout.splitlines()[-1] == f"FAIL: SELFTEST_FAILED: fake exit {code}"
    assert '"harness.launcher.retry"' not in proc.stderr
    assert proc.stderr.count('"created container') == 1


@pytest.mark.fault
def test_exit_code_outside_the_contract_is_infra(fake_image: str, tmp_path: Path, disk: Path) -> None:
    proc = launcher("--image", fake_image, "--accel", "tcg", "--disk-image", str(disk),
                    "--out-dir", str(tmp_path / "out"), "--http-path", "/exit/42")
    assert proc.returncode == 6
    assert proc.stdout.splitlines()[-1].startswith("FAIL: INFRA: the container ended with exit code 42")


@pytest.mark.bad_input
def test_missing_image_in_engine_exits_2(engine: docker.DockerClient, tmp_path: Path, disk: Path) -> None:
    proc = launcher("--image", "aero-win7-harness-no-such:image", "--disk-image", str(disk),
                    "--out-dir", str(tmp_path / "out"), "--accel", "tcg")
    assert proc.returncode == 2
    assert proc.stdout.splitlines() == [
        "FAIL: USAGE: image aero-win7-harness-no-such:image is not in the Docker engine (build it: make image)"]


def test_no_container_is_left_behind(engine: docker.DockerClient, fake_image: str, tmp_path: Path, disk: Path) -> None:
    before = {c.id for c in engine.containers.list(all=True, filters={"label": FAKE_LABEL})}
    launcher("--image", fake_image, "--accel", "tcg", "--disk-image", str(disk), "--out-dir", str(tmp_path / "o"))
    after = {c.id for c in engine.containers.list(all=True, filters={"label": FAKE_LABEL})}
    assert after <= before


def _sigint_ignored() -> None:
    """What a background job of a non-interactive shell inherits: the launcher must still stop on SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.fault
def test_ctrl_c_stops_and_removes_the_container(engine: docker.DockerClient, fake_image: str,
                                               tmp_path: Path, disk: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "harness.launcher.cli", "--image", fake_image, "--accel", "tcg",
                             "--disk-image", str(disk), "--out-dir", str(tmp_path / "out"), "--http-path", "/sleep"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_ignored)  # as in the background of a CI shell
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "sleeping"  # the container is running
        running = [c for c in engine.containers.list(filters={"label": FAKE_LABEL, "ancestor": fake_image})
                   if c.labels.get(f"{FAKE_LABEL}.pid") == str(proc.pid)]
        assert len(running) == 1
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert out.splitlines()[-1].startswith("FAIL: INTERRUPTED")
    with pytest.raises(docker.errors.NotFound):
        engine.containers.get(str(running[0].id))


def _ours(engine: docker.DockerClient) -> list[docker.models.containers.Container]:
    return engine.containers.list(all=True, filters={"label": FAKE_LABEL})


@pytest.mark.fault
def test_a_killed_launcher_takes_its_container_down_and_the_next_one_removes_it(
        engine: docker.DockerClient, fake_image: str, tmp_path: Path, disk: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "harness.launcher.cli", "--image", fake_image, "--accel", "tcg",
                             "--disk-image", str(disk), "--out-dir", str(tmp_path / "out"), "--http-path", "/sleep"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "sleeping"
    (box,) = [c for c in _ours(engine) if c.labels.get(f"{FAKE_LABEL}.pid") == str(proc.pid)]
    proc.kill()  # kill -9: no cleanup of its own
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        box.reload()
        if box.status == "exited":
            break
        time.sleep(0.2)
    assert box.status == "exited"  # its stdin closed with the launcher: the harness stopped
    assert box.attrs["State"]["ExitCode"] == 130
    launcher("--image", fake_image, "--accel", "tcg", "--disk-image", str(disk), "--out-dir", str(tmp_path / "o2"))
    with pytest.raises(docker.errors.NotFound):
        engine.containers.get(str(box.id))  # swept by the next launcher


@pytest.mark.fault
def test_a_container_stopped_from_outside_is_infra_not_an_interrupt(engine: docker.DockerClient, fake_image: str,
                                                                   tmp_path: Path, disk: Path) -> None:
    """What a Docker engine restart does to a running container (SIGTERM), without restarting it."""
    proc = subprocess.Popen([sys.executable, "-m", "harness.launcher.cli", "--image", fake_image, "--accel", "tcg",
                             "--disk-image", str(disk), "--out-dir", str(tmp_path / "out"), "--http-path", "/sleep"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "sleeping"
    (box,) = [c for c in _ours(engine) if c.labels.get(f"{FAKE_LABEL}.pid") == str(proc.pid)]
    box.kill(signal="SIGTERM")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 6, out + err
    assert out.splitlines()[-1] == ("FAIL: INFRA: the container was stopped from outside (a Docker engine restart, "
                                    "docker stop or docker kill) before the run ended")
    assert [line for line in (out + err).splitlines() if "FAIL:" in line and "INFRA" in line] == [out.splitlines()[-1]]
    with pytest.raises(docker.errors.NotFound):
        engine.containers.get(str(box.id))


@pytest.mark.bad_input
def test_a_network_that_does_not_exist_is_one_usage_line(fake_image: str, tmp_path: Path, disk: Path) -> None:
    proc = launcher("--image", fake_image, "--accel", "tcg", "--disk-image", str(disk), "--out-dir",
                    str(tmp_path / "out"), "--network", "nonet")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(proc.stdout.splitlines()) == 1 and proc.stdout.startswith("FAIL: USAGE: ")
    assert "nonet" in proc.stdout and "Traceback" not in proc.stderr


@pytest.mark.bad_input
def test_colons_and_commas_in_paths_reach_the_container(fake_image: str, tmp_path: Path) -> None:
    disk = tmp_path / "win7:sp1,x64" / "disk:1,a.qcow2"
    disk.parent.mkdir()
    disk.write_bytes(b"not really an image\n")
    disk.chmod(0o644)
    out = tmp_path / "out:put,1"
    proc = launcher("--image", fake_image, "--accel", "tcg", "--disk-image", str(disk), "--out-dir", str(out),
                    "--engine-attempts", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "--disk-image /images/disk:1,a.qcow2" in (out / "fake.txt").read_text()


def _dockerd_pid() -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "dockerd":
                    return int(entry.name)
            except OSError:
                continue
    missing_prerequisite("no dockerd process on this machine to freeze (the engine is remote)")


@pytest.mark.fault
def test_an_engine_gone_longer_than_the_retries_is_one_line_and_the_container_goes(
        engine: docker.DockerClient, fake_image: str, tmp_path: Path, disk: Path) -> None:
    """dockerd frozen (SIGSTOP) mid-run: every engine call times out, past the retries."""
    dockerd = _dockerd_pid()
    proc = subprocess.Popen([sys.executable, "-m", "harness.launcher.cli", "--image", fake_image, "--accel", "tcg",
                             "--disk-image", str(disk), "--out-dir", str(tmp_path / "out"), "--http-path", "/sleep",
                             "--engine-timeout", "2", "--engine-attempts", "2", "--engine-backoff", "0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "sleeping"
    (box,) = [c for c in _ours(engine) if c.labels.get(f"{FAKE_LABEL}.pid") == str(proc.pid)]
    os.kill(dockerd, signal.SIGSTOP)
    try:
        out, err = proc.communicate(timeout=90)
    finally:
        os.kill(dockerd, signal.SIGCONT)
        if proc.poll() is None:  # the test failed: leave no launcher (and so no container) behind
            proc.kill()
            proc.wait()
    assert proc.returncode == 6, out + err
    fail_lines = [line for line in (out + err).splitlines() if "FAIL:" in line]
    assert fail_lines == [out.splitlines()[-1]] and fail_lines[0].startswith("FAIL: INFRA: Docker engine at ")
    assert "the next aero-win7-docker run removes it" in err
    assert lent_entries(tmp_path / "out") == []  # a root caller's folder is given back even so
    # The engine is back: the removal it was sent is carried out late, or the next launcher's sweep does it.
    launcher("--image", fake_image, "--accel", "tcg", "--disk-image", str(disk), "--out-dir", str(tmp_path / "o2"))
    with pytest.raises(docker.errors.NotFound):
        engine.containers.get(str(box.id))


# --- the output folder: given back, one launcher at a time, no stale verdict ---------------------

def _start(fake_image: str, out: Path, disk: Path, *flags: str) -> subprocess.Popen[str]:
    """A launcher whose stand-in harness sleeps until interrupted, once it says so."""
    proc = subprocess.Popen([sys.executable, "-m", "harness.launcher.cli", "--image", fake_image, "--accel", "tcg",
                             "--disk-image", str(disk), "--out-dir", str(out), "--http-path", "/sleep", *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "sleeping"
    return proc


@pytest.mark.fault
@pytest.mark.parametrize("ending", ["pass", "fail", "interrupt", "stopped from outside"])
def test_a_root_callers_folder_is_given_back_on_every_way_out(engine: docker.DockerClient, fake_image: str,
                                                               tmp_path: Path, disk: Path, ending: str) -> None:
    """The folder goes back to the owner it had, and what the container's user made in it with it;
    a link it left is not followed (its target outside stays as it was); no set-uid bit survives."""
    if os.getuid() != 0:
        missing_prerequisite("only a root caller's output folder is lent to the image's user")  # CI runs as root
    out = tmp_path / "out"
    out.mkdir()
    (out / "serial.log").write_text("an earlier run\n")
    os.chown(out, *OWNER)
    victim = tmp_path / "victim"
    victim.write_text("not the run's\n")
    os.chown(victim, IMAGE_UID, IMAGE_UID)
    if ending in ("pass", "fail"):
        proc = launcher("--image", fake_image, "--accel", "tcg", "--disk-image", str(disk), "--out-dir", str(out),
                        "--http-path", "/exit/0" if ending == "pass" else "/exit/1")
        code = proc.returncode
    else:
        running = _start(fake_image, out, disk)
        assert owners(out)["."] == (IMAGE_UID, IMAGE_UID)  # lent while the container runs
        if ending == "interrupt":
            running.send_signal(signal.SIGINT)
        else:
            (box,) = [c for c in _ours(engine) if c.labels.get(f"{FAKE_LABEL}.pid") == str(running.pid)]
            box.kill(signal="SIGTERM")
        running.communicate(timeout=60)
        code = running.returncode
    assert code == {"pass": 0, "fail": 1, "interrupt": 130, "stopped from outside": 6}[ending]
    assert lent_entries(out) == []
    state = owners(out)
    for name in (".", "fake.txt", "sub", "sub/made", "link", "suid", "serial.log"):
        assert state[name] == OWNER, name
    assert "uid=10001" in (out / "fake.txt").read_text()  # the container did run as the image's user
    assert (victim.stat().st_uid, victim.stat().st_gid) == (IMAGE_UID, IMAGE_UID)
    assert not (out / "suid").stat().st_mode & 0o6000


@pytest.mark.fault
def test_a_second_launcher_on_the_folder_is_refused_and_changes_nothing(fake_image: str, tmp_path: Path,
                                                                       disk: Path) -> None:
    """make test-win7 twice: the second says so on the host, naming the folder and the first's pid."""
    out = tmp_path / "out"
    first = _start(fake_image, out, disk)
    try:
        before = tree_state(out)
        log_before = (out / "launcher.log").read_bytes()
        second = launcher("--image", fake_image, "--accel", "tcg", "--disk-image", str(disk), "--out-dir", str(out))
        assert second.returncode == 6, second.stdout + second.stderr
        assert second.stdout.splitlines() == [
            f"FAIL: INFRA: --out-dir {out} is in use by another aero-win7-docker (pid {first.pid} on "
            f"{socket.gethostname()}); wait for it to finish or pass another --out-dir"]
        assert '"created container' not in second.stderr  # refused before the engine
        assert tree_state(out) == before
        assert (out / "launcher.log").read_bytes() == log_before  # the first run's log, whole
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 130


@pytest.mark.fault
def test_a_previous_verdict_goes_before_the_engine_is_asked(engine: docker.DockerClient, tmp_path: Path,
                                                            disk: Path) -> None:
    """Bad input found once the folder is known (an image the engine lacks): the earlier PASS is gone."""
    out = tmp_path / "out"
    previous_run(out)
    proc = launcher("--image", "aero-win7-harness-no-such:image", "--disk-image", str(disk),
                    "--out-dir", str(out), "--accel", "tcg")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert not [name for name in REPORTS if (out / name).exists()]


class SwappingProxy:
    """A Unix socket in front of the engine, relaying bytes both ways, that runs ``swap`` once, when the
    launcher asks for its container to be created: a change on the host between the launcher's checks
    and the engine's bind mount."""

    def __init__(self, path: Path, swap: Callable[[], None]) -> None:
        host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        if not host.startswith("unix://"):
            missing_prerequisite(f"the engine at {host} is not a local socket to stand in front of")
        self.engine = host.removeprefix("unix://")
        self.path = path
        self.swap = swap
        self.swapped = threading.Event()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(16)
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.engine)
            self.conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, requests: bool) -> None:
        try:
            while data := src.recv(65536):
                if requests and b"/containers/create" in data and not self.swapped.is_set():
                    self.swap()
                    self.swapped.set()
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        for sock in (self.sock, *self.conns):
            sock.close()


@pytest.mark.attack
@pytest.mark.attack
def test_an_out_dir_swapped_before_the_bind_mount_is_refused_and_the_container_goes(
        engine: docker.DockerClient, fake_image: str, tmp_path: Path, disk: Path) -> None:
    """A folder above --out-dir becomes a link to another folder after the launcher checked, locked
    and lent it: the engine would mount that other folder. One INFRA line; the container is removed;
    the folder the launcher holds is given back; the other folder is as it was."""
    if os.getuid() != 0:
        missing_prerequisite("the folder lent by a root caller is the one worth swapping")  # CI runs as root
    parent = tmp_path / "proj"
    out = parent / "out"
    out.mkdir(parents=True)
    os.chown(out, *OWNER)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "out").mkdir(parents=True)
    (elsewhere / "out" / "keep.txt").write_text("not the run's\n")
    before = tree_state(elsewhere)

    def swap() -> None:
        parent.rename(tmp_path / "proj.old")
        parent.symlink_to(elsewhere)

    ours_before = {c.id for c in _ours(engine)}
    proxy = SwappingProxy(tmp_path / "engine.sock", swap)
    try:
        proc = launcher("--image", fake_image, "--accel", "tcg", "--disk-image", str(disk), "--out-dir", str(out),
                        env={"DOCKER_HOST": f"unix://{proxy.path}"})
    finally:
        proxy.close()
    assert proxy.swapped.is_set()
    assert proc.returncode == 6, proc.stdout + proc.stderr
    fail_lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "FAIL:" in line]
    assert fail_lines == [proc.stdout.splitlines()[-1]]
    assert fail_lines[0] == (f"FAIL: INFRA: --out-dir {out} was replaced when the container started: it no longer "
                             "leads to the folder the launcher checked and locked (a folder above it moved or "
                             "became a link); the run is refused")
    assert '"created container' in proc.stderr  # it was made, and it is gone
    assert {c.id for c in _ours(engine)} <= ours_before
    held = tmp_path / "proj.old" / "out"
    assert lent_entries(held) == [] and owners(held)["."] == OWNER
    assert (held / "launcher.log").exists()  # the launcher wrote in the folder it held, not the other one
    assert tree_state(elsewhere) == before
