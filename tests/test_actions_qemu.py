"""Host actions against a real QEMU, with boot-sector guests that say READY and then wait.

The effects inside a guest are proven with the reference guest (test_reference_guest_e2e.py); these
tests pin what the harness sends, when, and what a refusal by QEMU becomes.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from qemu.qmp import QMPClient

from harness.actions import ActionLog, Qmp, wheel_events
from tests.conftest import HarnessRun

pytestmark = [pytest.mark.qemu, pytest.mark.usefixtures("qemu", "no_stray_qemu")]
Run = Callable[..., HarnessRun]
P = "AERO_VIRTIO_SELFTEST|"
TCG = ("--accel", "tcg", "--timeout-seconds", "20")


def guest_saying(*records: str) -> bytes:
    return "".join(f"{P}{r}\r\n" for r in ("START|version=1", *records)).encode()


def actions(run: HarnessRun) -> dict[str, dict[str, Any]]:
    return {a["reaction"]: a for a in run.results()["actions"]}  # type: ignore[union-attr]


@pytest.mark.fault
def test_a_resize_qemu_refuses_ends_the_run_with_its_token_naming_the_command_and_qemus_error(
        make_guest, run_harness: Run) -> None:
    """The drive is made read-only through the extra arguments: QEMU refuses block_resize."""
    image = make_guest(guest_saying("TEST|virtio-blk-resize|READY|disk=0|old_bytes=1048576"))
    run = run_harness("--disk-image", image, *TCG, "--with-blk-resize", "--", "-set", "drive.disk0.readonly=on")
    assert run.returncode == 6, run.stdout + run.stderr
    assert run.last_line == ("FAIL: QMP_BLK_RESIZE_FAILED: QEMU refused block_resize {'device': 'disk0', "
                             "'size': 68157440}: GenericError: Image is read-only")
    assert [line for line in run.stdout.splitlines() + run.stderr.splitlines() if "FAIL" in line] == [run.last_line]
    action = actions(run)["blk-resize"]
    assert action["outcome"].startswith("failed: QEMU refused block_resize")
    assert action["commands"] == [{"at_s": action["commands"][0]["at_s"], "command": "block_resize",
                                   "arguments": {"device": "disk0", "size": 68157440},
                                   "error": "GenericError: Image is read-only"}]
    assert run.results()["token"] == "QMP_BLK_RESIZE_FAILED"


@pytest.mark.fault
def test_a_ready_line_without_the_size_cannot_be_acted_on(make_guest, run_harness: Run) -> None:
    image = make_guest(guest_saying("TEST|virtio-blk-resize|READY|disk=0"))
    run = run_harness("--disk-image", image, *TCG, "--with-blk-resize")
    assert run.returncode == 6
    assert run.last_line.startswith("FAIL: QMP_BLK_RESIZE_FAILED: the guest's virtio-blk-resize|READY carries no "
                                    "old_bytes=N")


def test_each_action_starts_within_milliseconds_of_its_ready_line_and_qemu_accepts_it(
        make_guest, run_harness: Run) -> None:
    """Every READY at once, then nothing (the guest never answers): each action runs, concurrently,
    until the run's timeout; QEMU accepts every command."""
    image = make_guest(guest_saying("TEST|virtio-blk-resize|READY|disk=0|old_bytes=1000000",
                                    "TEST|virtio-input-events|READY", "TEST|virtio-input-media-keys|READY",
                                    "TEST|virtio-input-tablet-events|READY", "TEST|virtio-net-link-flap|READY"))
    run = run_harness("--disk-image", image, "--accel", "tcg", "--timeout-seconds", "6", "--with-blk-resize",
                      "--with-input-events-extended", "--with-input-media-keys", "--with-input-tablet-events",
                      "--with-net-link-flap", "--net-link-flap-down-seconds", "1")
    assert run.returncode == 5, run.stdout  # the guest never reports: TIMEOUT, not a host failure
    found = actions(run)
    assert set(found) == {"blk-resize", "input-inject", "media-keys", "input-tablet-inject", "net-link-flap"}
    for action in found.values():
        assert action["first_command_ms"] < 50, action  # goal 5 ms (BENCHMARKS.md); room for a loaded host
        assert action["commands"] and all("error" not in c for c in action["commands"]), action
    # the new size: old + 64 MiB, rounded up to a whole sector
    assert found["blk-resize"]["commands"][0]["arguments"] == {"device": "disk0", "size": 68109312}
    flap = found["net-link-flap"]["commands"]
    assert [(c["command"], c["arguments"]) for c in flap] == [("set_link", {"name": "nic0", "up": False}),
                                                              ("set_link", {"name": "nic0", "up": True})]
    assert 0.9 < flap[1]["at_s"] - flap[0]["at_s"] < 2.0  # held down for --net-link-flap-down-seconds
    inject = found["input-inject"]
    assert inject["attempts"] >= 3  # repeated every 0.5 s while the guest has not answered
    sent = [e for c in inject["commands"] for e in c["arguments"]["events"]]
    assert {"type": "key", "data": {"down": True, "key": {"type": "qcode", "data": "a"}}} in sent
    # Extended includes the wheel: per injection one command, one notch up and two to the left (one
    # frame: the guest's driver reports wheel +1 and AC Pan -2), before the click.
    wheel = [c["arguments"]["events"] for c in inject["commands"]
             if any("wheel" in e["data"].get("button", "") for e in c["arguments"]["events"])]
    assert len(wheel) == inject["attempts"] or len(wheel) == inject["attempts"] - 1  # the last may be cut short
    assert all(events == wheel_events() for events in wheel)
    assert [(e["data"]["button"], e["data"]["down"]) for e in wheel[0]] == [
        ("wheel-up", True), ("wheel-up", False), ("wheel-left", True), ("wheel-left", False), ("wheel-left", True),
        ("wheel-left", False)]
    first = [c["arguments"]["events"][0]["data"].get("button") for c in inject["commands"][:6]]
    assert first.index("wheel-up") < first.index("left")
    assert {c["arguments"]["device"] for c in inject["commands"]} == {"vga0"}
    # The tablet events brought their tablet, on its own display, without --with-virtio-tablet.
    assert {c["arguments"]["device"] for c in found["input-tablet-inject"]["commands"]} == {"vga1"}
    assert all(action["commands_dropped"] == 0 for action in found.values())
    # QEMU's virtio mouse has no horizontal wheel: said once, at the start.
    assert run.stderr.count("QEMU's virtio-mouse-pci has no horizontal wheel") == 1, run.stderr[-3000:]
    assert "virtio_input_handle_event: unmapped button: 7 [wheel-left]" in \
        (run.out_dir / "qemu.stderr.log").read_text()  # what QEMU does with them


async def _query_status(qemu: str, folder: Path, times: int) -> ActionLog:
    """``times`` commands through the actions' Qmp to a real QEMU (paused, no guest)."""
    socket_path = folder / "qmp.sock"
    client = QMPClient("test-actions")
    await client.start_server(str(socket_path))
    proc = subprocess.Popen([qemu, "-machine", "none", "-nodefaults", "-display", "none", "-S",
                             "-chardev", f"socket,id=qmp,path={socket_path}", "-mon", "chardev=qmp,mode=control"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await asyncio.wait_for(client.accept(), 30)
        record = ActionLog("query", "virtio-test")
        qmp = Qmp(client.execute, record, time.monotonic())
        for _ in range(times):
            reply = await qmp("query-status", {})
            assert reply["running"] is False  # QEMU answered each one
        return record
    finally:
        await client.disconnect()
        proc.kill()
        proc.wait()


def test_commands_beyond_the_logged_ones_are_counted(qemu: str, tmp_path: Path) -> None:
    record = asyncio.run(_query_status(qemu, tmp_path, Qmp.MAX_LOGGED + 7))
    assert len(record.commands) == Qmp.MAX_LOGGED
    assert record.commands_dropped == 7
    doc = record.to_json()
    assert doc["commands_dropped"] == 7 and len(doc["commands"]) == Qmp.MAX_LOGGED
