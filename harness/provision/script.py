"""``provision.cmd``: the batch file that turns a fresh Windows 7 install into a test image.

It runs once, as administrator, inside the guest, from the provisioning media. In order it checks
that it is elevated, finds its media (its own drive, else the drive holding the marker file),
optionally turns test signing on, installs every driver INF with ``pnputil -i -a``, copies the
selftest to ``C:\\AeroTests``, creates the boot-time task that runs the selftest as SYSTEM with
the baked flags, and optionally reboots. Every step is logged to ``C:\\aero-win7-provision.log``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from harness.errors import UsageError
from harness.provision import layout
from harness.provision.quoting import Arg, CmdVar, Piece, batch_command, batch_text, join_args

# schtasks refuses a /TR value longer than this.
MAX_TASK_COMMAND = 261

DRIVE = CmdVar("AERO_DRIVE")
_LOG = '>>"%AERO_LOG%"'
_TO_LOG = f" {_LOG} 2>&1"
_DRIVE_LETTERS = " ".join(chr(c) for c in range(ord("D"), ord("Z") + 1))


@dataclass(frozen=True)
class SelftestFlags:
    """The flags baked into the boot-time task, passed to ``aero-virtio-selftest.exe`` as is."""

    http_url: str = layout.DEFAULT_HTTP_URL
    udp_port: int | None = None
    blk_root: str | None = None
    require_snd: bool = False

    def argv(self) -> list[str]:
        args = ["--http-url", self.http_url]
        if self.udp_port is not None:
            args += ["--udp-port", str(self.udp_port)]
        if self.blk_root is not None:
            args += ["--blk-root", self.blk_root]
        if self.require_snd:
            args.append("--require-snd")
        return args


@dataclass(frozen=True)
class ScriptOptions:
    flags: SelftestFlags
    driver_infs: tuple[PurePosixPath, ...]  # media paths, e.g. AERO/drivers/viostor/w7/amd64/viostor.inf
    enable_test_signing: bool = False
    auto_reboot: bool = False


def task_command(flags: SelftestFlags) -> str:
    """The command line the scheduled task runs (the value of ``schtasks /TR``)."""
    command = join_args([str(layout.GUEST_SELFTEST), *flags.argv()])
    if len(command) > MAX_TASK_COMMAND:
        raise UsageError(
            f"the selftest command line is {len(command)} characters; schtasks takes at most "
            f"{MAX_TASK_COMMAND} (shorten --blk-root or --http-url): {command}"
        )
    return command


def _on_media(path: PurePosixPath) -> tuple[Piece, ...]:
    return (DRIVE, "\\" + layout.on_media(path))


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
        lines += _say(f"installing driver {number} of {len(infs)}: ", *_on_media(inf))
        lines += _run(["pnputil", "-i", "-a", _on_media(inf)], "set /a AERO_WARNINGS+=1")
    return lines


def _selftest() -> list[str]:
    folder = str(layout.GUEST_TEST_DIR)
    return [
        _step(f"copy the selftest to {folder}"),
        *_say(f"copying the selftest to {layout.GUEST_SELFTEST}"),
        f"if not exist {batch_command([folder])} mkdir {batch_command([folder])}{_TO_LOG}",
        *_run(["copy", "/Y", _on_media(layout.SELFTEST), str(layout.GUEST_SELFTEST)], "goto :failed"),
    ]


def _task(flags: SelftestFlags) -> list[str]:
    command = task_command(flags)
    schtasks = ["schtasks", "/Create", "/F", "/TN", layout.TASK_NAME, "/SC", "ONSTART", "/RU", "SYSTEM",
                "/RL", "HIGHEST", "/TR", command]
    return [
        _step(f"create the scheduled task {layout.TASK_NAME}"),
        *_say(f"creating the boot-time task {layout.TASK_NAME}: {command}"),
        *_run(schtasks, "goto :failed"),
    ]


def _find_media() -> list[str]:
    marker = layout.on_media(layout.MARKER)
    return [
        'set "AERO_DRIVE=%~d0"',
        f'if exist "%AERO_DRIVE%\\{marker}" goto :have_media',
        'set "AERO_DRIVE="',
        f"for %%D in ({_DRIVE_LETTERS}) do if not defined AERO_DRIVE "
        f'if exist "%%D:\\{marker}" set "AERO_DRIVE=%%D:"',
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
        *_selftest(),
        *_task(options.flags),
        *_finish(options.auto_reboot),
        *_endings(),
    ]
    for line in lines:
        if not line.isascii():
            raise UsageError(f"provision.cmd can hold ASCII text only; this line is not: {line}")
    return "\r\n".join(lines) + "\r\n"
