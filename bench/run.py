#!/usr/bin/env python3
"""Benchmarks of the harness itself (figures for BENCHMARKS.md).

  detection latency  verdict line printed minus the arrival of the chunk holding the guest's
                     RESULT line (the harness's own per-chunk receive timestamps, results.json)
                     with a guest that stays up after RESULT, as Windows does
  reference guest    cold and warm build time and image size (reference-guest/build.py), and the
                     wall time of `selfcheck` on it under TCG, start to exit
  overhead           wall time of a harness run minus plain QEMU on the same boot-sector guest
                     (the guest prints the protocol lines and powers off; plain QEMU writes COM1
                     to stdout; both under TCG)
  progress           the detection latency again with the live progress line on a terminal (a
                     pseudo-terminal) and with --quiet

The boot-sector guest replays the real Windows guest's COM1 output of a passing run in the
contract layout (tests/transcripts.py: about 5 KB, every marker the rules read).

Usage: .venv/bin/python bench/run.py [--runs N] [--qemu qemu-system-x86_64] [--skip-guest] [--cold]
(--cold empties the guest's download cache first: it downloads about 117 MB from Debian)
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.qemu.bootsector import Ending, build_image  # noqa: E402
from tests.transcripts import as_bytes, transcript  # noqa: E402


def records(port: int) -> bytes:
    """A passing real-guest transcript provisioned for the benchmark's ports."""
    return as_bytes(transcript(config={"http_url": f"http://10.0.2.2:{port}/aero-virtio-selftest",
                                       "udp_port": str(port + 1)}))


def plain_qemu(qemu: str, image: Path) -> float:
    argv = [qemu, "-machine", "pc", "-accel", "tcg", "-m", "2048", "-smp", "2", "-nodefaults", "-vga", "std",
            "-display", "none", "-no-reboot", "-serial", "stdio",
            "-drive", f"file={image},if=none,id=disk0,format=raw,snapshot=on",
            "-device", "virtio-blk-pci,drive=disk0,bootindex=0,disable-legacy=on,queue-size=128,num-queues=1",
            "-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0,disable-legacy=on",
            "-device", "VGA", "-device", "virtio-keyboard-pci", "-device", "virtio-mouse-pci"]
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, timeout=60, check=True)
    elapsed = time.perf_counter() - started
    assert b"RESULT|PASS" in proc.stdout
    return elapsed


def harness_argv(image: Path, out: Path, port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "harness", "--disk-image", str(image), "--accel", "tcg", "--snapshot",
            "--out-dir", str(out), "--http-port", str(port), "--udp-port", str(port + 1), *extra]


def harness(image: Path, out: Path, port: int, *extra: str) -> tuple[float, float]:
    started = time.perf_counter()
    proc = subprocess.run(harness_argv(image, out, port, *extra), capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    latency = json.loads((out / "results.json").read_text())["timing"]["detection_latency_ms"]
    return elapsed, float(latency)


def harness_on_a_terminal(image: Path, out: Path, port: int) -> float:
    """The run with stdout and stderr on a pseudo-terminal: the live progress line is drawn."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(harness_argv(image, out, port, "--progress-interval", "0.2"), stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    screen = b""
    while select.select([master], [], [], 60)[0]:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    os.close(master)
    assert proc.wait(timeout=30) == 0, screen.decode(errors="replace")[-2000:]
    assert b"\x1b[" in screen  # the progress line was drawn in place
    return float(json.loads((out / "results.json").read_text())["timing"]["detection_latency_ms"])


def build_guest(out: Path, cache: Path, port: int) -> tuple[float, int]:
    argv = [sys.executable, str(REPO / "reference-guest" / "build.py"), "--out", str(out), "--cache", str(cache),
            "--http-url", f"http://10.0.2.2:{port}/aero-virtio-selftest", "--udp-port", str(port + 1)]
    started = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=True, timeout=900)
    return time.perf_counter() - started, out.stat().st_size


def selfcheck(image: Path, out: Path, port: int) -> float:
    argv = [sys.executable, "-m", "harness", "selfcheck", "--disk-image", str(image), "--accel", "tcg",
            "--out-dir", str(out), "--http-port", str(port), "--udp-port", str(port + 1)]
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return elapsed


def bench_guest(runs: int, port: int, cold: bool) -> None:
    cache = REPO / "build" / "cache"
    with tempfile.TemporaryDirectory(prefix="aero-bench-guest-") as tmp:
        if cold:
            cold_cache = Path(tmp, "cache")
            seconds, _ = build_guest(Path(tmp, "cold.qcow2"), cold_cache, port)
            print(f"reference guest, cold build (empty cache): {seconds:.1f} s")
            cache = cold_cache
        warm = [build_guest(Path(tmp, f"g{i}.qcow2"), cache, port) for i in range(3)]
        print(f"reference guest, warm build:               {describe([w[0] for w in warm], 's', 1)}")
        print(f"reference guest, image size:               {warm[0][1] / 1e6:.1f} MB ({warm[0][1]} bytes)")
        image = Path(tmp, "g0.qcow2")
        walls = [selfcheck(image, Path(tmp, f"s{i}"), port) for i in range(runs)]
        print(f"selfcheck under TCG, start to exit:        {describe(walls, 's', 1)}")


def describe(values: list[float], unit: str, digits: int = 3) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return (f"median {statistics.median(values):.{digits}f} {unit}, p90 {p90:.{digits}f} {unit}, "
            f"min {ordered[0]:.{digits}f}, max {ordered[-1]:.{digits}f} (n={len(values)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--qemu", default="qemu-system-x86_64")
    parser.add_argument("--port", type=int, default=38080)
    parser.add_argument("--skip-guest", action="store_true", help="leave out the reference-guest figures")
    parser.add_argument("--cold", action="store_true", help="also time a build with an empty download cache")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aero-bench-") as tmp:
        halting, exiting = Path(tmp, "halt.img"), Path(tmp, "poweroff.img")
        message = records(args.port)
        halting.write_bytes(build_image(message, Ending.HALT))
        exiting.write_bytes(build_image(message, Ending.POWEROFF))
        plain, wall, latency, halt_wall, on_tty, quiet = [], [], [], [], [], []
        for i in range(args.runs):
            plain.append(plain_qemu(args.qemu, exiting))
            wall.append(harness(exiting, Path(tmp, f"p{i}"), args.port)[0])
            elapsed, lat = harness(halting, Path(tmp, f"h{i}"), args.port)
            halt_wall.append(elapsed)
            latency.append(lat)
            on_tty.append(harness_on_a_terminal(halting, Path(tmp, f"t{i}"), args.port))
            quiet.append(harness(halting, Path(tmp, f"q{i}"), args.port, "--quiet")[1])
    overhead = [w - p for w, p in zip(wall, plain, strict=True)]
    print(f"detection latency (RESULT chunk received -> verdict printed): {describe(latency, 'ms')}")
    print(f"plain QEMU, boot to power-off:            {describe(plain, 's')}")
    print(f"harness, same guest, start to exit:       {describe(wall, 's')}")
    print(f"harness overhead (paired):                {describe(overhead, 's')}")
    print(f"harness, guest stays up (QMP quit):       {describe(halt_wall, 's')}")
    print(f"detection latency, progress on a terminal: {describe(on_tty, 'ms')}")
    print(f"detection latency, --quiet:                {describe(quiet, 'ms')}")
    if not args.skip_guest:
        bench_guest(min(args.runs, 5), args.port, args.cold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
