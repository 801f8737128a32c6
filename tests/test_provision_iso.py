"""``aero-win7-harness provision``: the ISO read back with pycdlib, the script it holds, bad input.

The helpers here (the ISO reader, the script's commands, the task's argv) serve the other
``test_provision_*`` modules too.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

import pycdlib
import pytest
from wincmd_model import argv, cmd_line

from harness.cli import main
from harness.provision.layout import DEFAULT_HTTP_URL

SELFTEST_BYTES = b"MZ\x90\x00" + bytes(range(256)) * 4
HWIDS = {
    "blk": "PCI\\VEN_1AF4&DEV_1042&REV_01",
    "net": "PCI\\VEN_1AF4&DEV_1041&REV_01",
    "input": "PCI\\VEN_1AF4&DEV_1052&SUBSYS_00101AF4&REV_01",
    "tablet": "PCI\\VEN_1AF4&DEV_1052&SUBSYS_00121AF4&REV_01",
    "snd": "PCI\\VEN_1AF4&DEV_1059&REV_01",
    "legacy": "PCI\\VEN_1AF4&DEV_1018",
}


def inf_text(hwid: str, *, utf16: bool = False) -> bytes:
    """A small INF that lists ``hwid`` (UTF-16 with a BOM, as many real INFs are, when asked)."""
    text = f'[Version]\r\nSignature="$Windows NT$"\r\n\r\n[Models.NTamd64]\r\n%Dev% = Install, {hwid}\r\n'
    return b"\xff\xfe" + text.encode("utf-16-le") if utf16 else text.encode("ascii")


DRIVER_FILES = {
    "blk/aero_virtio_blk.inf": inf_text(HWIDS["blk"]),
    "blk/aero_virtio_blk.sys": b"\x00sys" * 100,
    "blk/aero_virtio_blk.cat": b"cat",
    "net kvm/AERO_VIRTIO_NET.INF": inf_text(HWIDS["net"], utf16=True),
    "net kvm/aero_virtio_net.sys": b"net",
    "input/aero_virtio_input.inf": inf_text(HWIDS["input"]),
    "input/aero_virtio_tablet.inf": inf_text(HWIDS["tablet"]),
    "snd & co (test)/w7/aero_virtio_snd.inf": inf_text(HWIDS["snd"]),
    "snd & co (test)/w7/aero-virtio-snd-legacy.inf": inf_text(HWIDS["legacy"]),
    "tools/virtio-transport-test.inf": b"[Version]\r\n",
}
# The default list's INFs, in its (install) order.
DEFAULT_INSTALL = [
    "blk/aero_virtio_blk.inf",
    "net kvm/AERO_VIRTIO_NET.INF",
    "input/aero_virtio_input.inf",
    "input/aero_virtio_tablet.inf",
    "snd & co (test)/w7/aero_virtio_snd.inf",
]
REDIRECT = ' >>"%AERO_LOG%" 2>&1'
ENV = {"AERO_DRIVE": "E:", "AERO_LOG": "C:\\aero-win7-provision.log"}
SELFTEST = "C:\\AeroTests\\aero-virtio-selftest.exe"
DEFAULT_TASK = [SELFTEST, "--http-url", DEFAULT_HTTP_URL, "--dns-host", "host.lan"]
TASK_NS = "{http://schemas.microsoft.com/windows/2004/02/mit/task}"


def make_inputs(base: Path, files: dict[str, bytes] = DRIVER_FILES) -> tuple[Path, Path]:
    exe = base / "in" / "my selftest.exe"
    exe.parent.mkdir(parents=True, exist_ok=True)
    exe.write_bytes(SELFTEST_BYTES)
    drivers = base / "in" / "drivers out"
    for rel, data in files.items():
        (drivers / rel).parent.mkdir(parents=True, exist_ok=True)
        (drivers / rel).write_bytes(data)
    return exe, drivers


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    return make_inputs(tmp_path)


def provision(capsys: pytest.CaptureFixture[str], exe: Path, drivers: Path, *extra: str) -> tuple[int, list[str]]:
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

    def task_argv(self) -> list[str]:
        """The selftest's argv as the boot-time task will run it (from /TR, or from the task XML)."""
        return task_argv(self.script(), self)

    def close(self) -> None:
        self.iso.close()


OpenIso = Callable[[Path], Iso]


@pytest.fixture
def open_iso() -> Iterator[OpenIso]:
    opened: list[Iso] = []

    def _open(path: Path) -> Iso:
        opened.append(Iso(path))
        return opened[-1]

    yield _open
    for iso in opened:
        iso.close()


def command(lines: list[str], program: str) -> list[list[str]]:
    """argv of every script line that runs ``program`` (its log redirection stripped)."""
    found: list[list[str]] = []
    for line in lines:
        if line.startswith(program + " "):
            assert line.endswith(REDIRECT), line
            found.append(argv(cmd_line(line.removesuffix(REDIRECT), ENV)))
    return found


SCHTASKS_TR = ["schtasks", "/Create", "/F", "/TN", "AeroVirtioSelftest", "/SC", "ONSTART", "/RU", "SYSTEM",
               "/RL", "HIGHEST", "/TR"]
SCHTASKS_XML = ["schtasks", "/Create", "/F", "/TN", "AeroVirtioSelftest", "/XML",
                "E:\\AERO\\provision\\AeroVirtioSelftest.xml"]


def task_xml_command_line(xml: bytes) -> str:
    """The command line Task Scheduler starts for the task XML's one Exec action."""
    assert xml.startswith(b"\xff\xfe")
    text = xml[2:].decode("utf-16-le")
    assert text.startswith('<?xml version="1.0" encoding="UTF-16"?>\r\n')
    root = ET.fromstring(text.split("\r\n", 1)[1])
    assert root.tag == f"{TASK_NS}Task" and root.get("version") == "1.2"
    assert root.findtext(f"{TASK_NS}Principals/{TASK_NS}Principal/{TASK_NS}UserId") == "S-1-5-18"
    assert root.findtext(f"{TASK_NS}Principals/{TASK_NS}Principal/{TASK_NS}RunLevel") == "HighestAvailable"
    assert root.find(f"{TASK_NS}Triggers/{TASK_NS}BootTrigger") is not None
    (action,) = root.findall(f"{TASK_NS}Actions/{TASK_NS}Exec")
    return f"{action.findtext(f'{TASK_NS}Command')} {action.findtext(f'{TASK_NS}Arguments')}"


def task_argv(lines: list[str], iso: Iso | None = None) -> list[str]:
    (schtasks,) = command(lines, "schtasks")
    if schtasks[:12] == SCHTASKS_TR:
        assert len(schtasks) == 13
        assert len(schtasks[12]) <= 261
        return argv(schtasks[12])
    assert schtasks == SCHTASKS_XML, schtasks
    assert iso is not None, "the task is in its XML file: give the ISO"
    return argv(task_xml_command_line(iso.read("AERO/provision/AeroVirtioSelftest.xml")))


def installed(lines: list[str]) -> list[str]:
    """The media paths provision.cmd installs, in order (each also checked to exist first)."""
    found: list[str] = []
    for index, line in enumerate(lines):
        if line.startswith("pnputil "):
            (args,) = command([line], "pnputil")
            assert args[:3] == ["pnputil", "-i", "-a"] and len(args) == 4
            check = lines[index - 1]
            assert check.startswith("if not exist ") and check.endswith(" goto :failed"), check
            assert cmd_line(check.removeprefix("if not exist ").removesuffix(" goto :failed"), ENV) == \
                f'"{args[3]}"'
            found.append(args[3].removeprefix("E:\\").replace("\\", "/"))
    return found


def usage_fails(capsys: pytest.CaptureFixture[str], argv_: list[str], detail: str) -> str:
    try:
        code = main(["provision", *argv_])
    except SystemExit as done:  # argparse's own errors end this way (the console script exits 2)
        code = int(str(done.code))
    out = capsys.readouterr().out.splitlines()
    assert code == 2
    assert len(out) == 1, out
    assert out[0].startswith("FAIL: USAGE: ") and detail in out[0], out[0]
    return out[0]


def test_iso_holds_the_media_and_the_default_script(tmp_path: Path, inputs: tuple[Path, Path],
                                                     capsys: pytest.CaptureFixture[str], open_iso: OpenIso) -> None:
    exe, drivers = inputs
    out = tmp_path / "out" / "prov.iso"
    code, stdout = provision(capsys, exe, drivers, "--output-iso", str(out))
    assert code == 0
    assert stdout[-1] == "in the guest, run AERO\\provision\\provision.cmd from the media as administrator"
    iso = open_iso(out)

    expected = {"AERO_PROVISIONING_MEDIA.TXT", "AERO_WIN7_PROVISIONING.TXT", "AERO/selftest/aero-virtio-selftest.exe",
                "AERO/provision/provision.cmd", "AERO/provision/manifest.json"}
    expected |= {f"AERO/drivers/{rel}" for rel in DRIVER_FILES}
    assert iso.joliet_files() == expected
    assert iso.read("AERO/selftest/aero-virtio-selftest.exe") == SELFTEST_BYTES
    for rel, data in DRIVER_FILES.items():
        assert iso.read(f"AERO/drivers/{rel}") == data
    assert b"provision.cmd" in iso.read("AERO_PROVISIONING_MEDIA.TXT")
    assert b"provision.cmd" in iso.read("AERO_WIN7_PROVISIONING.TXT")
    # The ISO 9660 view (for readers without Joliet) carries the same files under d-character names.
    assert "AERO/SELFTEST/AERO_VIRTIO_SELFTEST.EXE;1" in iso.iso9660_files()
    assert "AERO/DRIVERS/SND___CO__TEST_/W7/AERO_VIRTIO_SND.INF;1" in iso.iso9660_files()
    assert "AERO_PROVISIONING_MEDIA.TXT;1" in iso.iso9660_files()
    assert len(iso.iso9660_files()) == len(expected)

    lines = iso.script()
    assert lines[:2] == ["@echo off", "setlocal EnableExtensions DisableDelayedExpansion"]
    assert "fltmc >nul 2>&1" in lines
    assert 'set "AERO_LOG=C:\\aero-win7-provision.log"' in lines
    assert 'set "AERO_DRIVE=%~d0"' in lines
    # The media is found by upstream's marker file.
    assert 'if exist "%AERO_DRIVE%\\AERO_PROVISIONING_MEDIA.TXT" goto :have_media' in lines
    assert any('if exist "%%D:\\AERO_PROVISIONING_MEDIA.TXT" set "AERO_DRIVE=%%D:"' in line for line in lines)
    # The default list's INFs (any case of the name), in its order; each path is a file on the ISO.
    assert installed(lines) == [f"AERO/drivers/{rel}" for rel in DEFAULT_INSTALL]
    (copy,) = command(lines, "copy")
    assert copy == ["copy", "/Y", "E:\\AERO\\selftest\\aero-virtio-selftest.exe", SELFTEST]
    # Defaults: the URL and the DNS name are baked (as upstream does); no test signing, no registry, no reboot.
    assert iso.task_argv() == DEFAULT_TASK
    assert command(lines, "bcdedit") == []
    assert command(lines, "reg") == []
    assert command(lines, "shutdown") == []


def test_steps_land_in_the_script_in_order(tmp_path: Path, inputs: tuple[Path, Path],
                                           capsys: pytest.CaptureFixture[str], open_iso: OpenIso) -> None:
    exe, drivers = inputs
    out = tmp_path / "p.iso"
    url = "http://10.0.2.2:28080/selftest?a=1&b=%41"
    code, _ = provision(capsys, exe, drivers, "--output-iso", str(out), "--http-url", url, "--udp-port", "28081",
                        "--blk-root", "D:\\aero-virtio-selftest\\", "--require-snd", "--enable-test-signing",
                        "--enable-virtio-input-compat-id-name", "--auto-reboot")
    assert code == 0
    iso = open_iso(out)
    lines = iso.script()
    assert iso.task_argv() == [SELFTEST, "--http-url", url, "--dns-host", "host.lan", "--udp-port", "28081",
                               "--blk-root", "D:\\aero-virtio-selftest\\", "--require-snd", "--test-snd-capture"]
    assert command(lines, "bcdedit") == [["bcdedit", "/set", "testsigning", "on"]]
    assert command(lines, "reg") == [["reg", "add",
                                      "HKLM\\System\\CurrentControlSet\\Services\\aero_virtio_input\\Parameters",
                                      "/v", "CompatIdName", "/t", "REG_DWORD", "/d", "1", "/f"]]
    assert command(lines, "shutdown") == [["shutdown", "/r", "/t", "0"]]
    # Test signing before the drivers, the registry value after them, the reboot after the task.
    first = {prog: next(i for i, line in enumerate(lines) if line.startswith(prog + " "))
             for prog in ("bcdedit", "pnputil", "reg", "copy", "schtasks", "shutdown")}
    assert first["bcdedit"] < first["pnputil"] < first["reg"] < first["copy"] < first["schtasks"] < first["shutdown"]
    # A failed mandatory step stops the script before the reboot; pnputil only counts a warning.
    for prog in ("bcdedit", "reg", "copy", "schtasks"):
        index = next(i for i, line in enumerate(lines) if line.startswith(prog + " "))
        assert lines[index + 1] == "if errorlevel 1 goto :failed"
    index = next(i for i, line in enumerate(lines) if line.startswith("pnputil "))
    assert lines[index + 1] == "if errorlevel 1 set /a AERO_WARNINGS+=1"


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
    assert provision(capsys, exe, drivers, "--output-iso", str(out), "--blk-root", blk_root)[0] == 0
    iso = open_iso(out)
    (line,) = [x for x in iso.script() if x.startswith("schtasks ")]
    assert tr_fragment in line
    assert iso.task_argv() == [*DEFAULT_TASK, "--blk-root", blk_root]


def test_output_dir_gets_the_same_files_and_can_be_rewritten(
        tmp_path: Path, inputs: tuple[Path, Path], capsys: pytest.CaptureFixture[str], open_iso: OpenIso) -> None:
    exe, drivers = inputs
    tree, out = tmp_path / "tree", tmp_path / "p.iso"
    assert provision(capsys, exe, drivers, "--output-dir", str(tree), "--output-iso", str(out))[0] == 0
    iso = open_iso(out)
    on_disk = {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()}
    assert on_disk == iso.joliet_files()
    for rel in on_disk:
        assert (tree / rel).read_bytes() == iso.read(rel)
    # Earlier media in the folder is replaced, stale files go.
    (tree / "AERO" / "drivers" / "stale.inf").write_bytes(b"old")
    assert provision(capsys, exe, drivers, "--output-dir", str(tree), "--require-snd")[0] == 0
    assert not (tree / "AERO" / "drivers" / "stale.inf").exists()
    assert "--require-snd" in (tree / "AERO" / "provision" / "provision.cmd").read_text()


def test_a_folder_of_the_earlier_layout_counts_as_earlier_media(tmp_path: Path, inputs: tuple[Path, Path],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    exe, drivers = inputs
    tree = tmp_path / "old"
    (tree / "AERO" / "provision").mkdir(parents=True)
    (tree / "AERO_WIN7_PROVISIONING.TXT").write_bytes(b"media made before the marker was renamed\r\n")
    (tree / "AERO" / "provision" / "provision.cmd").write_bytes(b"old\r\n")
    assert provision(capsys, exe, drivers, "--output-dir", str(tree))[0] == 0
    assert (tree / "AERO_PROVISIONING_MEDIA.TXT").is_file()
    assert (tree / "AERO" / "provision" / "provision.cmd").read_bytes() != b"old\r\n"


def test_default_output_is_an_iso_in_the_current_folder(tmp_path: Path, inputs: tuple[Path, Path],
                                                        capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch, open_iso: OpenIso) -> None:
    exe, drivers = inputs
    monkeypatch.chdir(tmp_path)
    code, stdout = provision(capsys, exe, drivers)
    assert code == 0
    assert stdout[0] == "provisioning ISO written to aero-win7-provisioning.iso"
    assert "AERO/provision/provision.cmd" in open_iso(tmp_path / "aero-win7-provisioning.iso").joliet_files()


@pytest.mark.bad_input
def test_bad_input_is_one_usage_line(tmp_path: Path, inputs: tuple[Path, Path],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    exe, drivers = inputs
    base = ["--selftest-exe", str(exe), "--drivers-dir", str(drivers), "--output-iso", str(tmp_path / "x.iso")]
    usage_fails(capsys, ["--drivers-dir", str(drivers)], "--selftest-exe")
    usage_fails(capsys, [*base[2:], "--selftest-exe", str(tmp_path / "missing.exe")], "not a file")
    not_pe = tmp_path / "not-pe.exe"
    not_pe.write_bytes(b"\x7fELF")
    usage_fails(capsys, [*base[2:], "--selftest-exe", str(not_pe)], "MZ")
    usage_fails(capsys, [*base[:2], "--drivers-dir", str(tmp_path / "nodir")], "not a folder")
    empty = tmp_path / "no-inf"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    usage_fails(capsys, [*base[:2], "--drivers-dir", str(empty)], "no .inf")
    usage_fails(capsys, [*base, "--http-url", "ftp://host/x"], "--http-url")
    usage_fails(capsys, [*base, "--http-url", "http://[::1/x"], "--http-url")
    usage_fails(capsys, [*base, "--http-url", "http://10.0.2.2:port/x"], "--http-url")
    usage_fails(capsys, [*base, "--blk-root", 'D:\\"x"'], "--blk-root")
    usage_fails(capsys, [*base, "--udp-port", "70000"], "port")
    usage_fails(capsys, [*base, "--blk-root", "D:\\x\ny"], "control character")
    usage_fails(capsys, [*base, "--http-url", "http://h/" + "x" * 3000], "3000")
    usage_fails(capsys, [*base, "--blk-root", "D:\\caf\u00e9"], "ASCII")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep")
    usage_fails(capsys, [*base, "--output-dir", str(busy)], "not empty")
    assert (busy / "mine.txt").read_text() == "keep"
    # An ISO path that is a folder is refused before the folder output is written.
    usage_fails(capsys, [*base[:4], "--output-dir", str(tmp_path / "tree"), "--output-iso", str(busy)], "folder")
    assert not (tmp_path / "tree").exists()
    assert not (tmp_path / "x.iso").exists()


@pytest.mark.parametrize(
    ("name", "detail"),
    [("a:b.inf", "does not allow"), ("trailing.", "dot"), ("con.inf", "reserved"), ("x" * 61 + ".inf", "64")],
)
@pytest.mark.bad_input
def test_driver_names_windows_cannot_hold(tmp_path: Path, inputs: tuple[Path, Path],
                                          capsys: pytest.CaptureFixture[str], name: str, detail: str) -> None:
    exe, drivers = inputs
    (drivers / name).write_bytes(b"x")
    usage_fails(capsys, ["--selftest-exe", str(exe), "--drivers-dir", str(drivers),
                         "--output-iso", str(tmp_path / "x.iso")], detail)


@pytest.mark.bad_input
def test_names_differing_only_by_case_are_refused(tmp_path: Path, inputs: tuple[Path, Path],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    exe, drivers = inputs
    (drivers / "BLK").mkdir()
    (drivers / "BLK" / "x.inf").write_bytes(b"x")  # beside blk/
    usage_fails(capsys, ["--selftest-exe", str(exe), "--drivers-dir", str(drivers),
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
    assert provision(capsys, exe, drivers, "--output-iso", str(out), "--install-all-infs")[0] == 0
    iso = open_iso(out)
    mangled = {p for p in iso.iso9660_files() if p.startswith("AERO/DRIVERS/")}
    assert len(mangled) == len(names)
    assert all(len(PurePosixPath(p).name.removesuffix(";1")) <= 30 for p in mangled)
    for name in names:
        assert iso.read(f"AERO/drivers/{name}") == name.encode()
