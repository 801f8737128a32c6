"""``provision.cmd``: the batch file that turns a fresh Windows 7 install into a test image.

It runs once, as administrator, inside the guest, from the provisioning media. In order it checks
that it is elevated, finds its media (its own drive, else the drive holding the marker file),
optionally turns test signing on, installs the chosen driver INFs with ``pnputil -i -a`` (in the
chosen order), optionally sets the virtio-input driver's CompatIdName value, copies the selftest to
``C:\\AeroTests``, creates the boot-time task that runs the selftest as SYSTEM with the baked flags,
and optionally reboots. Every step is logged to ``C:\\aero-win7-provision.log``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from harness.errors import UsageError
from harness.provision import layout
from harness.provision.quoting import Arg, CmdVar, Piece, batch_command, batch_text
from harness.provision.task import TaskDefinition

DRIVE = CmdVar("AERO_DRIVE")
_LOG = '>>"%AERO_LOG%"'
_TO_LOG = f" {_LOG} 2>&1"
_DRIVE_LETTERS = " ".join(chr(c) for c in range(ord("D"), ord("Z") + 1))


@dataclass(frozen=True)
class ScriptOptions:
    task: TaskDefinition
    driver_infs: tuple[PurePosixPath, ...]  # media paths in install order, e.g. AERO/drivers/blk/aero_virtio_blk.inf
    enable_test_signing: bool = False
    auto_reboot: bool = False
    virtio_input_compat_id_name: bool = False


def _on_media(path: PurePosixPath) -> tuple[Piece, ...]:
    return (DRIVE, "\\" + layout.on_media(path))


def _quoted(pieces: tuple[Piece, ...]) -> str:
    """A path in quotes for cmd's own commands (``if exist``); media paths hold no quote."""
    return batch_text(['"', *pieces, '"'])


def _say(*pieces: Piece) -> list[str]:
    """Echo a message to the console and append it, time-stamped, to the log."""
    text = batch_text(pieces)
    return [f"echo [aero-provision] {text}", f"{_LOG} echo [%date% %time%] {text}"]


def _run(args: Sequence[Arg], on_error: str) -> list[str]:
    return [batch_command(args) + _TO_LOG, f"if errorlevel 1 {on_error}"]


def _step(name: str) -> str:
    return f'set "AERO_STEP={name}"'


def _test_signing() -> list[str]:
    return [
        _step("turn test signing on"),
        *_say("turning test signing on (it takes effect at the next boot)"),
        *_run(["bcdedit", "/set", "testsigning", "on"], "goto :failed"),
    ]


def _drivers(infs: Sequence[PurePosixPath]) -> list[str]:
    lines: list[str] = []
    for number, inf in enumerate(infs, start=1):
        # The step's name is echoed unquoted when it fails: it must not hold the path (any character).
        lines += [
            *_say(f"installing driver {number} of {len(infs)}: ", *_on_media(inf)),
            _step(f"find driver {number} of {len(infs)} on the media"),
            f"if not exist {_quoted(_on_media(inf))} goto :failed",
            *_run(["pnputil", "-i", "-a", _on_media(inf)], "set /a AERO_WARNINGS+=1"),
        ]
    return lines


def _compat_id_name() -> list[str]:
    key = layout.VIRTIO_INPUT_PARAMETERS
    return [
        _step(f"set CompatIdName=1 under {key}"),
        *_say(f"setting CompatIdName=1 under {key} (virtio-input then accepts QEMU's device names)"),
        *_run(["reg", "add", key, "/v", "CompatIdName", "/t", "REG_DWORD", "/d", "1", "/f"], "goto :failed"),
    ]


def _selftest() -> list[str]:
    folder = str(layout.GUEST_TEST_DIR)
    return [
        _step(f"copy the selftest to {folder}"),
        *_say(f"copying the selftest to {layout.GUEST_SELFTEST}"),
        f"if not exist {batch_command([folder])} mkdir {batch_command([folder])}{_TO_LOG}",
        *_run(["copy", "/Y", _on_media(layout.SELFTEST), str(layout.GUEST_SELFTEST)], "goto :failed"),
    ]


def _task(task: TaskDefinition) -> list[str]:
    schtasks: list[Arg] = ["schtasks", "/Create", "/F", "/TN", layout.TASK_NAME]
    if task.route == "tr":
        schtasks += ["/SC", "ONSTART", "/RU", "SYSTEM", "/RL", "HIGHEST", "/TR", task.command_line]
    else:
        schtasks += ["/XML", _on_media(layout.TASK_XML)]
    return [
        _step(f"create the scheduled task {layout.TASK_NAME}"),
        *_say(f"creating the boot-time task {layout.TASK_NAME}: {task.command_line}"),
        *_run(schtasks, "goto :failed"),
    ]


def _find_media() -> list[str]:
    marker = layout.on_media(layout.MARKER)
    return [
        'set "AERO_DRIVE=%~d0"',
        f'if exist "%AERO_DRIVE%\\{marker}" goto :have_media',
        'set "AERO_DRIVE="',
        (f"for %%D in ({_DRIVE_LETTERS}) do if not defined AERO_DRIVE "
         f'if exist "%%D:\\{marker}" set "AERO_DRIVE=%%D:"'),
        "if not defined AERO_DRIVE goto :no_media",
        ":have_media",
    ]


def _finish(auto_reboot: bool) -> list[str]:
    lines = [
        'if not "%AERO_WARNINGS%"=="0" goto :warned',
        *_say("provisioning finished"),
        "goto :finish",
        ":warned",
        *_say("provisioning finished, but pnputil failed for ", CmdVar("AERO_WARNINGS"),
              f" driver package(s); see {layout.GUEST_LOG}"),
        ":finish",
    ]
    if auto_reboot:
        lines += [*_say("rebooting"), "shutdown /r /t 0" + _TO_LOG]
    else:
        lines += [*_say("reboot the guest to start the selftest")]
    return [*lines, "exit /b 0"]


def _endings() -> list[str]:
    console = "echo [aero-provision] "
    return [
        ":failed",
        *_say("FAILED: could not ", CmdVar("AERO_STEP"), f"; see {layout.GUEST_LOG}"),
        "exit /b 1",
        ":not_admin",
        console + batch_text(["provision.cmd must run as administrator (right-click it, Run as administrator)"]),
        "exit /b 1",
        ":no_media",
        console + batch_text([f"cannot find the provisioning media: no drive holds {layout.on_media(layout.MARKER)}"]),
        "exit /b 1",
    ]


def render(options: ScriptOptions, version: str) -> str:
    """The whole script, CRLF line ends, ASCII only (cmd.exe reads batch files in the OEM code page)."""
    lines = [
        "@echo off",
        "setlocal EnableExtensions DisableDelayedExpansion",
        f"rem Aero Windows 7 virtio test image provisioning, made by aero-win7-harness {version}.",
        "rem Run it once, as administrator, inside the freshly installed guest.",
        "fltmc >nul 2>&1",
        "if errorlevel 1 goto :not_admin",
        f'set "AERO_LOG={layout.GUEST_LOG}"',
        'set "AERO_WARNINGS=0"',
        *_find_media(),
        *_say("provisioning from ", DRIVE),
        *(_test_signing() if options.enable_test_signing else []),
        *_drivers(options.driver_infs),
        *(_compat_id_name() if options.virtio_input_compat_id_name else []),
        *_selftest(),
        *_task(options.task),
        *_finish(options.auto_reboot),
        *_endings(),
    ]
    for line in lines:
        if not line.isascii():
            raise UsageError(f"provision.cmd can hold ASCII text only; this line is not: {line}")
    return "\r\n".join(lines) + "\r\n"
