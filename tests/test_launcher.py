"""The launcher without a Docker engine: argument translation, mounts, KVM, retry policy."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import stat
import struct
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import docker.errors
import pytest
import requests

from harness.errors import InfraError, UsageError
from harness.launcher import cli, container, kvm, loans, mounts, outdir, outlock, ownership
from harness.launcher.retry import NameConflict, RetryPolicy, call, is_transient, short_reason
from tests.conftest import missing_prerequisite

FAST = RetryPolicy(attempts=3, backoff_s=0.001, max_backoff_s=0.002)


def _api_error(status: int, explanation: str = "boom") -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError(f"{status} error", response=response, explanation=explanation)


def _parse(argv: list[str], subcommand: str = "run") -> tuple[Any, Any]:
    parser = cli.build_parser(subcommand)
    return parser, parser.parse_args(argv)


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    path = tmp_path / "images" / "win7.qcow2"
    path.parent.mkdir()
    path.write_bytes(b"QFI\xfb")
    return path


# --- arguments --------------------------------------------------------------------------------

def test_run_flags_are_passed_with_container_paths(disk: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    parser, args = _parse(["--disk-image", str(disk), "--out-dir", str(out), "--timeout-seconds", "30",
                           "--enable-virtio-snd", "--virtio-snd-audio-backend", "wav", "--snapshot",
                           "--image", "x:1", "--engine-attempts", "2", "--", "-smp", "1"])
    plan, paths = mounts.plan_run(cli.build_parser("run"), args)
    argv = cli.harness_argv(parser, args, paths)
    assert argv[:2] == ["--disk-image", "/images/win7.qcow2"]
    assert ["--out-dir", "/out"] == argv[argv.index("--out-dir"):argv.index("--out-dir") + 2]
    assert "--snapshot" in argv and "--enable-virtio-snd" in argv
    assert argv[argv.index("--timeout-seconds") + 1] == "30.0"
    assert argv[argv.index("--virtio-snd-audio-backend") + 1] == "wav"
    assert argv[-3:] == ["--", "-smp", "1"]
    assert "--image" not in argv and "--engine-attempts" not in argv  # launcher options stay outside
    assert "--memory-mb" not in argv  # defaults are not repeated
    assert plan.describe() == [f"{disk.parent} -> /images (ro)", f"{out.resolve()} -> /out (rw)"]
    assert [(m["Source"], m["Target"], m["ReadOnly"]) for m in plan.docker_mounts()] == [
        (str(disk.parent), "/images", True), (str(out.resolve()), "/out", False)]


@pytest.mark.bad_input
def test_output_files_must_lie_in_the_output_folder(disk: Path, tmp_path: Path) -> None:
    """Only the output folder is mounted writable: never a file's own folder (/ for /x.wav, /etc...)."""
    out = tmp_path / "out"
    _, args = _parse(["--disk-image", str(disk), "--out-dir", str(out),
                      "--virtio-snd-wav-path", str(out / "a" / "snd.wav"), "--serial-log", str(out / "com1.log")])
    plan, paths = mounts.plan_run(cli.build_parser("run"), args)
    assert paths["virtio_snd_wav_path"] == PurePosixPath("/out/a/snd.wav")
    assert paths["serial_log"] == PurePosixPath("/out/com1.log")
    assert len(plan.mounts) == 2
    for flag, value in (("--serial-log", "/etc/x.log"), ("--virtio-snd-wav-path", "/x.wav"),
                        ("--serial-log", str(tmp_path / "logs" / "com1.log")), ("--serial-log", str(out))):
        _, args = _parse(["--disk-image", str(disk), "--out-dir", str(out), flag, value])
        with pytest.raises(UsageError, match=f"{flag} .* lies outside the output folder"):
            mounts.plan_run(cli.build_parser("run"), args)


@pytest.mark.bad_input
def test_colons_and_commas_in_host_paths_are_plain_characters(tmp_path: Path) -> None:
    disk = tmp_path / "win7:sp1,x64" / "disk:1,a.qcow2"
    disk.parent.mkdir()
    disk.write_bytes(b"QFI\xfb")
    out = tmp_path / "out:put,1"
    _, args = _parse(["--disk-image", str(disk), "--out-dir", str(out)])
    plan, paths = mounts.plan_run(cli.build_parser("run"), args)
    assert paths["disk_image"] == PurePosixPath("/images/disk:1,a.qcow2")
    assert [m["Source"] for m in plan.docker_mounts()] == [str(disk.parent), str(out.resolve())]


@pytest.mark.bad_input
def test_a_root_callers_image_must_be_readable_by_the_images_user(tmp_path: Path) -> None:
    if os.getuid() != 0:
        missing_prerequisite("only a root caller's container runs as the image's user")  # CI runs as root
    images = Path(tempfile.mkdtemp(prefix="aero-images-"))  # reachable by others, unlike tmp_path
    try:
        images.chmod(0o755)
        disk = images / "win7.qcow2"
        disk.write_bytes(b"QFI\xfb")
        _, args = _parse(["--disk-image", str(disk), "--out-dir", str(tmp_path / "out")])
        plan, paths = mounts.plan_run(cli.build_parser("run"), args)
        images.chmod(0o700)
        with pytest.raises(UsageError, match=f"the folder {images} is not searchable by the container's user"):
            mounts.check_image_readable(plan, paths, ownership.IMAGE_USER)
        images.chmod(0o755)
        disk.chmod(0o600)
        with pytest.raises(UsageError, match="not readable by the container's user"):
            mounts.check_image_readable(plan, paths, ownership.IMAGE_USER)
        disk.chmod(0o644)
        mounts.check_image_readable(plan, paths, ownership.IMAGE_USER)
    finally:
        shutil.rmtree(images)


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The launcher's record of loans, in a folder of this test's (root's, as the real one must be)."""
    path = tmp_path / "state"
    monkeypatch.setenv(loans.STATE_ENV, str(path))
    return path


@pytest.mark.attack
def test_a_root_caller_lends_the_output_folder_and_the_harness_files_only(tmp_path: Path, state: Path) -> None:
    if os.getuid() != 0:
        missing_prerequisite("only a root caller lends the folder")  # CI runs as root
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("{}")  # a root run's leftover
    (out / "case.json").write_text("{}")  # the fleet's, beside the harness's
    with outdir.pinned(out) as folder, outlock.hold(folder) as lock:
        loan = ownership.lend(folder, lock)
        try:
            assert (out.stat().st_uid, (out / "results.json").stat().st_uid) == (10001, 10001)
            assert (out / "case.json").stat().st_uid == 0  # only the harness's own files
            assert (out / outlock.LAUNCHER_LOCK).stat().st_uid == 0  # the launcher's stays its own
            assert [p.name for p in state.iterdir()] == [f"loan-{folder.identity[0]}-{folder.identity[1]}.json"]
        finally:
            loan.give_back()
    assert {(p.stat().st_uid, p.stat().st_gid) for p in (out, *out.iterdir())} == {(0, 0)}
    assert list(state.iterdir()) == []  # given back whole: no record left
    assert "owner=" not in (out / outlock.LAUNCHER_LOCK).read_text()  # the lent folder holds no owner record


def _lendable(out: Path, names: set[str] | None = None) -> None:
    with outdir.pinned(out) as folder:
        ownership.check_lendable(folder, names or set())


@pytest.mark.attack
def test_only_the_harness_folder_may_be_lent(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "selfcheck").mkdir(parents=True)
    for name in ("serial.log", ".results.json.x1.tmp", ".disk-overlay.qcow2.y2.partial", "launcher.log",
                 "console.log", "selfcheck/results.json", "com1.log", "a"):
        (out / name).write_text("")
    _lendable(out, {"com1.log", "a"})  # com1.log and a: this run's own flags name them
    with pytest.raises(UsageError, match=r"holds files that are not the harness's \(a, com1.log\)"):
        _lendable(out)
    (out / "selfcheck" / "thesis.tex").write_text("")
    with pytest.raises(UsageError, match=r"\(a, com1.log, selfcheck/thesis.tex\)"):
        _lendable(out)
    for i in range(3):
        (out / f"x{i}").write_text("")
    with pytest.raises(UsageError, match=r" and 3 more\): a root caller's output folder is lent"):
        _lendable(out)


@pytest.mark.attack
@pytest.mark.attack
def test_only_regular_files_of_one_name_are_the_harness_s(tmp_path: Path) -> None:
    """A harness name does not make a hard link, a link, a FIFO or a folder the harness's: a folder is
    looked into whatever its name, and at the top one with the name of a file written there is refused."""
    outside = tmp_path / "outside"
    outside.write_text("someone else's\n")
    out = tmp_path / "out"
    out.mkdir()
    os.link(outside, out / "serial.log")
    with pytest.raises(UsageError, match=r"\(serial.log \(a hard link\)\)"):
        _lendable(out)
    (out / "serial.log").unlink()
    (out / "results.json").symlink_to(outside)
    with pytest.raises(UsageError, match=r"\(results.json \(a symbolic link\)\)"):
        _lendable(out)
    (out / "results.json").unlink()
    os.mkfifo(out / "http.log")
    with pytest.raises(UsageError, match=r"\(http.log \(not a regular file\)\)"):
        _lendable(out)
    (out / "http.log").unlink()
    (out / "harness.log").mkdir()
    with pytest.raises(UsageError, match=r"\(harness.log/ \(a folder where a file is written\)\)"):
        _lendable(out)
    (out / "harness.log").rmdir()
    (out / "selfcheck" / "case.json").mkdir(parents=True)  # deeper, a folder of any name is looked into
    (out / "selfcheck" / "case.json" / "thesis.tex").write_text("")
    with pytest.raises(UsageError, match=r"\(selfcheck/case.json/thesis.tex\)"):
        _lendable(out)
    (out / "selfcheck" / "case.json" / "thesis.tex").unlink()
    _lendable(out)  # folders that hold nothing else


@pytest.mark.attack
@pytest.mark.attack
def test_lend_refuses_a_hard_link_it_was_not_told_about(tmp_path: Path, state: Path) -> None:
    """Were the check skipped or raced: lend itself chowns only regular files of one name, and says
    so in one USAGE line, with the folder given back and the outside file untouched."""
    if os.getuid() != 0:
        missing_prerequisite("only a root caller lends the folder")  # CI runs as root
    outside = tmp_path / "outside"
    outside.write_text("someone else's\n")
    out = tmp_path / "out"
    out.mkdir()
    os.chown(out, 4242, 4243)
    os.link(outside, out / "serial.log")
    with outdir.pinned(out) as folder, outlock.hold(folder) as lock:
        with pytest.raises(UsageError, match=r"cannot lend --out-dir .*: serial.log is a hard link; remove it"):
            ownership.lend(folder, lock)
    assert (outside.stat().st_uid, outside.stat().st_gid) == (0, 0)
    assert (out.stat().st_uid, out.stat().st_gid) == (4242, 4243)
    assert list(state.iterdir()) == []


@pytest.mark.attack
@pytest.mark.attack
def test_the_out_dir_is_checked_and_lent_through_the_folder_opened_not_its_path(tmp_path: Path, state: Path) -> None:
    """A folder above the out-dir swapped for another after the folder was opened: the check, the
    lock and the chowns are the folder's, the path is found changed (INFRA, one line)."""
    if os.getuid() != 0:
        missing_prerequisite("only a root caller lends the folder")  # CI runs as root
    parent = tmp_path / "proj"
    (parent / "out").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "out").mkdir(parents=True)
    (elsewhere / "out" / "thesis.tex").write_text("not the harness's\n")
    out = parent / "out"
    with outdir.pinned(out) as folder:
        parent.rename(tmp_path / "proj.old")
        parent.symlink_to(elsewhere)  # out now leads to elsewhere/out
        ownership.check_lendable(folder)  # the folder opened: empty, so lendable
        with outlock.hold(folder) as lock:
            loan = ownership.lend(folder, lock)
            try:
                assert (tmp_path / "proj.old" / "out").stat().st_uid == 10001
                assert not (elsewhere / "out" / outlock.LAUNCHER_LOCK).exists()
                assert (elsewhere / "out").stat().st_uid == 0
                with pytest.raises(InfraError, match=r"--out-dir .* was replaced before the container was created: it "
                                   "no longer leads to the folder the launcher checked and locked") as err:
                    folder.verify("before the container was created")
                assert len(err.value.verdict_line().splitlines()) == 1
            finally:
                loan.give_back()
    assert (tmp_path / "proj.old" / "out").stat().st_uid == 0
    assert sorted(p.name for p in (elsewhere / "out").iterdir()) == ["thesis.tex"]


@pytest.mark.attack
@pytest.mark.attack
def test_a_link_on_the_out_dirs_path_when_it_is_opened_is_infra(tmp_path: Path) -> None:
    out = tmp_path / "proj" / "out"
    out.mkdir(parents=True)
    (tmp_path / "proj").rename(tmp_path / "proj.old")
    (tmp_path / "proj").symlink_to(tmp_path / "proj.old")  # the same folder, reached through a link now
    with pytest.raises(InfraError, match=r"--out-dir .*/proj/out changed after it was checked .*the run is refused"):
        with outdir.pinned(out):
            pass


@pytest.mark.attack
@pytest.mark.attack
def test_an_unsafe_state_folder_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.getuid() != 0:
        missing_prerequisite("only a root caller keeps records of loans")  # CI runs as root
    state = tmp_path / "state"
    monkeypatch.setenv(loans.STATE_ENV, str(state))
    loans.records()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700 and state.stat().st_uid == 0
    state.chmod(0o777)
    with pytest.raises(InfraError, match=r"state folder .* is not safe to keep root's records in: .* is writable by "
                                         "others"):
        loans.records()
    state.chmod(0o700)
    os.chown(state, 4242, 4243)
    with pytest.raises(InfraError, match="is not root's"):
        loans.records()
    os.chown(state, 0, 0)
    (tmp_path / "link").symlink_to(state)
    monkeypatch.setenv(loans.STATE_ENV, str(tmp_path / "link"))
    with pytest.raises(InfraError, match="cannot open the launcher's state folder"):
        loans.records()


@pytest.mark.bad_input
@pytest.mark.bad_input
def test_a_root_callers_output_files_must_be_at_the_top_of_the_folder(disk: Path, tmp_path: Path) -> None:
    """Only the top of a root caller's folder is lent: a file in a folder inside it could not be written."""
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    _, args = _parse(["--disk-image", str(disk), "--out-dir", str(out), "--serial-log", str(out / "a" / "x.log")])
    with pytest.raises(UsageError, match=r"--serial-log .*/out/a/x.log is in a folder inside the output folder .*: "
                                         "a root caller's container runs as the image's user, which is lent only "
                                         "the top of the output folder"):
        mounts.plan_run(cli.build_parser("run"), args, top_only=True)
    _, paths = mounts.plan_run(cli.build_parser("run"), args)  # a normal user's container may write it
    assert paths["serial_log"] == PurePosixPath("/out/a/x.log")


def test_the_images_folder_as_output_folder_keeps_both_mounts(tmp_path: Path) -> None:
    """The old harness's own example: the image and the serial log side by side in one folder."""
    disk = tmp_path / "win7.qcow2"
    disk.write_bytes(b"QFI\xfb")
    _, args = _parse(["--disk-image", str(disk), "--out-dir", str(tmp_path), "--serial-log",
                      str(tmp_path / "win7-serial.log")])
    plan, paths = mounts.plan_run(cli.build_parser("run"), args)
    assert plan.describe() == [f"{tmp_path} -> /images (ro)", f"{tmp_path} -> /out (rw)"]
    assert (paths["disk_image"], paths["serial_log"]) == (PurePosixPath("/images/win7.qcow2"),
                                                         PurePosixPath("/out/win7-serial.log"))


def test_a_flag_value_is_never_taken_for_the_subcommand(disk: Path) -> None:
    assert cli._split_subcommand(["--out-dir", "run", "--disk-image", str(disk)])[0] == "run"
    assert cli._split_subcommand(["--out-dir", "selfcheck"]) == ("run", ["--out-dir", "selfcheck"])
    assert cli._split_subcommand(["--image", "x", "selfcheck", "--smp", "1"]) == ("selfcheck",
                                                                              ["--image", "x", "--smp", "1"])


def test_selfcheck_forwards_a_timeout_equal_to_runs_default(tmp_path: Path) -> None:
    parser = cli.build_parser("selfcheck")
    args = parser.parse_args(["--timeout-seconds", "600", "--out-dir", str(tmp_path)])
    plan, paths = mounts.plan_run(cli.build_parser("run"), args)
    argv = cli.harness_argv(parser, args, paths)
    assert argv[argv.index("--timeout-seconds") + 1] == "600.0"


@pytest.mark.bad_input
def test_a_host_qemu_path_is_refused(disk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--disk-image", str(disk), "--qemu-system", "/opt/qemu/bin/qemu-system-x86_64"]) == 2
    assert capsys.readouterr().out.startswith("FAIL: USAGE: --qemu-system does not apply")


def test_subcommand_anywhere_before_the_qemu_args() -> None:
    assert cli._split_subcommand(["--image", "x", "selfcheck", "--accel", "tcg"]) == (
        "selfcheck", ["--image", "x", "--accel", "tcg"])
    assert cli._split_subcommand(["--disk-image", "d", "--", "selfcheck"]) == (
        "run", ["--disk-image", "d", "--", "selfcheck"])


def test_selfcheck_needs_no_disk(tmp_path: Path) -> None:
    parser, args = _parse(["--out-dir", str(tmp_path / "o"), "--accel", "tcg"], "selfcheck")
    plan, paths = mounts.plan_run(cli.build_parser("run"), args)
    assert cli.harness_argv(parser, args, paths) == ["--accel", "tcg", "--out-dir", "/out"]
    assert [m.container for m in plan.mounts] == [PurePosixPath("/out")]


@pytest.mark.bad_input
def test_missing_disk_image_is_usage(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="disk image not found"):
        mounts.disk_image_file(tmp_path / "nope.qcow2")
    with pytest.raises(UsageError, match="disk image is a directory, not a file"):
        mounts.disk_image_file(tmp_path)


def test_symlinked_disk_mounts_the_real_folder(disk: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.qcow2"
    link.symlink_to(disk)
    assert mounts.disk_image_file(link) == disk.resolve()


@pytest.mark.bad_input
def test_bad_flag_is_one_usage_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--disk-image", "x", "--no-such-flag"])
    assert exc.value.code == 2
    assert capsys.readouterr().out.strip().startswith("FAIL: USAGE: unrecognized arguments")


@pytest.mark.bad_input
def test_main_missing_disk_exits_2_before_the_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/never.sock")
    assert cli.main(["--disk-image", str(tmp_path / "gone.qcow2"), "--out-dir", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().out.splitlines() == [f"FAIL: USAGE: disk image not found: {tmp_path}/gone.qcow2"]


# --- KVM ----------------------------------------------------------------------------------------

def test_kvm_never_with_tcg_or_without_the_device(tmp_path: Path) -> None:
    assert not kvm.decide("tcg", tmp_path / "kvm").enabled
    assert not kvm.decide("kvm", tmp_path / "kvm").enabled


def test_kvm_demanded_passes_the_device_and_its_group(tmp_path: Path) -> None:
    device = tmp_path / "kvm"
    device.touch()
    decision = kvm.decide("kvm", device)
    assert decision.devices == [f"{device}:{device}:rwm"]
    assert decision.group_add == [str(os.stat(device).st_gid)]


@pytest.mark.parametrize("usable", [True, False])
def test_kvm_auto_follows_the_host_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, usable: bool) -> None:
    device = tmp_path / "kvm"
    device.touch()
    monkeypatch.setattr(kvm, "kvm_usable", lambda *a, **k: (usable, "probe said so"))
    decision = kvm.decide("auto", device, probe_in_image=lambda d: (not usable, "the image is not asked"))
    assert decision.enabled is usable
    assert decision.reason == "probe said so"


@pytest.mark.parametrize("usable", [True, False])
def test_kvm_auto_without_a_host_qemu_asks_the_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     usable: bool) -> None:
    device = tmp_path / "kvm"
    device.touch()
    monkeypatch.setenv("PATH", str(tmp_path))  # no qemu-system-x86_64 on this host
    asked: list[Path] = []
    decision = kvm.decide("auto", device, probe_in_image=lambda d: (asked.append(d), (usable, "image said so"))[1])
    assert asked == [device]
    assert (decision.enabled, decision.reason) == (usable, "image said so")


# --- retry policy -----------------------------------------------------------------------------

@pytest.mark.parametrize("err", [
    requests.exceptions.ConnectionError("refused"),
    requests.exceptions.ReadTimeout("slow"),
    ConnectionResetError(104, "Connection reset by peer"),
    _api_error(500), _api_error(503),
    NameConflict("name in use"),
    docker.errors.DockerException("Error while fetching server API version"),
])
def test_transient(err: BaseException) -> None:
    if isinstance(err, docker.errors.DockerException) and not isinstance(err, docker.errors.APIError):
        err.__cause__ = requests.exceptions.ConnectionError(ConnectionRefusedError(111, "Connection refused"))
    assert is_transient(err)


@pytest.mark.parametrize("err", [_api_error(404), _api_error(400), _api_error(409), ValueError("x"),
                                 docker.errors.ImageNotFound("no such image")])
def test_not_transient(err: BaseException) -> None:
    assert not is_transient(err)


def test_short_reason_finds_the_os_error() -> None:
    err = requests.exceptions.ConnectionError(("Connection aborted.", ConnectionRefusedError(111, "Connection refused")))
    assert short_reason(err) == "Connection refused"


@pytest.mark.fault
def test_retries_are_bounded_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        raise requests.exceptions.ConnectionError(ConnectionResetError(104, "Connection reset by peer"))

    logging.getLogger("harness").addHandler(caplog.handler)
    try:
        with pytest.raises(requests.exceptions.ConnectionError):
            call(FAST, "ping", flaky)
    finally:
        logging.getLogger("harness").removeHandler(caplog.handler)
    assert len(calls) == 3
    retries = [r for r in caplog.records if r.name == "harness.launcher.retry"]
    assert len(retries) == 2
    assert all(r.call == "ping" and r.reason == "Connection reset by peer" for r in retries)


@pytest.mark.fault
def test_permanent_errors_are_not_retried() -> None:
    calls: list[int] = []

    def bad() -> None:
        calls.append(1)
        raise _api_error(400)

    with pytest.raises(docker.errors.APIError):
        call(FAST, "create", bad)
    assert calls == [1]


# --- the container run, with a fake engine ------------------------------------------------------

class FakeContainer:
    def __init__(self, code: int) -> None:
        self.code = code
        self.waits = 0
        self.started = 0

    id = "fake"

    def start(self) -> None:
        self.started += 1

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        self.waits += 1
        return {"StatusCode": self.code}


class FakeClient:
    def __init__(self, code: int, create_errors: list[BaseException] | None = None) -> None:
        self.box = FakeContainer(code)
        self.create_errors = list(create_errors or [])
        self.removed: list[str] = []
        self.images = self
        self.containers = self
        self.api = self

    def get(self, name: str) -> object:  # images.get
        if name == "missing:1":
            raise docker.errors.ImageNotFound("no such image")
        return object()

    def create(self, image: str, **kwargs: Any) -> FakeContainer:  # containers.create
        if self.create_errors:
            raise self.create_errors.pop(0)
        assert kwargs["privileged"] is False and kwargs["init"] is True
        return self.box

    def remove_container(self, name: str, force: bool = False) -> None:  # api.remove_container
        self.removed.append(name)

    def list(self, **kwargs: Any) -> list[object]:  # containers.list: no leftovers
        return []

    def attach_socket(self, container: str, params: dict[str, int]) -> Any:  # api.attach_socket
        """A real socket carrying the engine's framed stdout, then its end."""
        ours, theirs = socket.socketpair()
        line = b"PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS\n" if self.box.code == 0 else b"FAIL: X: y\n"
        theirs.sendall(struct.pack(">BxxxL", 1, len(line)) + line)
        theirs.close()
        return ours


def _spec(image: str = "img:1") -> container.ContainerSpec:
    return container.ContainerSpec(image=image, command=["run"], user="1000:1000", mounts=[])


@pytest.mark.parametrize("code", [0, 1, 3, 4, 5])
def test_verdicts_are_returned_once_never_retried(code: int, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    client = FakeClient(code)
    spec = _spec()
    assert container.run_container(client, spec, FAST) == code  # type: ignore[arg-type]
    assert client.box.waits == 1 and client.box.started == 1
    assert client.removed == [spec.name]
    assert capsysbinary.readouterr().out.startswith(b"PASS" if code == 0 else b"FAIL")


@pytest.mark.fault
def test_a_name_conflict_removes_the_stale_container_and_retries() -> None:
    client = FakeClient(0, create_errors=[_api_error(409, "Conflict. The container name is already in use")])
    spec = _spec()
    assert container.run_container(client, spec, FAST) == 0  # type: ignore[arg-type]
    assert client.removed == [spec.name, spec.name]


@pytest.mark.fault
def test_5xx_on_create_is_retried_then_gives_exit_6() -> None:
    client = FakeClient(0, create_errors=[_api_error(500)] * 5)
    with pytest.raises(InfraError, match="unreachable after 3 attempts"):
        container.run_container(client, _spec(), FAST)  # type: ignore[arg-type]


@pytest.mark.bad_input
def test_missing_image_is_usage() -> None:
    with pytest.raises(UsageError, match="make image"):
        container.run_container(FakeClient(0), _spec("missing:1"), FAST)  # type: ignore[arg-type]


@pytest.mark.fault
def test_an_exit_code_outside_the_contract_is_infra() -> None:
    with pytest.raises(InfraError, match="exit code 137"):
        container.run_container(FakeClient(137), _spec(), FAST)  # type: ignore[arg-type]


@pytest.mark.attack
@pytest.mark.attack
def test_the_folders_are_verified_before_the_container_is_created_and_once_it_started() -> None:
    """The engine mounts paths: they are compared with the folder held before create and after start
    (the mount is made then); a refusal after the start still removes the container."""
    client = FakeClient(0)
    seen: list[tuple[str, int]] = []
    spec = _spec()
    assert container.run_container(client, spec, FAST,  # type: ignore[arg-type]
                                   verify=lambda when: seen.append((when, client.box.started))) == 0
    assert seen == [("before the container was created", 0), ("when the container started", 1)]

    def swapped(when: str) -> None:
        if when == "when the container started":
            raise InfraError(f"--out-dir /x was replaced {when}")

    client = FakeClient(0)
    with pytest.raises(InfraError, match="replaced when the container started"):
        container.run_container(client, spec, FAST, verify=swapped)  # type: ignore[arg-type]
    assert client.box.waits == 0 and client.removed == [spec.name]


@pytest.mark.attack
def test_container_is_hardened() -> None:
    kwargs = _spec().create_kwargs()
    assert kwargs["privileged"] is False
    assert kwargs["cap_drop"] == ["ALL"]
    assert kwargs["network_mode"] == "none"
    assert kwargs["user"] == "1000:1000"
    assert kwargs["stdin_open"] is True and kwargs["detach"] is False  # StdinOnce: the launcher's lifeline
    assert kwargs["dns"] == ["127.0.0.1"] and kwargs["sysctls"] == {"net.ipv4.ip_unprivileged_port_start": "53"}
    assert kwargs["labels"][container.LABEL_PID] == str(os.getpid())


def test_out_dir_defaults_like_the_harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AERO_OUT_DIR", raising=False)
    assert mounts.default_out_dir(None) == Path("out")
    monkeypatch.setenv("AERO_OUT_DIR", str(tmp_path / "env-out"))
    assert mounts.default_out_dir(None) == tmp_path / "env-out"
    assert mounts.default_out_dir(tmp_path / "given") == tmp_path / "given"
