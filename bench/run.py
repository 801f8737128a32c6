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

Usage: .venv/bin/python bench/run.py [--runs N] [--qemu qemu-system-x86_64] [--skip-guest] [--cold]
(--cold empties the guest's download cache first: it downloads about 117 MB from Debian)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.qemu.bootsector import Ending, build_image  # noqa: E402

RECORDS = b"".join(f"AERO_VIRTIO_SELFTEST|{r}\r\n".encode() for r in (
    "START|version=1", "TEST|virtio-blk|PASS|write_ok=1", "TEST|virtio-net|PASS|large_ok=1", "RESULT|PASS"))


def plain_qemu(qemu: str, image: Path) -> float:
    argv = [qemu, "-machine", "pc", "-accel", "tcg", "-m", "2048", "-smp", "2", "-nodefaults", "-vga", "std",
            "-display", "none", "-no-reboot", "-serial", "stdio",
            "-drive", f"file={image},if=none,id=disk0,format=raw,snapshot=on",
            "-device", "virtio-blk-pci,drive=disk0,bootindex=0", "-netdev", "user,id=net0",
            "-device", "virtio-net-pci,netdev=net0"]
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, timeout=60, check=True)
    elapsed = time.perf_counter() - started
    assert b"RESULT|PASS" in proc.stdout
    return elapsed


def harness(image: Path, out: Path, port: int) -> tuple[float, float]:
    argv = [sys.executable, "-m", "harness", "--disk-image", str(image), "--accel", "tcg", "--snapshot",
            "--out-dir", str(out), "--http-port", str(port), "--udp-port", str(port + 1)]
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    latency = json.loads((out / "results.json").read_text())["timing"]["detection_latency_ms"]
    return elapsed, float(latency)


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
        halting.write_bytes(build_image(RECORDS, Ending.HALT))
        exiting.write_bytes(build_image(RECORDS, Ending.POWEROFF))
        plain, wall, latency, halt_wall = [], [], [], []
        for i in range(args.runs):
            plain.append(plain_qemu(args.qemu, exiting))
            wall.append(harness(exiting, Path(tmp, f"p{i}"), args.port)[0])
            elapsed, lat = harness(halting, Path(tmp, f"h{i}"), args.port)
            halt_wall.append(elapsed)
            latency.append(lat)
    overhead = [w - p for w, p in zip(wall, plain, strict=True)]
    print(f"detection latency (RESULT chunk received -> verdict printed): {describe(latency, 'ms')}")
    print(f"plain QEMU, boot to power-off:            {describe(plain, 's')}")
    print(f"harness, same guest, start to exit:       {describe(wall, 's')}")
    print(f"harness overhead (paired):                {describe(overhead, 's')}")
    print(f"harness, guest stays up (QMP quit):       {describe(halt_wall, 's')}")
    if not args.skip_guest:
        bench_guest(min(args.runs, 5), args.port, args.cold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
