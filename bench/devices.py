#!/usr/bin/env python3
"""Benchmarks of the device layout, the network isolation and the host actions (BENCHMARKS.md).

  preflight        run start -> guest running (results.json timing.start_to_guest_ms), with the
                   PCI preflight and with --no-qemu-preflight-pci (boot-sector guest, TCG)
  isolation        run start -> QEMU started (timing.start_to_qemu_ms), --network-isolation on vs off
  actions          READY record received -> first QMP command sent (actions[].first_command_ms), a
                   boot-sector guest that says READY for every host-coordinated test at once
  selfcheck        wall time of `selfcheck` in each layout, and with every host action, where each
                   action's wall time in the guest (READY -> PASS, from the timeline) is reported
  concurrent       N isolated selfchecks at once on the default ports vs one alone

Usage: .venv/bin/python bench/devices.py [--runs N] [--skip-guest] [--concurrent N]
(the selfcheck figures need build/reference-guest.qcow2: make reference-guest)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.run import describe, records  # noqa: E402
from harness.qemu.bootsector import Ending, build_image  # noqa: E402

GUEST = REPO / "build" / "reference-guest.qcow2"
PORT = 38180
READY = b"".join(f"AERO_VIRTIO_SELFTEST|{r}\r\n".encode() for r in (
    "START|version=1", "TEST|virtio-blk-resize|READY|disk=0|old_bytes=1000000", "TEST|virtio-input-events|READY",
    "TEST|virtio-input-media-keys|READY", "TEST|virtio-input-tablet-events|READY", "TEST|virtio-net-link-flap|READY"))
# Every host action QEMU can serve: not the wheel (QEMU's virtio mouse has no horizontal wheel, so
# --with-input-wheel and --with-input-events-extended cannot pass on it); the tablet events attach the tablet.
ACTION_FLAGS = ("--with-blk-resize", "--with-input-events", "--with-input-media-keys", "--with-input-tablet-events",
                "--with-net-link-flap")
GUEST_ACTION_MARKERS = ("virtio-blk-resize", "virtio-input-events", "virtio-input-media-keys",
                        "virtio-input-tablet-events", "virtio-net-link-flap")


def harness(*args: str | Path, out: Path, expect: int = 0, timeout: float = 600) -> dict[str, Any]:
    argv = [sys.executable, "-m", "harness", *map(str, args), "--out-dir", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert proc.returncode == expect, proc.stdout[-2000:] + proc.stderr[-3000:]
    return dict(json.loads((out / "results.json").read_text()))


def boot_sector(tmp: Path, runs: int) -> None:
    image = tmp / "pass.img"
    image.write_bytes(build_image(records(PORT), Ending.HALT))
    ports = ("--http-port", str(PORT), "--udp-port", str(PORT + 1))
    with_pf, without_pf, iso_on, iso_off, preflight = [], [], [], [], []
    for i in range(runs):
        base = ("--disk-image", image, "--accel", "tcg", "--snapshot", *ports)
        timing = harness(*base, out=tmp / f"pf{i}")["timing"]
        with_pf.append(timing["start_to_guest_ms"])
        preflight.append(timing["preflight_ms"])
        without_pf.append(harness(*base, "--no-qemu-preflight-pci", out=tmp / f"npf{i}")["timing"]["start_to_guest_ms"])
        iso_on.append(harness(*base, "--network-isolation", "on", out=tmp / f"on{i}")["timing"]["start_to_qemu_ms"])
        iso_off.append(harness(*base, "--network-isolation", "off", out=tmp / f"off{i}")["timing"]["start_to_qemu_ms"])
    print(f"run start -> guest running, PCI preflight:     {describe(with_pf, 'ms', 1)}")
    print(f"run start -> guest running, no preflight:      {describe(without_pf, 'ms', 1)}")
    print(f"the preflight itself (query-pci and the check): {describe(preflight, 'ms', 2)}")
    print(f"run start -> QEMU started, isolation on:       {describe(iso_on, 'ms', 1)}")
    print(f"run start -> QEMU started, isolation off:      {describe(iso_off, 'ms', 1)}")

    ready = tmp / "ready.img"
    ready.write_bytes(build_image(READY, Ending.HALT))
    first: dict[str, list[float]] = {}
    for i in range(runs):
        doc = harness("--disk-image", ready, "--accel", "tcg", "--snapshot", *ports, "--timeout-seconds", "3",
                      "--net-link-flap-down-seconds", "0.5", *ACTION_FLAGS, out=tmp / f"act{i}", expect=5)
        for action in doc["actions"]:
            first.setdefault(action["reaction"], []).append(float(action["first_command_ms"]))
    for reaction, values in sorted(first.items()):
        print(f"READY -> first QMP command, {reaction:20s} {describe(values, 'ms')}")
    every = [v for values in first.values() for v in values]
    print(f"READY -> first QMP command, all actions:        {describe(every, 'ms')}")


def selfcheck(tmp: Path, name: str, *flags: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    doc = harness("selfcheck", "--disk-image", GUEST, "--accel", "tcg", *flags, out=tmp / name)
    return time.perf_counter() - started, doc


def action_times(doc: dict[str, Any]) -> dict[str, float]:
    """READY -> the final marker of each host-coordinated test, in the guest's own timeline."""
    ready: dict[str, float] = {}
    done: dict[str, float] = {}
    for record in doc["timeline"]["records"]:
        name, status = record.get("name"), record.get("status")
        if name in GUEST_ACTION_MARKERS:
            if status == "READY":
                ready[name] = record["at_s"]
            elif status in ("PASS", "FAIL"):
                done[name] = record["at_s"]
    return {name: done[name] - ready[name] for name in ready if name in done}


def guest(tmp: Path, runs: int, concurrent: int) -> None:
    if not GUEST.exists():
        print(f"(no {GUEST}: make reference-guest for the selfcheck figures)")
        return
    contract = [selfcheck(tmp, f"c{i}")[0] for i in range(runs)]
    transitional = [selfcheck(tmp, f"t{i}", "--virtio-transitional")[0] for i in range(runs)]
    print(f"selfcheck, contract layout:                    {describe(contract, 's', 1)}")
    print(f"selfcheck, transitional layout:                {describe(transitional, 's', 1)}")
    walls, per_action = [], {}
    for i in range(runs):
        wall, doc = selfcheck(tmp, f"a{i}", *ACTION_FLAGS)
        walls.append(wall)
        for name, seconds in action_times(doc).items():
            per_action.setdefault(name, []).append(seconds)
    print(f"selfcheck with every host action:              {describe(walls, 's', 1)}")
    for name, values in sorted(per_action.items()):
        print(f"  in the guest, READY -> PASS, {name:27s} {describe(values, 's', 2)}")

    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "harness", "selfcheck", "--disk-image", str(GUEST), "--accel",
                               "tcg", "--out-dir", str(tmp / f"p{i}")], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, stdin=subprocess.DEVNULL)
             for i in range(concurrent)]
    results = [p.communicate(timeout=900)[0].splitlines()[-1] for p in procs]
    wall = time.perf_counter() - started
    passes = sum(line == "PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS" for line in results)
    print(f"{concurrent} isolated selfchecks at once, default ports: {passes} of {concurrent} PASS, wall "
          f"{wall:.1f} s (one alone: median {sorted(contract)[len(contract) // 2]:.1f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--guest-runs", type=int, default=3)
    parser.add_argument("--concurrent", type=int, default=4)
    parser.add_argument("--skip-guest", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aero-bench-devices-") as tmp:
        boot_sector(Path(tmp), args.runs)
        if not args.skip_guest:
            guest(Path(tmp), args.guest_runs, args.concurrent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
