"""Figures of the container: image size, base-image build time, selfcheck wall time, overhead.

    python container/bench.py [--runs 3] [--base-build] [--image aero-win7-harness:latest]

Prints one JSON object (the figures) on stdout and a readable summary on stderr.

- image size: the engine's size of the image, and of its layers
- base-image build (--base-build): container/build-base-image.sh --force --no-pull under a
  throw-away tag, timed (debootstrap + import)
- container start: ``docker run --rm IMAGE --version`` against ``aero-win7-harness --version``
  on the host: the fixed cost of a container
- reference guest: the guest baked into the image, run through ``aero-win7-docker`` (TCG) and,
  when the host has QEMU, by the harness directly on the host; the difference is the overhead of
  the container on a whole run (the host's QEMU may be another version: read it as a guide)
- selfcheck: ``docker run IMAGE selfcheck`` when the harness has that subcommand
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import docker

ROOT = Path(__file__).resolve().parent.parent
GUEST_IN_IMAGE = "/usr/share/aero-win7-harness/reference-guest.qcow2"


def timed(argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 900) -> tuple[float, int, str]:
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, **(env or {})})
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    return time.monotonic() - started, proc.returncode, last


def repeat(argv: list[str], runs: int, **kwargs: Any) -> dict[str, Any]:
    times: list[float] = []
    codes: list[int] = []
    last = ""
    for _ in range(runs):
        seconds, code, last = timed(argv, **kwargs)
        times.append(seconds)
        codes.append(code)
    return {"median_s": round(statistics.median(times), 2), "min_s": round(min(times), 2),
            "runs": [round(t, 2) for t in times], "exit_codes": codes, "last_line": last}


def image_size(client: docker.DockerClient, name: str) -> dict[str, Any]:
    image = client.images.get(name)
    layers = [{"size_mb": round(layer["Size"] / 1e6, 1), "step": layer["CreatedBy"][:90]}
              for layer in image.history() if layer["Size"] > 1_000_000]
    return {"size_mb": round(image.attrs["Size"] / 1e6, 1), "labels": image.labels, "large_layers": layers}


def base_build(client: docker.DockerClient) -> dict[str, Any]:
    tag = "aero-win7-harness-bench/trixie-slim:bench"
    seconds, code, _ = timed([str(ROOT / "container" / "build-base-image.sh"), "--tag", tag, "--no-pull", "--force"])
    size = client.images.get(tag).attrs["Size"] if code == 0 else 0
    if code == 0:
        client.images.remove(tag)
    return {"seconds": round(seconds, 1), "exit_code": code, "size_mb": round(size / 1e6, 1)}


def copy_guest(client: docker.DockerClient, name: str, folder: Path) -> Path:
    container = client.containers.create(name, network_mode="none")
    try:
        bits, _ = container.get_archive(GUEST_IN_IMAGE)
        with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tar:
            tar.extract("reference-guest.qcow2", folder, filter="data")
    finally:
        container.remove(force=True)
    return folder / "reference-guest.qcow2"


def guest_runs(client: docker.DockerClient, name: str, runs: int, work: Path) -> dict[str, Any]:
    guest = copy_guest(client, name, work)
    common = ["--disk-image", str(guest), "--accel", "tcg", "--timeout-seconds", "600", "--snapshot"]
    result: dict[str, Any] = {
        "container": repeat([sys.executable, "-m", "harness.launcher.cli", "--image", name, *common,
                             "--out-dir", str(work / "out-container")], runs),
    }
    if shutil.which("qemu-system-x86_64"):
        result["host"] = repeat([sys.executable, "-m", "harness", "run", *common, "--out-dir", str(work / "out-host")],
                                runs)
        if all(code == 0 for run in result.values() for code in run["exit_codes"]):
            result["overhead_s"] = round(result["container"]["median_s"] - result["host"]["median_s"], 2)
        else:  # e.g. the guest's ports are taken on the host (the container has its own network)
            result["overhead_s"] = None
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="aero-win7-harness:latest")
    parser.add_argument("--runs", type=int, default=3, help="repetitions of each timed run")
    parser.add_argument("--base-build", action="store_true", help="also time building the base image")
    parser.add_argument("--no-guest", action="store_true", help="skip the guest runs")
    args = parser.parse_args(argv)
    client = docker.from_env(timeout=120)
    figures: dict[str, Any] = {"image": args.image, "cpus": os.cpu_count(),
                               "kvm": os.path.exists("/dev/kvm"), "size": image_size(client, args.image)}
    if args.base_build:
        figures["base_build"] = base_build(client)
    figures["start"] = {
        "container": repeat(["docker", "run", "--rm", "--network", "none", args.image, "--version"], args.runs),
        "host": repeat([sys.executable, "-m", "harness", "--version"], args.runs),
    }
    if not args.no_guest:
        with tempfile.TemporaryDirectory(prefix="aero-bench-") as tmp:
            os.chmod(tmp, 0o755)  # a root caller's container runs as the image's user, who must enter it
            figures["reference_guest"] = guest_runs(client, args.image, args.runs, Path(tmp))
    from harness import cli as harness_cli

    if "selfcheck" in harness_cli.SUBCOMMANDS:
        figures["selfcheck"] = repeat(["docker", "run", "--rm", "--network", "none", "--dns", "127.0.0.1", args.image,
                                       "selfcheck",
                                       "--accel", "tcg", "--out-dir", "/tmp/selfcheck"], args.runs)
    json.dump(figures, sys.stdout, indent=2)
    print(file=sys.stdout)
    print(f"image {args.image}: {figures['size']['size_mb']} MB", file=sys.stderr)
    if "base_build" in figures:
        print(f"base image build: {figures['base_build']['seconds']} s", file=sys.stderr)
    start = figures["start"]
    print(f"--version: container {start['container']['median_s']} s, host {start['host']['median_s']} s",
          file=sys.stderr)
    for name, run in figures.get("reference_guest", {}).items():
        if isinstance(run, dict):
            print(f"reference guest ({name}): {run['median_s']} s, exit codes {run['exit_codes']}, "
                  f"last line: {run['last_line']}", file=sys.stderr)
    if "reference_guest" in figures:
        print(f"container overhead on a guest run: {figures['reference_guest'].get('overhead_s')} s", file=sys.stderr)
    if "selfcheck" in figures:
        run = figures["selfcheck"]
        print(f"selfcheck in the container: {run['median_s']} s, exit codes {run['exit_codes']}, "
              f"last line: {run['last_line']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
