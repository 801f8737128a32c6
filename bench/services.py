#!/usr/bin/env python3
"""The guest services under load: peak memory (VmHWM) and threads of the services' own process
while 200 clients each upload 4 MiB at once, and while one client sends a chunked gigabyte.

Usage: .venv/bin/python bench/services.py [--clients 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.test_services_limits import concurrent_uploads, megabytes, post_stream, start_services  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aero-bench-services-") as tmp:
        services = start_services(Path(tmp))
        idle = services.peak_rss_mb
        started = time.perf_counter()
        answers, peak_threads = concurrent_uploads(services, args.clients)
        statuses = Counter(answers)
        seconds = time.perf_counter() - started
        concurrent = services.peak_rss_mb
        status, sent = post_stream(services.http_port, megabytes(1024), chunked=True)
        chunked = services.peak_rss_mb
        services.proc.communicate(input="", timeout=30)
    print(f"services process, idle: {idle:.1f} MB")
    print(f"{args.clients} concurrent 4 MiB uploads: peak {concurrent:.1f} MB, peak {peak_threads} threads, "
          f"{seconds:.1f} s, answers {dict(sorted(statuses.items()))}")
    print(f"a chunked 1 GiB upload: answer {status} after {sent / (1 << 20):.0f} MiB sent, peak {chunked:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
