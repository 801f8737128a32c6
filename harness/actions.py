"""Host actions: what the harness does over QMP when the guest says ``TEST|<name>|READY``.

A device module declares a ``Reaction`` for each host-coordinated test it owns: the READY marker
that starts it, the QMP routine, and whether it repeats (the guest counts what arrives, so input
events are sent again every half second until the guest's final marker, as the real guest
tolerates). The runner starts a reaction the moment its READY record is parsed (no polling), as a
task of its own, so the serial reader never waits for it. Every QMP command sent, its reply and
its time relative to the READY line are recorded for results.json; QEMU refusing a command ends
the run with ``QMP_<ACTION>_FAILED`` (exit 6) naming the command and QEMU's error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from qemu.qmp import ExecuteError, QMPError

from harness.errors import QmpActionFailed
from harness.logsetup import get_logger
from harness.verdict import TestOutcome

INPUT_REPEAT_S = 0.5
INPUT_ATTEMPTS, EXTENDED_ATTEMPTS = 20, 30
EVENT_GAP_S = 0.05  # between the events of one injection, as a person's keyboard and mouse would space them
TABLET_TARGET = (10000, 20000)  # on QEMU's absolute scale 0..32767, where the real guest looks for it
# The real guest wants each mouse report's wheel to be +1 and its AC Pan -2 (main.cpp's
# kExpectedMouseWheelDelta / kExpectedMouseHWheelDelta); any other non-zero value fails it. The Aero
# driver sums a frame's REL_WHEEL and REL_HWHEEL deltas into one report at EV_SYN, and QEMU syncs
# once per input-send-event, so one command carries one notch up and two to the left.
WHEEL_UP_NOTCHES, WHEEL_LEFT_NOTCHES = 1, 2
QMP_TIMEOUT_S = 10.0
log = get_logger("actions")

Execute = Callable[[str, dict[str, Any]], Awaitable[Any]]


@dataclass
class ActionLog:
    """What one reaction did, for results.json and the log."""

    reaction: str
    marker: str
    ready_at_s: float | None = None  # since QEMU started
    first_command_ms: float | None = None  # READY record received -> first QMP command sent
    attempts: int = 0
    commands: list[dict[str, Any]] = field(default_factory=list)  # the first Qmp.MAX_LOGGED sent
    commands_dropped: int = 0  # sent after those, counted but not listed
    outcome: str = "pending"

    def to_json(self) -> dict[str, Any]:
        return {"reaction": self.reaction, "marker": self.marker, "ready_at_s": self.ready_at_s,
                "first_command_ms": self.first_command_ms, "attempts": self.attempts, "outcome": self.outcome,
                "commands": self.commands, "commands_dropped": self.commands_dropped}


class Qmp:
    """The QMP session as the actions see it: each command logged with its reply and its time."""

    MAX_LOGGED = 200  # commands kept per reaction (repeats beyond this are counted, not listed)

    def __init__(self, execute: Execute, record: ActionLog, ready: float) -> None:
        self._execute = execute
        self.record = record
        self.ready = ready

    async def __call__(self, command: str, arguments: dict[str, Any]) -> Any:
        sent = time.monotonic()
        if self.record.first_command_ms is None:
            self.record.first_command_ms = round((sent - self.ready) * 1000, 3)
        entry: dict[str, Any] = {"at_s": round(sent - self.ready, 3), "command": command, "arguments": arguments}
        try:
            reply = await asyncio.wait_for(self._execute(command, arguments), QMP_TIMEOUT_S)
        except ExecuteError as err:
            entry["error"] = f"{err.error_class}: {err}"  # QEMU's class and description
            self._keep(entry)
            raise QmpActionFailed(self.record.reaction, f"QEMU refused {command} {arguments}: "
                                                        f"{entry['error']}") from err
        except (TimeoutError, QMPError, OSError, EOFError) as err:
            entry["error"] = f"{type(err).__name__}: {err}"
            self._keep(entry)
            raise QmpActionFailed(self.record.reaction, f"{command} {arguments} got no answer from QEMU: "
                                                        f"{entry['error']}") from err
        entry["reply"] = reply
        self._keep(entry)
        log.info("QMP %s %s -> %s", command, arguments, reply,
                 extra={"reaction": self.record.reaction, "command": command, "arguments": arguments})
        return reply

    def _keep(self, entry: dict[str, Any]) -> None:
        if len(self.record.commands) < self.MAX_LOGGED:
            self.record.commands.append(entry)
        else:
            self.record.commands_dropped += 1


Perform = Callable[[Qmp, TestOutcome], Awaitable[None]]


@dataclass(frozen=True)
class Reaction:
    marker: str  # the test whose READY starts it, and whose final status ends its repeats
    action: str  # names the QMP token: QMP_<ACTION>_FAILED
    perform: Perform
    repeat_s: float | None = None  # repeat every ... until the marker's final status (None: once)
    max_attempts: int = 1


async def run_reaction(reaction: Reaction, qmp: Qmp, ready: TestOutcome, finished: Callable[[], bool]) -> None:
    """Perform the reaction, repeating as it asks, until the guest's final marker or its attempts run out."""
    record = qmp.record
    while record.attempts < reaction.max_attempts and not finished():
        record.attempts += 1
        started = time.monotonic()
        await reaction.perform(qmp, ready)
        if reaction.repeat_s is None:
            break
        await asyncio.sleep(max(0.0, started + reaction.repeat_s - time.monotonic()))
    record.outcome = "done" if not finished() or reaction.repeat_s is None else "done (guest finished)"


# -- the actions --------------------------------------------------------------------------------------

def _key(qcode: str, down: bool) -> dict[str, Any]:
    return {"type": "key", "data": {"down": down, "key": {"type": "qcode", "data": qcode}}}


def _btn(button: str, down: bool) -> dict[str, Any]:
    return {"type": "btn", "data": {"down": down, "button": button}}


def _rel(axis: str, value: int) -> dict[str, Any]:
    return {"type": "rel", "data": {"axis": axis, "value": value}}


def _abs(axis: str, value: int) -> dict[str, Any]:
    return {"type": "abs", "data": {"axis": axis, "value": value}}


async def _send(qmp: Qmp, display: str, *events: dict[str, Any]) -> None:
    await qmp("input-send-event", {"device": display, "events": list(events)})


async def _press(qmp: Qmp, display: str, event: Callable[[bool], dict[str, Any]]) -> None:
    await _send(qmp, display, event(True))
    await asyncio.sleep(EVENT_GAP_S)
    await _send(qmp, display, event(False))
    await asyncio.sleep(EVENT_GAP_S)


def wheel_events() -> list[dict[str, Any]]:
    """One frame of scrolling: each notch a wheel button pressed and released (QEMU's virtio mouse
    turns a press of wheel-up into REL_WHEEL +1, and of wheel-left into REL_HWHEEL -1 where it
    has a horizontal wheel at all)."""
    return [_btn(button, down) for button, notches in (("wheel-up", WHEEL_UP_NOTCHES),
                                                       ("wheel-left", WHEEL_LEFT_NOTCHES))
            for _ in range(notches) for down in (True, False)]


def input_events_reaction(display: str, *, wheel: bool, extended: bool) -> Reaction:
    """Key 'a', a relative mouse move and a left click (what the real guest's virtio-input-events
    counts); with ``wheel`` one frame of scrolling before the click (``wheel_events``), so the
    guest has seen it when its base test completes; with ``extended`` shift+b, ctrl, alt, F1 and the
    side and extra buttons too."""

    async def perform(qmp: Qmp, _ready: TestOutcome) -> None:
        await _press(qmp, display, lambda down: _key("a", down))
        await _send(qmp, display, _rel("x", 10), _rel("y", 5))
        await asyncio.sleep(EVENT_GAP_S)
        if wheel:
            await _send(qmp, display, *wheel_events())
            await asyncio.sleep(EVENT_GAP_S)
        await _press(qmp, display, lambda down: _btn("left", down))
        if extended:
            await _send(qmp, display, _key("shift", True))
            await _press(qmp, display, lambda down: _key("b", down))
            await _send(qmp, display, _key("shift", False))
            for qcode in ("ctrl", "alt", "f1"):
                await _press(qmp, display, lambda down, q=qcode: _key(q, down))  # type: ignore[misc]
            for button in ("side", "extra"):
                await _press(qmp, display, lambda down, b=button: _btn(b, down))  # type: ignore[misc]

    return Reaction("virtio-input-events", "input-inject", perform, INPUT_REPEAT_S,
                    EXTENDED_ATTEMPTS if extended else INPUT_ATTEMPTS)


def media_keys_reaction(display: str) -> Reaction:
    async def perform(qmp: Qmp, _ready: TestOutcome) -> None:
        await _press(qmp, display, lambda down: _key("volumeup", down))

    return Reaction("virtio-input-media-keys", "media-keys", perform, INPUT_REPEAT_S, INPUT_ATTEMPTS)


def tablet_reaction(display: str) -> Reaction:
    async def perform(qmp: Qmp, _ready: TestOutcome) -> None:
        await _send(qmp, display, _abs("x", 0), _abs("y", 0))
        await asyncio.sleep(EVENT_GAP_S)
        await _send(qmp, display, _abs("x", TABLET_TARGET[0]), _abs("y", TABLET_TARGET[1]))
        await asyncio.sleep(EVENT_GAP_S)
        await _press(qmp, display, lambda down: _btn("left", down))

    return Reaction("virtio-input-tablet-events", "input-tablet-inject", perform, INPUT_REPEAT_S, INPUT_ATTEMPTS)


def link_flap_reaction(nic: str, down_s: float) -> Reaction:
    async def perform(qmp: Qmp, _ready: TestOutcome) -> None:
        await qmp("set_link", {"name": nic, "up": False})
        await asyncio.sleep(down_s)
        await qmp("set_link", {"name": nic, "up": True})

    return Reaction("virtio-net-link-flap", "net-link-flap", perform)


def resized_bytes(old_bytes: int, delta_mib: int) -> int:
    size = old_bytes + delta_mib * 1024 * 1024
    return -(-size // 512) * 512


def blk_resize_reaction(drive: str, delta_mib: int) -> Reaction:
    async def perform(qmp: Qmp, ready: TestOutcome) -> None:
        try:
            old = int(ready.fields.get("old_bytes", ""))
        except ValueError:
            raise QmpActionFailed("blk-resize", "the guest's virtio-blk-resize|READY carries no old_bytes=N, so the "
                                                "new size is unknown") from None
        await qmp("block_resize", {"device": drive, "size": resized_bytes(old, delta_mib)})

    return Reaction("virtio-blk-resize", "blk-resize", perform)
