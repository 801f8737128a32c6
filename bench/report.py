#!/usr/bin/env python3
"""report.html against a huge run: its size and the time to write it for a 300 MB serial log.

The results are a real run's (a boot-sector guest replaying the real guest's transcript), then the
serial log is replaced by 300 MB of guest-like noise ending in the transcript, and the page is
written again from them, as the harness writes it at the end of a run.

Usage: .venv/bin/python bench/report.py [--megabytes 300] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.run import describe, records  # noqa: E402
from harness.qemu.bootsector import Ending, build_image  # noqa: E402
from harness.report import write_report  # noqa: E402

PORT = 38280
NOISE = b"[    1.234567] virtio_blk virtio0: [vda] 131072 512-byte logical blocks (67.1 MB/64.0 MiB)\r\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aero-bench-report-") as tmp:
        folder = Path(tmp)
        image = folder / "g.img"
        message = records(PORT)
        image.write_bytes(build_image(message, Ending.HALT))
        out = folder / "out"
        subprocess.run([sys.executable, "-m", "harness", "--disk-image", str(image), "--accel", "tcg", "--snapshot",
                        "--out-dir", str(out), "--http-port", str(PORT), "--udp-port", str(PORT + 1)],
                       check=True, capture_output=True, timeout=120)
        results = json.loads((out / "results.json").read_text())
        serial = out / "serial.log"
        with serial.open("wb") as stream:
            block = NOISE * (1 << 20 // len(NOISE))
            for _ in range(args.megabytes * (1 << 20) // len(block)):
                stream.write(block)
            stream.write(message)
        seconds = []
        for _ in range(args.runs):
            started = time.perf_counter()
            page = write_report(results, out, serial, out / "http.log")
            seconds.append((time.perf_counter() - started) * 1000)
        print(f"serial log {serial.stat().st_size / 1e6:.0f} MB: report.html {page.stat().st_size / 1e3:.0f} kB, "
              f"written in {describe(seconds, 'ms', 1)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
