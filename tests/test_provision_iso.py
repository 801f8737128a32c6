"""``aero-win7-harness provision``: the ISO read back with pycdlib, the script it holds, bad input."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

import pycdlib
import pytest

from harness.cli import main
from harness.provision.layout import DEFAULT_HTTP_URL
from wincmd_model import argv, cmd_line

SELFTEST_BYTES = b"MZ\x90\x00" + bytes(range(256)) * 4
DRIVER_FILES = {
    "viostor/w7/amd64/viostor.inf": b"[Version]\r\nSignature=$Windows NT$\r\n",
    "viostor/w7/amd64/viostor.sys": b"\x00sys" * 100,
    "viostor/w7/amd64/viostor.cat": b"cat",
    "NetKVM/w7/amd64/netkvm.INF": b"[Version]\r\n",
    "NetKVM/w7/amd64/netkvm.sys": b"net",
    "virtio snd (test)/w7/aero&snd.inf": b"[Version]\r\n",
}
REDIRECT = ' >>"%AERO_LOG%" 2>&1'
ENV = {"AERO_DRIVE": "E:", "AERO_LOG": "C:\\aero-win7-provision.log"}


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    exe = tmp_path / "in" / "my selftest.exe"
    exe.parent.mkdir()
    exe.write_bytes(SELFTEST_BYTES)
    drivers = tmp_path / "in" / "drivers out"
    for rel, data in DRIVER_FILES.items():
        (drivers / rel).parent.mkdir(parents=True, exist_ok=True)
        (drivers / rel).write_bytes(data)
    return exe, drivers


def _provision(capsys: pytest.CaptureFixture[str], exe: Path, drivers: Path, *extra: str) -> tuple[int, list[str]]:
    code = main(["provision", "--selftest-exe", str(exe), "--drivers-dir", str(drivers), *extra])
    return code, capsys.readouterr().out.splitlines()


class Iso:
    """A provisioning ISO opened with pycdlib (Joliet and ISO 9660 views)."""

    def __init__(self, path: Path) -> None:
        self.iso = pycdlib.PyCdlib()
        self.iso.open(str(path))

    def joliet_files(self) -> set[str]:
        found: set[str] = set()
        for root, _dirs, files in self.iso.walk(joliet_path="/"):
            found |= {str(PurePosixPath(root) / name).lstrip("/") for name in files}
        return found

    def iso9660_files(self) -> set[str]:
        found: set[str] = set()
        for root, _dirs, files in self.iso.walk(iso_path="/"):
            found |= {str(PurePosixPath(root) / name).lstrip("/") for name in files}
        return found

    def read(self, path: str) -> bytes:
        out = io.BytesIO()
        self.iso.get_file_from_iso_fp(out, joliet_path="/" + path)
        return out.getvalue()

    def script(self) -> list[str]:
        raw = self.read("AERO/provision/provision.cmd")
        assert raw.isascii()
        assert raw.endswith(b"\r\n") and b"\n" not in raw.replace(b"\r\n", b"")
        return raw.decode("ascii").split("\r\n")[:-1]

    def close(self) -> None:
        self.iso.close()


OpenIso = Callable[[Path], "Iso"]


@pytest.fixture
def open_iso() -> Iterator[OpenIso]:
    opened: list[Iso] = []

    def _open(path: Path) -> Iso:
        opened.append(Iso(path))
        return opened[-1]

    yield _open
    for iso in opened:
        iso.close()


def _command(lines: list[str], program: str) -> list[list[str]]:
    """argv of every script line that runs ``program`` (its log redirection stripped)."""
    found: list[list[str]] = []
    for line in lines:
        if line.startswith(program + " "):
            assert line.endswith(REDIRECT), line
            found.append(argv(cmd_line(line.removesuffix(REDIRECT), ENV)))
    return found


def _task_argv(lines: list[str]) -> list[str]:
    (schtasks,) = _command(lines, "schtasks")
    assert schtasks[:12] == ["schtasks", "/Create", "/F", "/TN", "AeroVirtioSelftest", "/SC", "ONSTART",
                             "/RU", "SYSTEM", "/RL", "HIGHEST", "/TR"]
    assert len(schtasks) == 13
    return argv(schtasks[12])


def test_iso_holds_the_media_and_the_default_script(tmp_path: Path, inputs: tuple[Path, Path],
                                                     capsys: pytest.CaptureFixture[str], open_iso: OpenIso) -> None:
    exe, drivers = inputs
    out = tmp_path / "out" / "prov.iso"
    code, stdout = _provision(capsys, exe, drivers, "--output-iso", str(out))
    assert code == 0
    assert stdout[-1] == "in the guest, run AERO\\provision\\provision.cmd from the media as administrator"
    iso = open_iso(out)

    expected = {"AERO_WIN7_PROVISIONING.TXT", "AERO/selftest/aero-virtio-selftest.exe", "AERO/provision/provision.cmd"}
    expected |= {f"AERO/drivers/{rel}" for rel in DRIVER_FILES}
    assert iso.joliet_files() == expected
    assert iso.read("AERO/selftest/aero-virtio-selftest.exe") == SELFTEST_BYTES
    for rel, data in DRIVER_FILES.items():
        assert iso.read(f"AERO/drivers/{rel}") == data
    assert b"provision.cmd" in iso.read("AERO_WIN7_PROVISIONING.TXT")
    # The ISO 9660 view (for readers without Joliet) carries the same files under d-character names.
    assert "AERO/SELFTEST/AERO_VIRTIO_SELFTEST.EXE;1" in iso.iso9660_files()
    assert "AERO/DRIVERS/VIRTIO_SND__TEST_/W7/AERO_SND.INF;1" in iso.iso9660_files()
    assert len(iso.iso9660_files()) == len(expected)

    lines = iso.script()
    assert lines[:2] == ["@echo off", "setlocal EnableExtensions DisableDelayedExpansion"]
    assert "fltmc >nul 2>&1" in lines
    assert 'set "AERO_LOG=C:\\aero-win7-provision.log"' in lines
    assert 'set "AERO_DRIVE=%~d0"' in lines
    assert any('if exist "%%D:\\AERO_WIN7_PROVISIONING.TXT" set "AERO_DRIVE=%%D:"' in line for line in lines)
    # Each INF (any case of the suffix) installed from the media; each path is a file on the ISO.
    installs = _command(lines, "pnputil")
    assert [a[:3] for a in installs] == [["pnputil", "-i", "-a"]] * 3
    on_iso = {a[3].removeprefix("E:\\").replace("\\", "/") for a in installs}
    assert on_iso == {f"AERO/drivers/{rel}" for rel in DRIVER_FILES if rel.lower().endswith(".inf")}
    (copy,) = _command(lines, "copy")
    assert copy == ["copy", "/Y", "E:\\AERO\\selftest\\aero-virtio-selftest.exe",
                    "C:\\AeroTests\\aero-virtio-selftest.exe"]
    # Defaults: only the URL is baked; no test signing, no reboot.
    assert _task_argv(lines) == ["C:\\AeroTests\\aero-virtio-selftest.exe", "--http-url", DEFAULT_HTTP_URL]
    assert _command(lines, "bcdedit") == []
    assert _command(lines, "shutdown") == []


def test_every_flag_lands_in_the_script(tmp_path: Path, inputs: tuple[Path, Path],
                                        capsys: pytest.CaptureFixture[str], open_iso: OpenIso) -> None:
    exe, drivers = inputs
    out = tmp_path / "p.iso"
    url = "http://10.0.2.2:28080/selftest?a=1&b=%41"
    code, _ = _provision(capsys, exe, drivers, "--output-iso", str(out), "--http-url", url, "--udp-port", "28081",
                         "--blk-root", "D:\\aero-virtio-selftest\\", "--require-snd",
                         "--enable-test-signing", "--auto-reboot")
    assert code == 0
    lines = open_iso(out).script()
    assert _task_argv(lines) == ["C:\\AeroTests\\aero-virtio-selftest.exe", "--http-url", url, "--udp-port", "28081",
                                 "--blk-root", "D:\\aero-virtio-selftest\\", "--require-snd"]
    assert _command(lines, "bcdedit") == [["bcdedit", "/set", "testsigning", "on"]]
    assert _command(lines, "shutdown") == [["shutdown", "/r", "/t", "0"]]
    # Test signing comes before the drivers, the reboot after the task.
    first = {prog: next(i for i, line in enumerate(lines) if line.startswith(prog + " "))
             for prog in ("bcdedit", "pnputil", "schtasks", "shutdown")}
    assert first["bcdedit"] < first["pnputil"] < first["schtasks"] < first["shutdown"]
    # A failed mandatory step stops before the reboot.
    for prog in ("bcdedit", "copy", "schtasks"):
        index = next(i for i, line in enumerate(lines) if line.startswith(prog + " "))
        assert lines[index + 1] == "if errorlevel 1 goto :failed"


@pytest.mark.parametrize(
    ("blk_root", "tr_fragment"),
    [
        ("D:\\aero-virtio-selftest\\", "--blk-root D:\\aero-virtio-selftest\\"),
        ("D:\\aero virtio selftest\\", '--blk-root \\"D:\\aero virtio selftest\\\\\\\\\\"'),
        # cmd's quote state is off between the \" marks, so the & there needs its caret.
        ("E:\\tests & more\\", '--blk-root \\"E:\\tests ^& more\\\\\\\\\\"'),
        ("F:\\100%\\", "--blk-root F:\\100%%\\"),
    ],
)
def test_blk_root_quoting_in_the_task(tmp_path: Path, inputs: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
                                      open_iso: OpenIso, blk_root: str, tr_fragment: str) -> None:
    exe, drivers = inputs
    out = tmp_path / "q.iso"
    assert _provision(capsys, exe, drivers, "--output-iso", str(out), "--blk-root", blk_root)[0] == 0
    lines = open_iso(out).script()
    (line,) = [x for x in lines if x.startswith("schtasks ")]
    assert tr_fragment in line
    assert _task_argv(lines)[-2:] == ["--blk-root", blk_root]


def test_output_dir_gets_the_same_files_and_can_be_rewritten(
        tmp_path: Path, inputs: tuple[Path, Path], capsys: pytest.CaptureFixture[str], open_iso: OpenIso) -> None:
    exe, drivers = inputs
    tree, out = tmp_path / "tree", tmp_path / "p.iso"
    assert _provision(capsys, exe, drivers, "--output-dir", str(tree), "--output-iso", str(out))[0] == 0
    iso = open_iso(out)
    on_disk = {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()}
    assert on_disk == iso.joliet_files()
    for rel in on_disk:
        assert (tree / rel).read_bytes() == iso.read(rel)
    # Earlier media in the folder is replaced, stale files go.
    (tree / "AERO" / "drivers" / "stale.inf").write_bytes(b"old")
    assert _provision(capsys, exe, drivers, "--output-dir", str(tree), "--require-snd")[0] == 0
    assert not (tree / "AERO" / "drivers" / "stale.inf").exists()
    assert "--require-snd" in (tree / "AERO" / "provision" / "provision.cmd").read_text()


def test_default_output_is_an_iso_in_the_current_folder(tmp_path: Path, inputs: tuple[Path, Path],
                                                        capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch, open_iso: OpenIso) -> None:
    exe, drivers = inputs
    monkeypatch.chdir(tmp_path)
    code, stdout = _provision(capsys, exe, drivers)
    assert code == 0
    assert stdout[0] == "provisioning ISO written to aero-win7-provisioning.iso"
    assert "AERO/provision/provision.cmd" in open_iso(tmp_path / "aero-win7-provisioning.iso").joliet_files()


def _usage_fails(capsys: pytest.CaptureFixture[str], argv_: list[str], detail: str) -> None:
    try:
        code = main(["provision", *argv_])
    except SystemExit as done:  # argparse's own errors end this way (the console script exits 2)
        code = int(str(done.code))
    out = capsys.readouterr().out.splitlines()
    assert code == 2
    assert len(out) == 1, out
    assert out[0].startswith("FAIL: USAGE: ") and detail in out[0], out[0]


def test_bad_input_is_one_usage_line(tmp_path: Path, inputs: tuple[Path, Path],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    exe, drivers = inputs
    base = ["--selftest-exe", str(exe), "--drivers-dir", str(drivers), "--output-iso", str(tmp_path / "x.iso")]
    _usage_fails(capsys, ["--drivers-dir", str(drivers)], "--selftest-exe")
    _usage_fails(capsys, [*base[2:], "--selftest-exe", str(tmp_path / "missing.exe")], "not a file")
    not_pe = tmp_path / "not-pe.exe"
    not_pe.write_bytes(b"\x7fELF")
    _usage_fails(capsys, [*base[2:], "--selftest-exe", str(not_pe)], "MZ")
    _usage_fails(capsys, [*base[:2], "--drivers-dir", str(tmp_path / "nodir")], "not a folder")
    empty = tmp_path / "no-inf"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    _usage_fails(capsys, [*base[:2], "--drivers-dir", str(empty)], "no .inf")
    _usage_fails(capsys, [*base, "--http-url", "ftp://host/x"], "--http-url")
    _usage_fails(capsys, [*base, "--http-url", "http://[::1/x"], "--http-url")
    _usage_fails(capsys, [*base, "--http-url", "http://10.0.2.2:port/x"], "--http-url")
    _usage_fails(capsys, [*base, "--blk-root", 'D:\\"x"'], "--blk-root")
    _usage_fails(capsys, [*base, "--udp-port", "70000"], "port")
    _usage_fails(capsys, [*base, "--blk-root", "D:\\x\ny"], "control character")
    _usage_fails(capsys, [*base, "--blk-root", "D:\\" + "x" * 240], "261")
    _usage_fails(capsys, [*base, "--blk-root", "D:\\caf\u00e9"], "ASCII")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep")
    _usage_fails(capsys, [*base, "--output-dir", str(busy)], "not empty")
    assert (busy / "mine.txt").read_text() == "keep"
    assert not (tmp_path / "x.iso").exists()


@pytest.mark.parametrize(
    ("name", "detail"),
    [("a:b.inf", "does not allow"), ("trailing.", "dot"), ("con.inf", "reserved"), ("x" * 61 + ".inf", "64")],
)
def test_driver_names_windows_cannot_hold(tmp_path: Path, inputs: tuple[Path, Path],
                                          capsys: pytest.CaptureFixture[str], name: str, detail: str) -> None:
    exe, drivers = inputs
    (drivers / name).write_bytes(b"x")
    _usage_fails(capsys, ["--selftest-exe", str(exe), "--drivers-dir", str(drivers),
                          "--output-iso", str(tmp_path / "x.iso")], detail)


def test_names_differing_only_by_case_are_refused(tmp_path: Path, inputs: tuple[Path, Path],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    exe, drivers = inputs
    (drivers / "netkvm").mkdir()
    (drivers / "netkvm" / "x.inf").write_bytes(b"x")  # beside NetKVM/
    _usage_fails(capsys, ["--selftest-exe", str(exe), "--drivers-dir", str(drivers),
                          "--output-iso", str(tmp_path / "x.iso")], "differ only by case")


def test_iso9660_names_stay_unique_when_mangled(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                open_iso: OpenIso) -> None:
    exe = tmp_path / "t.exe"
    exe.write_bytes(SELFTEST_BYTES)
    drivers = tmp_path / "d"
    drivers.mkdir()
    names = ["a-b.inf", "a_b.inf", "a b.inf", "long-" + "n" * 40 + ".inf", "long_" + "n" * 40 + ".inf"]
    for name in names:
        (drivers / name).write_bytes(name.encode())
    out = tmp_path / "m.iso"
    assert _provision(capsys, exe, drivers, "--output-iso", str(out))[0] == 0
    iso = open_iso(out)
    mangled = {p for p in iso.iso9660_files() if p.startswith("AERO/DRIVERS/")}
    assert len(mangled) == len(names)
    assert all(len(PurePosixPath(p).name.removesuffix(";1")) <= 30 for p in mangled)
    for name in names:
        assert iso.read(f"AERO/drivers/{name}") == name.encode()
