"""The launcher and its output folder on the host, before and after the engine: an empty or root
``--out-dir``, a root caller's folder lent to the image's user and given back, the launcher's own
lock, and a previous run's reports. Real launchers (subprocesses) against an engine address where
nothing answers, so every run ends at the engine with exit 6, after the folder work is done."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.launcher import loans, outdir, outlock, ownership
from harness.outputs import discard_reports, lock_out_dir
from tests.conftest import missing_prerequisite
from tests.outdirs import IMAGE_UID, OWNER, PASS_RESULTS, REPORTS, lent_entries, owners, previous_run, tree_state


def launcher(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
             engine: Path | None = None) -> subprocess.CompletedProcess[str]:
    """aero-win7-docker with an engine address where nothing answers (one attempt: exit 6 at once)."""
    base = {**os.environ, "DOCKER_HOST": f"unix://{engine or '/nonexistent/aero-test.sock'}"}
    base.pop("AERO_OUT_DIR", None)
    return subprocess.run([sys.executable, "-m", "harness.launcher.cli", "--engine-attempts", "1", *args],
                          capture_output=True, text=True, timeout=60, cwd=cwd, env={**base, **(env or {})},
                          check=False)


def unreachable(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 6, proc.stdout + proc.stderr
    assert len(proc.stdout.splitlines()) == 1
    assert proc.stdout.startswith("FAIL: INFRA: Docker engine at unix:///nonexistent/aero-test.sock unreachable")


def one_usage_line(proc: subprocess.CompletedProcess[str], starts: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(proc.stdout.splitlines()) == 1, proc.stdout
    assert proc.stdout.startswith(f"FAIL: USAGE: {starts}"), proc.stdout
    assert "Traceback" not in proc.stderr


def root_only() -> None:
    if os.getuid() != 0:
        missing_prerequisite("only a root caller's output folder is lent to the image's user")  # CI runs as root


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Root's record of loans (outside every output folder), this test's own; launchers inherit it."""
    path = tmp_path / "state"
    monkeypatch.setenv(loans.STATE_ENV, str(path))
    return path


@pytest.fixture
def reachable() -> Iterator[Path]:
    """A folder the image's user (a real uid 10001 process) can reach, unlike tmp_path (root's, 0700)."""
    top = Path(tempfile.mkdtemp(prefix="aero-lent-"))
    top.chmod(0o755)
    yield top
    shutil.rmtree(top)


def as_image_user(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A shell script run as the image's user, as the container would run it."""
    return subprocess.run(["sh", "-c", script], cwd=cwd, user=IMAGE_UID, group=IMAGE_UID, extra_groups=[],
                          capture_output=True, text=True, timeout=30, check=False)


Holder = Callable[[str], "subprocess.Popen[str]"]


@pytest.fixture
def held() -> Iterator[Holder]:
    """Holders of locks (Python code that prints "held", then waits), started by the test; stopped at its end."""
    procs: list[subprocess.Popen[str]] = []

    def start(code: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


# --- an empty or root --out-dir ---------------------------------------------------------------------

@pytest.mark.bad_input
@pytest.mark.parametrize("flag", [["--out-dir", ""], ["--out-dir="], ["--out-dir", "  "]])
def test_an_empty_out_dir_is_refused_before_the_current_folder_changes(tmp_path: Path, flag: list[str]) -> None:
    here = tmp_path / "here"
    here.mkdir()
    (here / "notes.txt").write_text("mine\n")
    if os.getuid() == 0:
        os.chown(here, *OWNER)
    before = tree_state(here)
    proc = launcher("selfcheck", *flag, cwd=here)
    one_usage_line(proc, "argument --out-dir: an empty path")
    assert tree_state(here) == before


@pytest.mark.bad_input
def test_an_empty_aero_out_dir_is_refused_before_the_current_folder_changes(tmp_path: Path) -> None:
    here = tmp_path / "here"
    here.mkdir()
    before = tree_state(here)
    proc = launcher("selfcheck", cwd=here, env={"AERO_OUT_DIR": ""})
    one_usage_line(proc, "AERO_OUT_DIR is set but empty: unset it or give the output folder")
    assert tree_state(here) == before


@pytest.mark.bad_input
def test_the_root_folder_is_never_the_output_folder(tmp_path: Path) -> None:
    before = os.stat("/")
    proc = launcher("selfcheck", "--out-dir", "/", cwd=tmp_path)
    one_usage_line(proc, "--out-dir / is the root folder: the output folder is mounted read-write into the container")
    after = os.stat("/")
    assert (after.st_uid, after.st_gid, after.st_mode) == (before.st_uid, before.st_gid, before.st_mode)
    assert not Path("/launcher.log").exists() and not Path("/.aero-win7-docker.lock").exists()


@pytest.mark.bad_input
def test_a_refused_output_flag_creates_no_output_folder(tmp_path: Path) -> None:
    proc = launcher("selfcheck", "--out-dir", str(tmp_path / "new"), "--serial-log", "/etc/x.log")
    one_usage_line(proc, "--serial-log /etc/x.log lies outside the output folder")
    assert not (tmp_path / "new").exists()


# --- a root caller's folder: lent only when it is the harness's, always given back ------------------

@pytest.mark.bad_input
def test_a_folder_with_the_callers_own_files_is_not_lent(tmp_path: Path) -> None:
    root_only()
    home = tmp_path / "home"
    (home / "src").mkdir(parents=True)
    (home / ".bashrc").write_text("export X=1\n")
    (home / "src" / "main.c").write_text("int main;\n")
    (home / "results.json").write_text(PASS_RESULTS)  # one of the harness's names does not make it the harness's
    os.chown(home, *OWNER)
    before = tree_state(home)
    proc = launcher("selfcheck", "--out-dir", str(home))
    one_usage_line(proc, f"--out-dir {home} holds files that are not the harness's (")
    assert ".bashrc" in proc.stdout and "src/main.c" in proc.stdout
    assert "pass a new or empty folder" in proc.stdout
    assert tree_state(home) == before  # no lock file, no launcher.log, no owner changed, the verdict kept


@pytest.mark.bad_input
def test_the_disk_images_folder_is_not_lent(tmp_path: Path) -> None:
    root_only()
    images = tmp_path / "images"
    images.mkdir()
    images.chmod(0o755)
    disk = images / "win7.qcow2"
    disk.write_bytes(b"QFI\xfb")
    disk.chmod(0o644)
    before = tree_state(images)
    proc = launcher("--disk-image", str(disk), "--out-dir", str(images))
    one_usage_line(proc, f"--out-dir {images} holds files that are not the harness's (win7.qcow2)")
    assert tree_state(images) == before


@pytest.mark.fault
def test_a_harness_folder_is_given_back_to_its_owner_when_the_engine_is_unreachable(tmp_path: Path) -> None:
    """An earlier run's artifacts (some left lent by an older launcher), a selfcheck folder, the
    fleet's files and a file this run's flags name: all of it the harness's, so the folder is lent,
    and given back, with everything the image's user owned, when the run ends at the engine."""
    root_only()
    out = tmp_path / "out"
    previous_run(out)
    (out / ".aero-win7-harness.lock").write_text("7 box\n")
    os.chown(out / ".aero-win7-harness.lock", IMAGE_UID, IMAGE_UID)  # left lent by an older launcher
    (out / "selfcheck").mkdir()
    (out / "selfcheck" / "serial.log").write_text("x\n")
    os.chown(out / "selfcheck" / "serial.log", IMAGE_UID, IMAGE_UID)
    (out / "case.json").write_text("{}\n")
    (out / "console.log").write_text("")
    (out / "com1.log").write_text("old\n")
    os.chown(out, *OWNER)
    proc = launcher("selfcheck", "--out-dir", str(out), "--serial-log", str(out / "com1.log"))
    unreachable(proc)
    assert lent_entries(out) == []
    state = owners(out)
    assert state["."] == OWNER
    for name in (".aero-win7-harness.lock", "selfcheck/serial.log", "launcher.log", ".aero-win7-docker.lock"):
        assert state[name] == OWNER, name
    assert state["case.json"] == (0, 0)  # what the image's user never owned keeps its owner
    log = (out / "launcher.log").read_text()
    assert f'"lent {out} to uid 10001 for the run (it goes back to uid 4242 gid 4243)"' in log
    assert f'"gave {out} back to uid 4242 gid 4243' in log


def test_a_new_folder_made_by_a_root_caller_stays_roots(tmp_path: Path) -> None:
    root_only()
    out = tmp_path / "new" / "out"
    unreachable(launcher("selfcheck", "--out-dir", str(out)))
    assert set(owners(out).values()) == {(0, 0)}


@pytest.mark.fault
def test_a_killed_launchers_record_gives_the_folder_back_to_its_owner(tmp_path: Path, state: Path) -> None:
    """kill -9 while the folder was lent: the lock file still names the owner, and the next root
    launcher gives the folder back to that owner, not to itself nor to the image's user."""
    root_only()
    out = tmp_path / "out"
    previous_run(out)
    for path in (out, *out.iterdir()):
        os.chown(path, IMAGE_UID, IMAGE_UID)
    st = out.stat()
    loans.records().record((st.st_dev, st.st_ino), out.resolve(), OWNER)  # the dead launcher's, outside the folder
    unreachable(launcher("selfcheck", "--out-dir", str(out)))
    assert set(owners(out).values()) == {OWNER}
    assert list(state.iterdir()) == []  # given back: nothing left to finish


@pytest.mark.attack
def test_a_record_planted_by_the_image_user_is_not_believed(tmp_path: Path) -> None:
    """The borrower may replace the lock file in a folder it was lent; its word is not taken."""
    root_only()
    out = tmp_path / "out"
    previous_run(out)
    lock = out / outlock.LAUNCHER_LOCK
    lock.write_text("999999 elsewhere owner=0:0\n")
    os.chown(lock, IMAGE_UID, IMAGE_UID)
    os.chown(out, *OWNER)
    unreachable(launcher("selfcheck", "--out-dir", str(out)))
    assert owners(out)["."] == OWNER and lent_entries(out) == []


@pytest.mark.attack
def test_giving_back_follows_no_link_and_drops_set_id_bits(tmp_path: Path) -> None:
    """What the borrower made: a link out of the folder (its target elsewhere stays as it is), a
    set-uid program (owned by the owner afterwards, never set-uid), a folder with a file in it."""
    root_only()
    out = tmp_path / "out"
    out.mkdir()
    os.chown(out, *OWNER)
    victim = tmp_path / "victim"
    victim.write_text("someone else's\n")
    os.chown(victim, IMAGE_UID, IMAGE_UID)
    with outdir.pinned(out) as folder, outlock.hold(folder) as lock:
        loan = ownership.lend(folder, lock)
        assert owners(out)["."] == (IMAGE_UID, IMAGE_UID)
        (out / "link").symlink_to("../victim")
        (out / "suid").write_text("#!/bin/sh\n")
        (out / "sub").mkdir()
        (out / "sub" / "made").write_text("x\n")
        for name in ("link", "suid", "sub", "sub/made"):
            os.chown(out / name, IMAGE_UID, IMAGE_UID, follow_symlinks=False)
        (out / "suid").chmod(0o4755)
        loan.give_back()
    assert lent_entries(out) == []
    assert owners(out)["link"] == OWNER and owners(out)["sub/made"] == OWNER
    assert (victim.stat().st_uid, victim.stat().st_gid) == (IMAGE_UID, IMAGE_UID)
    assert not (out / "suid").stat().st_mode & 0o6000


def lend_and_give_back(out: Path, during: Callable[[], None] = lambda: None) -> None:
    """What a root launcher does with its folder, the container's part played by ``during``."""
    with outdir.pinned(out) as folder, outlock.hold(folder) as lock:
        loan = ownership.lend(folder, lock)
        try:
            during()
        finally:
            loan.give_back()


@pytest.mark.attack
@pytest.mark.attack
def test_a_lock_file_the_container_planted_is_neither_believed_nor_given_to_the_owner(
        tmp_path: Path, state: Path) -> None:
    """The borrower owns the lent folder: it may unlink the launcher's lock file and write its own,
    naming an owner of its choosing. The launcher's record is not in the folder, the planted file is
    removed when the folder is given back, and the next root run gives the folder to no one else."""
    root_only()
    out = tmp_path / "out"
    out.mkdir()  # root's
    lock = out / outlock.LAUNCHER_LOCK

    def plant() -> None:
        lock.unlink()
        lock.write_text("1 c owner=1000:1000\n")
        lock.chmod(0o644)
        os.chown(lock, IMAGE_UID, IMAGE_UID)

    lend_and_give_back(out, plant)
    assert not lock.exists()  # not the launcher's: gone, never chowned to root
    assert owners(out)["."] == (0, 0) and lent_entries(out) == []
    lend_and_give_back(out)
    unreachable(launcher("selfcheck", "--out-dir", str(out)))
    assert set(owners(out).values()) == {(0, 0)}
    assert list(state.iterdir()) == []


@pytest.mark.attack
@pytest.mark.attack
def test_a_still_alive_container_can_add_nothing_once_the_walk_has_passed(reachable: Path) -> None:
    """The folder goes back before its entries: a container that outlived its launcher's view of it
    (an engine gone away) cannot leave a file of its own behind the walk."""
    root_only()
    out = reachable / "out"
    out.mkdir()
    os.chown(out, *OWNER)
    real_fwalk = os.fwalk
    late: list[subprocess.CompletedProcess[str]] = []

    def fwalk_then_the_container_writes(*args: object, **kwargs: object) -> Iterator[object]:
        yield from real_fwalk(*args, **kwargs)  # type: ignore[call-overload]
        late.append(as_image_user("echo late > late", out))

    def during() -> None:
        assert as_image_user("echo made > made", out).returncode == 0  # lent: the image's user writes it
        os.fwalk = fwalk_then_the_container_writes  # type: ignore[assignment]

    try:
        lend_and_give_back(out, during)
    finally:
        os.fwalk = real_fwalk
    assert late and late[0].returncode != 0 and "Permission denied" in late[0].stderr
    assert not (out / "late").exists()
    assert lent_entries(out) == [] and owners(out)["made"] == OWNER


@pytest.mark.attack
@pytest.mark.attack
def test_a_hard_link_of_an_outside_file_is_not_given_to_the_owner(tmp_path: Path) -> None:
    """A file with a name inside the folder and one outside it (linked in while the folder was lent,
    in a subfolder the owner kept) is not the folder's to give: the file outside keeps its owner."""
    root_only()
    out = tmp_path / "out"
    (out / "selfcheck").mkdir(parents=True)
    for path in (out, out / "selfcheck"):
        os.chown(path, *OWNER)
    outside = tmp_path / "elsewhere.db"
    outside.write_text("the image user's, elsewhere\n")
    os.chown(outside, IMAGE_UID, IMAGE_UID)
    lend_and_give_back(out, lambda: os.link(outside, out / "selfcheck" / "x"))
    assert (outside.stat().st_uid, outside.stat().st_gid) == (IMAGE_UID, IMAGE_UID)
    assert owners(out)["."] == OWNER and owners(out)["selfcheck"] == OWNER


@pytest.mark.fault
def test_signals_wait_for_the_folder_to_be_given_back() -> None:
    got: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: got.append(signum))
    try:
        with ownership._signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            assert got == []
        assert got == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- hard links, links and folders with the harness's names -----------------------------------------

@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside every output folder, root's, that no run may change."""
    path = tmp_path / "victim"
    path.write_text("precious\n")
    path.chmod(0o644)
    return path


def unchanged(victim: Path) -> None:
    st = victim.stat()
    assert victim.read_text() == "precious\n" and (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o644)


@pytest.mark.attack
@pytest.mark.attack
@pytest.mark.parametrize("name", ["serial.log", ".aero-win7-harness.lock", "results.json"])
def test_a_hard_link_with_a_harness_name_is_not_lent(tmp_path: Path, victim: Path, name: str) -> None:
    """Lent, the file outside would be the image's user's (serial.log), or written by root before the
    run (the harness's lock file, truncated when the launcher removes old reports)."""
    root_only()
    out = tmp_path / "out"
    out.mkdir()
    os.chown(out, *OWNER)
    os.link(victim, out / name)
    before = tree_state(out)
    proc = launcher("selfcheck", "--out-dir", str(out))
    one_usage_line(proc, f"--out-dir {out} holds files that are not the harness's ({name} (a hard link)): ")
    unchanged(victim)
    assert tree_state(out) == before


@pytest.mark.attack
@pytest.mark.attack
def test_a_folder_with_a_harness_name_is_looked_into(tmp_path: Path) -> None:
    root_only()
    out = tmp_path / "out"
    (out / "harness.log").mkdir(parents=True)
    (out / "harness.log" / "thesis.tex").write_text("mine\n")
    (out / "selfcheck" / "serial.log").mkdir(parents=True)
    (out / "selfcheck" / "serial.log" / "notes.txt").write_text("mine\n")
    before = tree_state(out)
    proc = launcher("selfcheck", "--out-dir", str(out))
    one_usage_line(proc, f"--out-dir {out} holds files that are not the harness's (harness.log/ (a folder where a "
                         "file is written), selfcheck/serial.log/notes.txt)")
    assert tree_state(out) == before


@pytest.mark.attack
@pytest.mark.attack
def test_a_hard_linked_launcher_lock_is_refused_before_it_is_written(tmp_path: Path, victim: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    os.link(victim, out / outlock.LAUNCHER_LOCK)
    proc = launcher("selfcheck", "--out-dir", str(out))
    one_usage_line(proc, f"--out-dir {out}: {out / outlock.LAUNCHER_LOCK} is a hard link (another file has it too); "
                         "remove it")
    unchanged(victim)


@pytest.mark.attack
@pytest.mark.attack
def test_the_harness_lock_and_reports_are_never_written_or_removed_through_a_link(tmp_path: Path,
                                                                                   victim: Path) -> None:
    """The host side of the folder (the launcher before it lends it, the harness on the host): a lock
    file with another name elsewhere is not written, a report that is a hard link, a link or a FIFO
    is neither read nor removed, and none of it blocks."""
    out = tmp_path / "out"
    previous_run(out)
    os.link(victim, out / ".aero-win7-harness.lock")
    with pytest.raises(UsageError, match=r"\.aero-win7-harness\.lock is a hard link \(another file has it too\)"):
        with lock_out_dir(out):
            pass
    assert discard_reports(out) == []  # the folder cannot be locked: nothing removed
    unchanged(victim)
    assert all((out / name).exists() for name in REPORTS)
    (out / ".aero-win7-harness.lock").unlink()
    outside_report = tmp_path / "their-results.json"
    outside_report.write_text(PASS_RESULTS)
    (out / "results.json").unlink()
    os.link(outside_report, out / "results.json")
    (out / "junit.xml").unlink()
    os.mkfifo(out / "junit.xml")
    (out / "report.html").rename(tmp_path / "their-report.html")
    (out / "report.html").symlink_to(tmp_path / "their-report.html")
    assert discard_reports(out) == []
    assert (out / "results.json").stat().st_nlink == 2 and stat.S_ISFIFO((out / "junit.xml").lstat().st_mode)
    assert (out / "report.html").is_symlink()
    (out / "results.json").unlink()
    (out / "results.json").write_text(PASS_RESULTS)
    assert discard_reports(out) == ["results.json"]  # a report of one name still goes


@pytest.mark.bad_input
@pytest.mark.bad_input
def test_a_root_callers_output_file_in_a_subfolder_is_one_usage_line(tmp_path: Path) -> None:
    """Only the top of the folder is lent: the harness could not write OUT/a/x.log, and the run would end
    in an internal error instead of a refusal."""
    root_only()
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    before = tree_state(out)
    proc = launcher("selfcheck", "--out-dir", str(out), "--serial-log", str(out / "a" / "x.log"))
    one_usage_line(proc, f"--serial-log {out}/a/x.log is in a folder inside the output folder {out}: a root "
                         "caller's container runs as the image's user, which is lent only the top of the output folder")
    assert tree_state(out) == before


# --- one launcher per folder ----------------------------------------------------------------------

@pytest.mark.fault
def test_a_second_launcher_is_refused_naming_the_host_folder_and_pid(tmp_path: Path, held: Holder) -> None:
    out = tmp_path / "out"
    previous_run(out)
    holder = held(f"""
        from pathlib import Path
        from harness.launcher import outdir, outlock
        with outdir.pinned(Path({str(out)!r})) as folder, outlock.hold(folder):
            print("held", flush=True)
            input()
    """)
    before = tree_state(out)
    proc = launcher("selfcheck", "--out-dir", str(out))
    assert proc.returncode == 6, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        f"FAIL: INFRA: --out-dir {out} is in use by another aero-win7-docker (pid {holder.pid} on "
        f"{socket.gethostname()}); wait for it to finish or pass another --out-dir"]
    assert tree_state(out) == before  # its reports, its launcher.log, its owners: all as they were


@pytest.mark.fault
def test_a_harness_run_on_the_host_holding_the_folder_is_refused(tmp_path: Path, held: Holder) -> None:
    out = tmp_path / "out"
    previous_run(out)
    holder = held(f"""
        from pathlib import Path
        from harness.outputs import lock_out_dir
        with lock_out_dir(Path({str(out)!r})):
            print("held", flush=True)
            input()
    """)
    before = tree_state(out)
    proc = launcher("selfcheck", "--out-dir", str(out))
    assert proc.returncode == 6, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        f"FAIL: INFRA: --out-dir {out} is in use by a harness run (pid {holder.pid} on {socket.gethostname()}); "
        "wait for it to finish or pass another --out-dir"]
    assert tree_state(out) == before  # not even the launcher's lock file


# --- a previous run's reports ---------------------------------------------------------------------

@pytest.mark.fault
def test_the_previous_verdict_goes_when_the_engine_is_unreachable(tmp_path: Path) -> None:
    out = tmp_path / "out"
    previous_run(out)
    unreachable(launcher("selfcheck", "--out-dir", str(out)))
    for name in REPORTS:
        assert not (out / name).exists(), name
    assert (out / "serial.log").exists()  # not a verdict: the harness replaces it when it runs
    assert "removed the previous run's reports: results.json, junit.xml, report.html" in \
        (out / "launcher.log").read_text()


@pytest.mark.parametrize("bad", [
    ["--disk-image", "{tmp}/missing.qcow2"],
    ["--disk-image", "{tmp}/win7.qcow2", "--serial-log", "/etc/x.log"],
    ["--disk-image", "{tmp}/win7.qcow2", "--qemu-system", "/opt/qemu"],
    ["--disk-image", "{tmp}/win7.qcow2", "--no-such-flag"],
])
@pytest.mark.bad_input
def test_bad_input_refused_before_the_folder_is_validated_keeps_the_previous_reports(
        tmp_path: Path, bad: list[str]) -> None:
    (tmp_path / "win7.qcow2").write_bytes(b"QFI\xfb")
    out = tmp_path / "out"
    previous_run(out)
    before = tree_state(out)
    proc = launcher(*[arg.format(tmp=tmp_path) for arg in bad], "--out-dir", str(out))
    assert proc.returncode == 2 and len(proc.stdout.splitlines()) == 1, proc.stdout + proc.stderr
    assert tree_state(out) == before


@pytest.mark.bad_input
def test_a_file_that_merely_has_a_reports_name_is_kept(tmp_path: Path) -> None:
    """The disk image kept as results.json in the output folder is no earlier verdict."""
    out = tmp_path / "out"
    out.mkdir()
    disk = out / "results.json"
    disk.write_bytes(b"QFI\xfb" + bytes(508))
    disk.chmod(0o644)
    (out / "report.html").mkdir()
    proc = launcher("--disk-image", str(disk), "--out-dir", str(out))
    if os.getuid() == 0:  # never lent: the container's user could delete it
        one_usage_line(proc, f"--out-dir {out} holds files that are not the harness's (report.html/ (a folder "
                             "where a file is written), results.json)")
    else:
        unreachable(proc)
    assert disk.read_bytes()[:4] == b"QFI\xfb" and (out / "report.html").is_dir()
