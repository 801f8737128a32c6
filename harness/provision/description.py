"""The two text files at the media's root: the marker a guest finds the media by, and the description.

``AERO_WIN7_PROVISIONING.TXT`` says, for a person reading the CD, which INFs ``provision.cmd``
installs, the selftest it copies, the task command line and every baked option. Both files use CRLF
line ends (Notepad on Windows 7 shows nothing else as lines); the description is UTF-8, since a
driver folder may hold non-ASCII names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from harness.provision import layout
from harness.provision.flags import SWITCHES, SelftestOptions, implied
from harness.provision.infs import InfSelection
from harness.provision.request import Steps
from harness.provision.task import TaskDefinition

_WIDTH = 36


@dataclass(frozen=True)
class Contents:
    options: SelftestOptions  # as given (implied switches are shown as such)
    steps: Steps
    infs: InfSelection
    selftest_sha256: str
    task: TaskDefinition
    version: str


def _crlf(lines: list[str]) -> str:
    return "\r\n".join(lines) + "\r\n"


def marker(version: str) -> bytes:
    return _crlf([
        f"Aero Windows 7 virtio test provisioning media, made by aero-win7-harness {version}.",
        f"Inside the guest, run {layout.on_media(layout.SCRIPT)} as administrator; "
        f"{layout.on_media(layout.DESCRIPTION)} says what it does.",
    ]).encode("ascii")


def _on_drivers(rel: PurePosixPath) -> str:
    return layout.on_media(layout.DRIVERS / rel)


def _drivers(infs: InfSelection) -> list[str]:
    lines = [f"Driver INFs installed ({infs.source}), in this order:"]
    lines += [f"  {n}. {_on_drivers(rel)}" for n, rel in enumerate(infs.selected, start=1)]
    if infs.missing_defaults:
        lines.append("Not under the drivers folder, so skipped: " + ", ".join(infs.missing_defaults))
    if infs.not_selected:
        lines.append("On the media but not installed:")
        lines += [f"  {_on_drivers(rel)}" for rel in infs.not_selected]
    return lines


def _row(name: str, value: str) -> str:
    return f"  {name.ljust(_WIDTH)} {value}"


def _options(options: SelftestOptions) -> list[str]:
    effective, reasons = implied(options)
    lines = [
        "Options baked into the task:",
        _row("--http-url", effective.http_url),
        _row("--dns-host", effective.dns_host),
        _row("--udp-port", "not passed (the selftest's default)" if effective.udp_port is None
             else str(effective.udp_port)),
        _row("--blk-root", "not passed (the selftest picks a folder)" if effective.blk_root is None
             else effective.blk_root),
    ]
    for s in SWITCHES:
        value = "yes" if effective.on(s.field) else "no"
        lines.append(_row(s.flag, f"{value} ({reasons[s.key]})" if s.key in reasons else value))
    return lines


def _steps(steps: Steps) -> list[str]:
    def yes(on: bool) -> str:
        return "yes" if on else "no"

    compat = ("yes (CompatIdName=1 under " + layout.VIRTIO_INPUT_PARAMETERS + ")"
              if steps.enable_virtio_input_compat_id_name else "no (CompatIdName left as it is)")
    return [
        "Provisioning steps:",
        _row("--enable-test-signing", yes(steps.enable_test_signing)),
        _row("--enable-virtio-input-compat-id-name", compat),
        _row("--auto-reboot", yes(steps.auto_reboot)),
    ]


def description(contents: Contents) -> bytes:
    task = contents.task
    how = "schtasks /TR" if task.route == "tr" else f"schtasks /XML {layout.on_media(layout.TASK_XML)}"
    lines = [
        f"Aero Windows 7 virtio test provisioning media, made by aero-win7-harness {contents.version}.",
        f"Inside the guest, run {layout.on_media(layout.SCRIPT)} as administrator (it logs to {layout.GUEST_LOG}).",
        f"{layout.on_media(layout.MANIFEST)} records the same for programs.",
        "",
        *_drivers(contents.infs),
        "",
        f"Selftest: {layout.on_media(layout.SELFTEST)}, copied to {layout.GUEST_SELFTEST}",
        f"  SHA-256 {contents.selftest_sha256}",
        "",
        f"Boot-time task {layout.TASK_NAME} (at startup, as SYSTEM, made with {how}):",
        f"  {task.command_line}",
        "",
        *_options(contents.options),
        "",
        *_steps(contents.steps),
    ]
    return _crlf(lines).encode("utf-8")
