"""Building the Linux reference guest in tests (shared by the builder tests and the end-to-end tests).

The build needs Debian's package mirror (or a warm cache in build/cache, or
$AERO_REFERENCE_GUEST_CACHE) and the host tools listed in reference-guest/README.md. Locally a
missing tool skips with its reason; with CI=true it fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from tests.conftest import missing_prerequisite

REPO = Path(__file__).resolve().parent.parent
BUILDER = REPO / "reference-guest" / "build.py"
CACHE = Path(os.environ.get("AERO_REFERENCE_GUEST_CACHE", REPO / "build" / "cache"))
HTTP_PATH = "/aero-virtio-selftest"
PATTERN = bytes(range(256)) * 4096
PATTERN_FNV1A64 = "0x8505ae4435522325"
BUILD_TOOLS = ("apt-get", "apt-cache", "dpkg-deb", "mkfs.fat", "mcopy", "mmd", "mtype", "mdir", "syslinux", "zstd",
               "qemu-img")


def need_tools(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        missing_prerequisite(f"missing host tools for the reference guest: {', '.join(missing)} "
                             "(see reference-guest/README.md)")


def load_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reference_guest_build", BUILDER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class Built:
    image: Path
    manifest: dict[str, object]
    seconds: float


def build(out: Path, *args: str) -> Built:
    need_tools(*BUILD_TOOLS)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(BUILDER), "--out", str(out), "--cache", str(CACHE), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, f"build failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    manifest = json.loads(out.with_name(out.name.removesuffix(".qcow2") + ".manifest.json").read_text())
    return Built(out, manifest, seconds)


def raw_copy(image: Path, tmp: Path) -> Path:
    raw = tmp / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), str(raw)], check=True)
    return raw


def fat_read(raw: Path, path: str) -> bytes:
    proc = subprocess.run(["mtype", "-i", f"{raw}@@1M", f"::{path}"], capture_output=True, check=True)
    return proc.stdout


def read_cpio(data: bytes) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, data) of a newc archive."""
    entries: dict[str, tuple[int, bytes]] = {}
    pos = 0
    while True:
        assert data[pos : pos + 6] == b"070701", f"bad cpio header at {pos}"
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_start = pos + 110
        name = data[name_start : name_start + namesize - 1].decode()
        pos = (name_start + namesize + 3) & ~3
        body = data[pos : pos + size]
        pos = (pos + size + 3) & ~3
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, body)
