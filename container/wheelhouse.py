"""Fill the Docker build's wheelhouse with the harness's third-party dependencies.

``docker build`` cannot always reach PyPI the way the host does (a TLS-inspecting proxy, a private
index, an air-gapped lab), so the host's own pip downloads the wheels the image needs, for the
image's Python, and the Dockerfile installs them with ``--no-index``. The harness itself is built
from source inside the image.

Usage: python container/wheelhouse.py [--python-version 3.13] [--dest build/docker-wheels]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DEST = ROOT / "build" / "docker-wheels"
# The platforms a Debian trixie amd64 Python accepts (glibc 2.41).
_PLATFORMS = ("manylinux_2_41_x86_64", "manylinux_2_28_x86_64", "manylinux2014_x86_64", "any")


def project_dependencies(pyproject: Path) -> list[str]:
    with pyproject.open("rb") as handle:
        data = tomllib.load(handle)
    deps: list[str] = data["project"]["dependencies"]
    return deps


def download_argv(deps: list[str], dest: Path, python_version: str) -> list[str]:
    nodot = python_version.replace(".", "")
    argv = [sys.executable, "-m", "pip", "download", "-qq", "--only-binary=:all:",
            "--python-version", python_version, "--implementation", "cp",
            "--abi", f"cp{nodot}", "--abi", "abi3", "--abi", "none", "--dest", str(dest)]
    for platform in _PLATFORMS:
        argv += ["--platform", platform]
    return argv + deps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python-version", default="3.13", help="the image's Python, MAJOR.MINOR")
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    args = parser.parse_args(argv)
    dest: Path = args.dest
    dest.mkdir(parents=True, exist_ok=True)
    for stale in dest.glob("*.whl"):
        stale.unlink()
    deps = project_dependencies(ROOT / "pyproject.toml")
    proc = subprocess.run(download_argv(deps, dest, args.python_version), check=False)
    if proc.returncode != 0:
        print(f"FAIL: INFRA: wheelhouse: pip could not download the dependencies for Python "
              f"{args.python_version} (exit {proc.returncode})", flush=True)
        return 6
    print(f"wheelhouse: {len(list(dest.glob('*.whl')))} wheels in {dest}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
