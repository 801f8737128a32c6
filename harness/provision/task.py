"""The boot-time task that runs the selftest: its command line, and how ``provision.cmd`` creates it.

The task runs ``C:\\AeroTests\\aero-virtio-selftest.exe`` with the baked flags, as SYSTEM, at
startup, with the highest run level. ``schtasks /Create /TR`` takes a command line of at most 261
characters; with many flags the line is longer, and then the task is created from a task XML file
on the media (``schtasks /Create /XML``) that holds the same command, account, trigger and run level.
Either way the selftest's argv is the same: its arguments are quoted by :func:`join_args`.
"""

from __future__ import annotations

import codecs
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Literal

from harness.errors import UsageError
from harness.provision import layout
from harness.provision.flags import SelftestOptions, guest_flags
from harness.provision.quoting import join_args, quote_arg

# schtasks refuses a /TR value longer than this.
MAX_TR_COMMAND = 261
# provision.cmd echoes the command into its log; cmd.exe lines hold at most 8191 characters, and the
# batch escaping can double the text. This bound keeps that line (and the task XML) well inside it.
MAX_COMMAND = 3000

_TASK_NS = "http://schemas.microsoft.com/windows/2004/02/mit/task"
_SYSTEM_SID = "S-1-5-18"

Route = Literal["tr", "xml"]


@dataclass(frozen=True)
class TaskDefinition:
    argv: tuple[str, ...]  # the selftest's argv: its path, then the flags
    command_line: str  # what the task runs: join_args(argv)
    route: Route  # "tr": schtasks /TR command_line; "xml": schtasks /XML layout.TASK_XML (holding ``xml``)
    xml: bytes | None = None

    @property
    def arguments(self) -> str:
        """The command line after the program (the task XML's <Arguments>)."""
        return join_args(self.argv[1:])


def define_task(options: SelftestOptions, version: str) -> TaskDefinition:
    argv = (str(layout.GUEST_SELFTEST), *guest_flags(options))
    command = join_args(argv)
    if len(command) > MAX_COMMAND:
        raise UsageError(f"the selftest command line is {len(command)} characters; provisioning takes at most "
                         f"{MAX_COMMAND} (shorten --http-url or --blk-root)")
    if len(command) <= MAX_TR_COMMAND:
        return TaskDefinition(argv, command, "tr")
    return TaskDefinition(argv, command, "xml", task_xml(argv, version))


def _add(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{_TASK_NS}}}{tag}", attrib)
    element.text = text
    return element


def task_xml(argv: tuple[str, ...], version: str) -> bytes:
    """A Task Scheduler 1.2 (Windows 7) definition of the task, UTF-16 with a BOM, as Windows writes them."""
    ET.register_namespace("", _TASK_NS)
    task = ET.Element(f"{{{_TASK_NS}}}Task", {"version": "1.2"})
    info = _add(task, "RegistrationInfo")
    _add(info, "Description", f"Runs the Aero virtio selftest at startup (made by aero-win7-harness {version}).")
    _add(_add(_add(task, "Triggers"), "BootTrigger"), "Enabled", "true")
    principal = _add(_add(task, "Principals"), "Principal", id="Author")
    _add(principal, "UserId", _SYSTEM_SID)
    _add(principal, "RunLevel", "HighestAvailable")
    settings = _add(task, "Settings")
    for tag, value in (("MultipleInstancesPolicy", "IgnoreNew"), ("DisallowStartIfOnBatteries", "false"),
                       ("StopIfGoingOnBatteries", "false"), ("AllowHardTerminate", "true"),
                       ("StartWhenAvailable", "false"), ("RunOnlyIfNetworkAvailable", "false")):
        _add(settings, tag, value)
    idle = _add(settings, "IdleSettings")
    _add(idle, "StopOnIdleEnd", "false")
    _add(idle, "RestartOnIdle", "false")
    for tag, value in (("AllowStartOnDemand", "true"), ("Enabled", "true"), ("Hidden", "false"),
                       ("RunOnlyIfIdle", "false"), ("WakeToRun", "false"), ("ExecutionTimeLimit", "PT72H"),
                       ("Priority", "7")):
        _add(settings, tag, value)
    execute = _add(_add(task, "Actions", Context="Author"), "Exec")
    _add(execute, "Command", quote_arg(argv[0]))
    _add(execute, "Arguments", join_args(argv[1:]))
    ET.indent(task, space="  ")
    body = ET.tostring(task, encoding="unicode")
    text = '<?xml version="1.0" encoding="UTF-16"?>\n' + body + "\n"
    return codecs.BOM_UTF16_LE + text.replace("\n", "\r\n").encode("utf-16-le")
