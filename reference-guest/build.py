#!/usr/bin/env python3
"""Build the Linux reference guest of aero-win7-harness.

The guest stands in for the Windows 7 selftest image: it boots from a
virtio-blk disk under SeaBIOS, checks virtio-blk, virtio-net and virtio-snd
for real and reports on COM1 in the selftest protocol.

Everything that goes into the guest comes from Debian trixie packages,
fetched with ``apt-get download`` through an apt configuration private to the
build (the machine's own apt sources are never read or changed).  No root
mounts or loop devices are used: the FAT file system is filled with mtools,
made bootable with ``syslinux --install`` and wrapped with an MBR written
here, then converted with ``qemu-img``.

Usage::

    python3 reference-guest/build.py --out build/reference-guest.qcow2 \
        [--http-url URL] [--udp-port N] [--require-snd] [--guest-arg 'ARG...']... [--cache DIR]

The guest's options use the Windows selftest's flag names; the ones given here are baked into
the image, and QEMU's ``-fw_cfg name=opt/org.aero/selftest-args,string=...`` adds more at run time.

Stdlib only (Python 3.11).  Host tools: apt-get, apt-cache, dpkg-deb,
mkfs.fat, mcopy, mmd, syslinux, zstd, qemu-img.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import fcntl
import hashlib
import json
import lzma
import math
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import wave
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

BUILDER_VERSION = "2"
HERE = Path(__file__).resolve().parent
GUEST_DIR = HERE / "guest"
GUEST_FILES = ("init", "selftest.sh", "options.sh", "pci.sh", "blk.sh", "input.sh", "snd.sh", "net.sh", "udhcpc.script")

DEFAULT_HTTP_URL = "http://10.0.2.2:18080/aero-virtio-selftest"
DEFAULT_UDP_PORT = 18081
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SUITE = "trixie"
DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
ARCH = "amd64"
MULTIARCH = "x86_64-linux-gnu"

# The trixie package set, pinned by name.  The versions are whatever the
# suite's index offers at build time; they are recorded in the manifest.
KERNEL_META_PACKAGE = "linux-image-amd64"
PACKAGES: tuple[str, ...] = (
    "busybox-static",  # init, shell, udhcpc, wget, dd, insmod...
    "libc6",  # for socat and aplay
    "socat",  # UDP echo and the binary HTTP POST
    "libwrap0",
    "libssl3t64",
    "zlib1g",
    "libzstd1",
    "alsa-utils",  # aplay (arecord is the same program)
    "libasound2t64",
    "libasound2-data",  # /usr/share/alsa (alsa.conf)
)

# Dynamically linked programs copied into the initramfs:
# name in the guest -> (package, path inside the package).
PROGRAMS: dict[str, tuple[str, str]] = {
    "socat": ("socat", "usr/bin/socat1"),
    "aplay": ("alsa-utils", "usr/bin/aplay"),
}
# Other names of those programs (aplay records when called arecord).
PROGRAM_ALIASES: dict[str, str] = {"arecord": "aplay"}

# Kernel modules (names as the kernel spells them); their dependencies are
# added from each module's .modinfo.  Built-in ones are skipped.
BASE_MODULES: tuple[str, ...] = (
    "qemu_fw_cfg",  # run-time options from -fw_cfg
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "virtio_input",
    "evdev",  # /dev/input/event* for the input tests
    "vfat",
    "nls_cp437",
    "nls_ascii",
)
SND_MODULES: tuple[str, ...] = ("virtio_snd",)
REQUIRED_KCONFIG = (
    "CONFIG_SND_VIRTIO",
    "CONFIG_VIRTIO_BLK",
    "CONFIG_VIRTIO_NET",
    "CONFIG_VIRTIO_INPUT",
    "CONFIG_INPUT_EVDEV",
    "CONFIG_FW_CFG_SYSFS",
)

KERNEL_CMDLINE = (
    "console=ttyS0,115200n8 quiet loglevel=3 panic=1 no_timer_check 8250.nr_uarts=1 i8042.noaux random.trust_cpu=on"
)

FAT_LABEL = "AEROREF"
FAT_SIZE_MIB = 64  # kernel + initramfs + room for the virtio-blk write test
PART_START_LBA = 2048
SECTOR = 512
IMAGE_LIMIT_BYTES = 40 * 1000 * 1000
BUILD_TIME_TARGET_S = 120.0

PATTERN_BYTES = 1 << 20
PATTERN_FNV1A64 = 0x8505AE4435522325
TONE_RATE = 48000
TONE_HZ = 500  # a whole number of periods per second: 96 frames each
TONE_SECONDS = 1.0
LISTS_MAX_AGE_S = 24 * 3600
ZSTD_LEVEL = 12  # -19 saves 1 MB of image for 6 s more build time

_SAFE_URL = re.compile(r"^[A-Za-z0-9._~:/?#\[\]@!$&()*+,;=%-]+$")
_SAFE_WORD = re.compile(r"^[!-~]+$")  # printable ASCII without blanks; quotes and bars are refused below


class BuildError(Exception):
    """A build step failed; the message is one line for the user."""


def log(msg: str) -> None:
    print(f"[reference-guest] {msg}", file=sys.stderr, flush=True)


def run(argv: Sequence[str], *, cwd: Path | None = None, quiet: bool = True) -> str:
    """Run a command (an argument list, never through a shell)."""
    try:
        proc = subprocess.run(
            list(argv),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=quiet,
            text=True,
            check=False,
        )
    except FileNotFoundError as exc:
        raise BuildError(f"{argv[0]}: not found (install the host packages, see README.md)") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-5:] if quiet else []
        detail = " | ".join(tail)
        raise BuildError(f"{' '.join(argv[:3])}... exited {proc.returncode}: {detail}")
    return proc.stdout or ""


# --------------------------------------------------------------------------
# knobs


@dataclasses.dataclass(frozen=True)
class Knobs:
    http_url: str
    http_host: str
    http_port: int
    http_path: str
    udp_port: int
    require_snd: bool
    guest_args: tuple[str, ...] = ()  # more guest flags, blank-separated words

    @property
    def guest_words(self) -> list[str]:
        """The selftest's baked command line, in the Windows guest's flag names."""
        words = ["--http-url", self.http_url, "--udp-port", str(self.udp_port)]
        if self.require_snd:
            words.append("--require-snd")
        return words + list(self.guest_args)


def parse_knobs(http_url: str, udp_port: int, require_snd: bool, guest_args: Sequence[str] = ()) -> Knobs:
    if not _SAFE_URL.match(http_url) or "'" in http_url or "|" in http_url:
        raise BuildError(f"--http-url {http_url!r}: unsupported characters")
    parts = urllib.parse.urlsplit(http_url)
    if parts.scheme != "http" or not parts.hostname:
        raise BuildError(f"--http-url {http_url!r}: must be http://HOST[:PORT]/PATH")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise BuildError(f"--http-url {http_url!r}: no query, fragment or credentials")
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise BuildError(f"--http-url {http_url!r}: bad port") from exc
    path = parts.path or "/"
    if not 1 <= udp_port <= 65535:
        raise BuildError(f"--udp-port {udp_port}: out of range")
    words: list[str] = []
    for arg in guest_args:
        for word in arg.split():
            if not _SAFE_WORD.match(word) or "'" in word or '"' in word or "|" in word:
                raise BuildError(f"--guest-arg {arg!r}: {word!r} has unsupported characters (quotes, bars)")
            words.append(word)
    return Knobs(http_url, parts.hostname, port, path, udp_port, require_snd, tuple(words))


# --------------------------------------------------------------------------
# private apt


@dataclasses.dataclass(frozen=True)
class DebInfo:
    name: str
    version: str
    arch: str
    filename: str  # pool path in the archive
    sha256: str
    size: int
    depends: str

    @property
    def deb_name(self) -> str:
        """The file name apt-get download gives it."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


class PrivateApt:
    """apt-get/apt-cache confined to a directory of the cache."""

    def __init__(self, root: Path, mirror: str, suite: str, keyring: str) -> None:
        self.root = root
        self.mirror = mirror
        self.suite = suite
        self.keyring = keyring
        self.sources_dir = root / "sources.list.d"
        self.prefs_dir = root / "preferences.d"
        self.lists = root / "lists"
        self.cache = root / "cache"
        self.status = root / "status"

    def setup(self) -> None:
        if not Path(self.keyring).is_file():
            raise BuildError(f"{self.keyring}: no such keyring (install debian-archive-keyring, or pass --keyring)")
        for d in (self.sources_dir, self.prefs_dir, self.lists / "partial", self.cache / "archives" / "partial"):
            d.mkdir(parents=True, exist_ok=True)
        self.status.touch()
        sources = (
            "Types: deb\n"
            f"URIs: {self.mirror}\n"
            f"Suites: {self.suite}\n"
            "Components: main\n"
            f"Architectures: {ARCH}\n"
            f"Signed-By: {self.keyring}\n"
        )
        target = self.sources_dir / f"{self.suite}.sources"
        if not target.exists() or target.read_text() != sources:
            target.write_text(sources)
            for f in self.lists.glob("*_dists_*"):  # another mirror or suite: refetch
                f.unlink()

    def options(self) -> list[str]:
        opts = {
            "Dir::Etc::sourcelist": "/dev/null",
            "Dir::Etc::sourceparts": str(self.sources_dir),
            "Dir::Etc::preferences": "/dev/null",
            "Dir::Etc::preferencesparts": str(self.prefs_dir),
            "Dir::State::Lists": str(self.lists),
            "Dir::State::status": str(self.status),
            "Dir::Cache": str(self.cache),
            "APT::Architecture": ARCH,
            "APT::Architectures::": ARCH,
            "Acquire::Languages": "none",
            "APT::Sandbox::User": "root",
        }
        out: list[str] = []
        for key, value in opts.items():
            out += ["-o", f"{key}={value}"]
        return out

    def lists_age(self) -> float | None:
        release = list(self.lists.glob("*_dists_*Release"))
        if not release:
            return None
        return time.time() - max(p.stat().st_mtime for p in release)

    def update(self, *, force: bool) -> str:
        age = self.lists_age()
        if not force and age is not None and age < LISTS_MAX_AGE_S:
            return "fresh"
        try:
            run(["apt-get", *self.options(), "-q", "--error-on=any", "update"])
        except BuildError as exc:
            if age is None:
                raise BuildError(f"apt-get update ({self.suite}) failed and no cached index: {exc}") from exc
            log(f"warning: apt-get update failed, using the cached index ({age / 3600:.1f} h old): {exc}")
            return "stale"
        return "updated"

    def show(self, names: Iterable[str]) -> dict[str, DebInfo]:
        names = list(names)
        text = run(["apt-cache", *self.options(), "show", "--no-all-versions", *names])
        found: dict[str, DebInfo] = {}
        for para in text.split("\n\n"):
            fields = _parse_control(para)
            if "Package" not in fields:
                continue
            info = DebInfo(
                name=fields["Package"],
                version=fields["Version"],
                arch=fields.get("Architecture", ARCH),
                filename=fields["Filename"],
                sha256=fields["SHA256"],
                size=int(fields["Size"]),
                depends=fields.get("Depends", ""),
            )
            found.setdefault(info.name, info)
        missing = [n for n in names if n not in found]
        if missing:
            raise BuildError(f"not in {self.suite}: {', '.join(missing)}")
        return found

    def download(self, debs: Sequence[DebInfo], dest: Path) -> None:
        if debs:
            run(["apt-get", *self.options(), "-q", "download", *[f"{d.name}={d.version}" for d in debs]], cwd=dest)


def _parse_control(para: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = None
    for line in para.splitlines():
        if line[:1] in (" ", "\t") and key:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclasses.dataclass
class FetchResult:
    debs: dict[str, DebInfo]  # package -> info
    trees: dict[str, Path]  # package -> extracted tree
    kernel_package: str
    index: str
    downloaded: list[str]
    extracted: list[str]


def fetch(cache: Path, mirror: str, suite: str, keyring: str, refresh: bool) -> FetchResult:
    """Resolve, download (into the cache) and extract the package set."""
    apt = PrivateApt(cache / "apt", mirror, suite, keyring)
    apt.setup()
    index = apt.update(force=refresh)
    meta = apt.show([KERNEL_META_PACKAGE])[KERNEL_META_PACKAGE]
    m = re.match(r"(linux-image-[^\s,(]+)", meta.depends)
    if not m:
        raise BuildError(f"{KERNEL_META_PACKAGE}: unexpected Depends {meta.depends!r}")
    kernel_package = m.group(1)
    names = [kernel_package, *PACKAGES]
    debs = apt.show(names)
    debs[KERNEL_META_PACKAGE] = meta

    debdir = cache / "debs"
    debdir.mkdir(parents=True, exist_ok=True)
    want = [debs[n] for n in names]
    missing = []
    for d in want:
        p = debdir / d.deb_name
        if p.exists() and (p.stat().st_size != d.size or sha256_file(p) != d.sha256):
            log(f"cached {p.name} does not match the index: fetching again")
            p.unlink()
        if not p.exists():
            missing.append(d)
    if missing:
        log(f"downloading {len(missing)} packages ({sum(d.size for d in missing) / 1e6:.1f} MB)")
        apt.download(missing, debdir)
        for d in missing:
            p = debdir / d.deb_name
            if not p.exists() or sha256_file(p) != d.sha256:
                raise BuildError(f"{d.name}: downloaded file missing or hash mismatch")

    extract_root = cache / "extract"
    extract_root.mkdir(parents=True, exist_ok=True)
    trees: dict[str, Path] = {}
    extracted = []
    for d in want:
        tree = extract_root / d.deb_name.removesuffix(".deb")
        if not (tree / ".complete").exists():
            tmp = extract_root / f".tmp-{tree.name}"
            shutil.rmtree(tmp, ignore_errors=True)
            run(["dpkg-deb", "-x", str(debdir / d.deb_name), str(tmp)])
            (tmp / ".complete").touch()
            shutil.rmtree(tree, ignore_errors=True)
            tmp.rename(tree)
            extracted.append(d.name)
        trees[d.name] = tree

    # Drop what the set no longer uses (older versions, an older kernel), so the cache does not grow.
    keep = {d.deb_name for d in want}
    for p in debdir.glob("*.deb"):
        if p.name not in keep:
            p.unlink()
    for p in extract_root.iterdir():
        if p.name + ".deb" not in keep:
            shutil.rmtree(p, ignore_errors=True)
    return FetchResult(debs, trees, kernel_package, index, [d.name for d in missing], extracted)


# --------------------------------------------------------------------------
# ELF


@dataclasses.dataclass(frozen=True)
class Elf:
    interp: str | None
    needed: tuple[str, ...]
    sections: dict[str, bytes]


def parse_elf(data: bytes, *, want_sections: bool = False) -> Elf:
    """The bits of a 64-bit little-endian ELF file the build needs."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise BuildError("not a 64-bit little-endian ELF file")
    e_phoff, e_shoff = struct.unpack_from("<QQ", data, 0x20)
    e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHHHH", data, 0x36)
    interp = None
    loads: list[tuple[int, int, int]] = []  # vaddr, offset, filesz
    dynamic: tuple[int, int] | None = None
    for i in range(e_phnum):
        p_type, _f, p_offset, p_vaddr, _pa, p_filesz = struct.unpack_from("<IIQQQQ", data, e_phoff + i * e_phentsize)
        if p_type == 3:  # PT_INTERP
            interp = data[p_offset : p_offset + p_filesz].rstrip(b"\0").decode()
        elif p_type == 1:  # PT_LOAD
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == 2:  # PT_DYNAMIC
            dynamic = (p_offset, p_filesz)
    needed: list[str] = []
    if dynamic:
        strtab = None
        needed_off: list[int] = []
        off, size = dynamic
        for pos in range(off, off + size, 16):
            tag, val = struct.unpack_from("<qQ", data, pos)
            if tag == 0:
                break
            if tag == 1:
                needed_off.append(val)
            elif tag == 5:
                strtab = val
        if strtab is not None:
            for vaddr, foff, fsz in loads:
                if vaddr <= strtab < vaddr + fsz:
                    base = strtab - vaddr + foff
                    for n in needed_off:
                        end = data.index(b"\0", base + n)
                        needed.append(data[base + n : end].decode())
                    break
    sections: dict[str, bytes] = {}
    if want_sections and e_shoff and e_shnum:
        headers = [struct.unpack_from("<IIQQQQ", data, e_shoff + i * e_shentsize) for i in range(e_shnum)]
        names_off = headers[e_shstrndx][4]
        for sh_name, sh_type, _fl, _ad, sh_offset, sh_size in headers:
            end = data.index(b"\0", names_off + sh_name)
            name = data[names_off + sh_name : end].decode()
            if sh_type != 8:  # SHT_NOBITS has no bytes
                sections[name] = data[sh_offset : sh_offset + sh_size]
    return Elf(interp, tuple(needed), sections)


# --------------------------------------------------------------------------
# initramfs contents


class Tree:
    """An in-memory file tree that becomes a newc cpio archive."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[int, bytes, int]] = {}  # path -> (mode, data, rdev)

    def dir(self, path: str, mode: int = 0o755) -> None:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            self.entries.setdefault(p, (stat.S_IFDIR | mode, b"", 0))

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        path = path.strip("/")
        if "/" in path:
            self.dir(path.rsplit("/", 1)[0])
        self.entries[path] = (stat.S_IFREG | mode, data, 0)

    def symlink(self, path: str, target: str) -> None:
        path = path.strip("/")
        if "/" in path:
            self.dir(path.rsplit("/", 1)[0])
        self.entries[path] = (stat.S_IFLNK | 0o777, target.encode(), 0)

    def chardev(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self.dir(path.rsplit("/", 1)[0])
        self.entries[path.strip("/")] = (stat.S_IFCHR | mode, b"", os.makedev(major, minor))

    def cpio(self, mtime: int) -> bytes:
        out = bytearray()

        def add(name: str, mode: int, data: bytes, rdev: int, ino: int) -> None:
            nb = name.encode() + b"\0"
            fields = (
                ino, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, mtime, len(data),
                0, 0, os.major(rdev), os.minor(rdev), len(nb), 0,
            )  # fmt: skip
            out.extend(b"070701" + b"".join(b"%08X" % f for f in fields))
            out.extend(nb)
            out.extend(b"\0" * (-len(out) % 4))
            out.extend(data)
            out.extend(b"\0" * (-len(out) % 4))

        for ino, name in enumerate(sorted(self.entries), start=1):
            mode, data, rdev = self.entries[name]
            add(name, mode, data, rdev, ino)
        add("TRAILER!!!", 0, b"", 0, 0)
        return bytes(out)


def find_libs(trees: Sequence[Path]) -> dict[str, Path]:
    """soname -> real file, over the library directories of the trees."""
    found: dict[str, Path] = {}
    for tree in trees:
        for sub in (f"usr/lib/{MULTIARCH}", f"lib/{MULTIARCH}"):
            d = tree / sub
            if d.is_dir():
                for p in d.iterdir():
                    if ".so" in p.name and p.name not in found:
                        real = p.resolve()
                        if real.is_file():
                            found[p.name] = real
    return found


def add_programs(tree: Tree, fetched: FetchResult) -> dict[str, list[str]]:
    """Copy the programs and the closure of their shared libraries."""
    libs = find_libs([fetched.trees[p] for p in fetched.trees])
    todo: list[tuple[str, Path]] = []
    for guest_name, (pkg, rel) in PROGRAMS.items():
        src = (fetched.trees[pkg] / rel).resolve()
        tree.file(f"usr/bin/{guest_name}", src.read_bytes(), 0o755)
        todo.append((guest_name, src))
    report: dict[str, list[str]] = {}
    copied: set[str] = set()
    while todo:
        who, path = todo.pop()
        elf = parse_elf(path.read_bytes())
        report[who] = list(elf.needed)
        if elf.interp and elf.interp != "/lib64/ld-linux-x86-64.so.2":
            raise BuildError(f"{who}: unexpected interpreter {elf.interp}")
        wanted = list(elf.needed) + (["ld-linux-x86-64.so.2"] if elf.interp else [])
        for soname in wanted:
            if soname in copied:
                continue
            if soname not in libs:
                raise BuildError(f"{who} needs {soname}, which no package of the set provides")
            copied.add(soname)
            tree.file(f"usr/lib/{MULTIARCH}/{soname}", libs[soname].read_bytes(), 0o755)
            todo.append((soname, libs[soname]))
    tree.symlink("usr/lib64/ld-linux-x86-64.so.2", f"../lib/{MULTIARCH}/ld-linux-x86-64.so.2")
    for alias, target in PROGRAM_ALIASES.items():
        tree.symlink(f"usr/bin/{alias}", target)
    return report


@dataclasses.dataclass
class Modules:
    release: str
    base: list[str]  # load order, paths relative to /
    snd: list[str]
    builtin: list[str]


def add_modules(tree: Tree, ktree: Path) -> Modules:
    mod_root = next((ktree / "usr/lib/modules").iterdir())
    release = mod_root.name
    builtin_names = set()
    for line in (mod_root / "modules.builtin").read_text().splitlines():
        builtin_names.add(Path(line).name.removesuffix(".ko").replace("-", "_"))
    by_name: dict[str, Path] = {}
    for p in (mod_root / "kernel").rglob("*.ko*"):
        by_name[p.name.split(".ko", 1)[0].replace("-", "_")] = p

    loaded: dict[str, str] = {}  # name -> guest path
    builtin: list[str] = []

    def resolve(name: str, order: list[str]) -> None:
        if name in loaded or name in builtin:
            return
        if name in builtin_names:
            builtin.append(name)
            return
        if name not in by_name:
            raise BuildError(f"kernel {release}: no module {name}")
        src = by_name[name]
        raw = src.read_bytes()
        if src.name.endswith(".xz"):
            raw = lzma.decompress(raw)
        elif not src.name.endswith(".ko"):
            raise BuildError(f"{src.name}: unsupported module compression")
        info = parse_elf(raw, want_sections=True).sections.get(".modinfo", b"")
        deps: list[str] = []
        for item in info.split(b"\0"):
            if item.startswith(b"depends="):
                deps = [d for d in item[8:].decode().split(",") if d]
        loaded[name] = ""  # guards against cycles
        for d in deps:
            resolve(d.replace("-", "_"), order)
        rel = src.relative_to(ktree).as_posix()
        rel = rel[: rel.index(".ko") + 3]
        tree.file(rel, raw)
        loaded[name] = "/" + rel
        order.append("/" + rel)

    base: list[str] = []
    for n in BASE_MODULES:
        resolve(n, base)
    snd: list[str] = []
    for n in SND_MODULES:
        resolve(n, snd)
    return Modules(release, base, snd, builtin)


def make_pattern() -> bytes:
    data = bytes(range(256)) * (PATTERN_BYTES // 256)
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    if h != PATTERN_FNV1A64:
        raise BuildError(f"pattern self-check: FNV-1a {h:#x}")
    return data


def make_tone() -> bytes:
    frames = int(TONE_RATE * TONE_SECONDS)
    period = [round(16000 * math.sin(2 * math.pi * i * TONE_HZ / TONE_RATE)) for i in range(TONE_RATE // TONE_HZ)]
    samples = b"".join(struct.pack("<hh", v, v) for v in period)
    path = Path(tempfile.mkstemp(suffix=".wav")[1])
    try:
        with wave.open(str(path), "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(TONE_RATE)
            w.writeframes(samples * (frames // len(period)))
        return path.read_bytes()
    finally:
        path.unlink()


def config_text(knobs: Knobs, build_id: str, release: str) -> str:
    values = {
        "AERO_GUEST_ARGS": " ".join(knobs.guest_words),
        "AERO_BUILD_ID": build_id,
        "AERO_KERNEL": release,
    }
    lines = [
        "# aero reference guest: baked-in selftest configuration (sh syntax).",
        "# AERO_GUEST_ARGS: the selftest's options (the Windows guest's flag names); the words of",
        "# QEMU's -fw_cfg name=opt/org.aero/selftest-args come after them, and a later value wins.",
    ]
    lines += [f"{k}='{v}'" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def compress_initramfs(archive: bytes) -> bytes:
    """zstd: under TCG the kernel unpacks it about a second faster than xz."""
    try:
        proc = subprocess.run(
            ["zstd", f"-{ZSTD_LEVEL}", "-T0", "-q", "-c"], input=archive, capture_output=True, check=False
        )
    except FileNotFoundError as exc:
        raise BuildError("zstd: not found (install the zstd package)") from exc
    if proc.returncode != 0:
        raise BuildError(f"zstd exited {proc.returncode}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


# --------------------------------------------------------------------------
# disk


def make_fat(work: Path, files: dict[str, bytes], volume_id: str, syslinux_cfg: str) -> Path:
    fat = work / "fat.img"
    size_kib = FAT_SIZE_MIB * 1024
    run(
        [
            "mkfs.fat",
            "-F",
            "16",
            "-n",
            FAT_LABEL,
            "-i",
            volume_id,
            "-h",
            str(PART_START_LBA),
            "-C",
            str(fat),
            str(size_kib),
        ]
    )
    staging = work / "fat-files"
    dirs = sorted({str(Path(p).parent) for p in files if "/" in p} | {"syslinux"})
    for d in dirs:
        run(["mmd", "-i", str(fat), f"::/{d}"])
    for rel, data in files.items():
        src = staging / rel
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_bytes(data)
        run(["mcopy", "-i", str(fat), "-o", str(src), f"::/{rel}"])
    cfg = staging / "syslinux.cfg"
    cfg.write_text(syslinux_cfg)
    run(["mcopy", "-i", str(fat), "-o", str(cfg), "::/syslinux/syslinux.cfg"])
    run(["syslinux", "--install", "--directory", "/syslinux", str(fat)])
    return fat


def find_mbr() -> Path:
    for p in ("/usr/lib/syslinux/mbr/mbr.bin", "/usr/lib/SYSLINUX/mbr.bin", "/usr/share/syslinux/mbr.bin"):
        if Path(p).is_file():
            return Path(p)
    raise BuildError("syslinux mbr.bin not found (install syslinux-common)")


def make_disk(work: Path, fat: Path, disk_sig: int) -> Path:
    mbr = bytearray(find_mbr().read_bytes()[:440].ljust(440, b"\0"))
    sectors = fat.stat().st_size // SECTOR
    mbr += struct.pack("<IH", disk_sig, 0)
    # One active partition, type 0x0e (FAT16, LBA); CHS fields saturated.
    entry = struct.pack("<B3sB3sII", 0x80, b"\xfe\xff\xff", 0x0E, b"\xfe\xff\xff", PART_START_LBA, sectors)
    mbr += entry + b"\0" * 48 + b"\x55\xaa"
    raw = work / "disk.raw"
    with raw.open("wb") as out:
        out.write(mbr)
        out.write(b"\0" * (PART_START_LBA * SECTOR - len(mbr)))
        with fat.open("rb") as f:
            shutil.copyfileobj(f, out, 1 << 20)
    return raw


# --------------------------------------------------------------------------
# main


def build(args: argparse.Namespace) -> dict[str, object]:
    t0 = time.monotonic()
    knobs = parse_knobs(args.http_url, args.udp_port, args.require_snd, args.guest_arg)
    out: Path = args.out.resolve()
    cache: Path = args.cache.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)

    with locked(cache / ".lock"):
        fetched = fetch(cache, args.mirror, args.suite, args.keyring, args.refresh)
        t_fetch = time.monotonic() - t0
        log(
            f"packages ready in {t_fetch:.1f}s (index {fetched.index}, downloaded {len(fetched.downloaded)},"
            f" extracted {len(fetched.extracted)})"
        )
        ktree = fetched.trees[fetched.kernel_package]
        kconfig = next((ktree / "boot").glob("config-*")).read_text()
        for opt in REQUIRED_KCONFIG:
            if not re.search(rf"^{opt}=[ym]$", kconfig, re.M):
                raise BuildError(f"{fetched.kernel_package}: {opt} is not enabled")
        vmlinuz = next((ktree / "boot").glob("vmlinuz-*")).read_bytes()

        tree = Tree()
        for d in ("dev", "proc", "sys", "tmp", "run", "mnt/blk", "root", "etc/aero", "usr/bin", "usr/sbin"):
            tree.dir(d)
        for link, target in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
            tree.symlink(link, target)
        tree.chardev("dev/console", 5, 1)
        tree.chardev("dev/null", 1, 3, 0o666)
        tree.chardev("dev/ttyS0", 4, 64, 0o660)
        tree.file("usr/bin/busybox", (fetched.trees["busybox-static"] / "usr/bin/busybox").read_bytes(), 0o755)
        tree.symlink("usr/bin/sh", "busybox")
        needed = add_programs(tree, fetched)
        alsa = fetched.trees["libasound2-data"] / "usr/share/alsa"
        for p in sorted(alsa.rglob("*")):
            if p.is_file():
                tree.file(f"usr/share/alsa/{p.relative_to(alsa).as_posix()}", p.read_bytes())
        modules = add_modules(tree, ktree)

    pattern = make_pattern()
    tree.file("usr/share/aero/pattern-1m.bin", pattern)
    tree.file("usr/share/aero/tone.wav", make_tone())
    scripts = {p.name: p.read_bytes() for p in sorted(GUEST_DIR.iterdir()) if p.is_file()}
    for name in GUEST_FILES:
        if name not in scripts:
            raise BuildError(f"{GUEST_DIR / name}: missing")
    tree.file("init", scripts.pop("init"), 0o755)
    for name, data in scripts.items():  # selftest.sh and the parts it sources, the udhcpc script
        tree.file(f"usr/share/aero/{name}", data, 0o755)
    tree.file("etc/aero/modules.base", ("\n".join(modules.base) + "\n").encode())
    tree.file("etc/aero/modules.snd", ("\n".join(modules.snd) + "\n").encode())

    packages = {
        name: {"version": d.version, "arch": d.arch, "sha256": d.sha256, "size": d.size, "filename": d.filename}
        for name, d in sorted(fetched.debs.items())
    }
    ident = hashlib.sha256()
    ident.update(
        json.dumps([BUILDER_VERSION, packages, dataclasses.asdict(knobs), KERNEL_CMDLINE], sort_keys=True).encode()
    )
    ident.update(Path(__file__).read_bytes())
    for p in sorted(GUEST_DIR.iterdir()):
        if p.is_file():
            ident.update(p.name.encode() + b"\0" + p.read_bytes())
    build_id = ident.hexdigest()[:16]
    config = config_text(knobs, build_id, modules.release)
    tree.file("etc/aero/selftest.conf", config.encode())

    manifest: dict[str, object] = {
        "builder_version": BUILDER_VERSION,
        "build_id": build_id,
        "suite": args.suite,
        "mirror": args.mirror,
        "knobs": {
            "http_url": knobs.http_url,
            "udp_port": knobs.udp_port,
            "require_snd": knobs.require_snd,
            "guest_args": list(knobs.guest_args),
            "selftest_args": knobs.guest_words,
        },
        "kernel": {
            "package": fetched.kernel_package,
            "release": modules.release,
            "cmdline": KERNEL_CMDLINE,
            "modules_base": modules.base,
            "modules_snd": modules.snd,
            "builtin": modules.builtin,
        },
        "packages": packages,
        "programs": needed,
    }
    tree.file("etc/aero/manifest.json", (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())

    t1 = time.monotonic()
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    archive = tree.cpio(mtime)
    initrd = compress_initramfs(archive)
    log(f"initramfs: {len(archive) / 1e6:.1f} MB -> {len(initrd) / 1e6:.1f} MB zstd in {time.monotonic() - t1:.1f}s")

    syslinux_cfg = (
        "DEFAULT aero\nPROMPT 0\nTIMEOUT 0\nNOESCAPE 1\n"
        "LABEL aero\n  LINUX /vmlinuz\n  INITRD /initrd.img\n"
        f"  APPEND {KERNEL_CMDLINE}\n"
    )
    fat_files = {
        "vmlinuz": vmlinuz,
        "initrd.img": initrd,
        "aero/selftest.conf": config.encode(),
        "aero/manifest.json": (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode(),
        "aero/ID": (build_id + "\n").encode(),
    }
    work_parent = out.parent
    with tempfile.TemporaryDirectory(prefix=".reference-guest-", dir=work_parent) as tmp:
        work = Path(tmp)
        fat = make_fat(work, fat_files, build_id[:8], syslinux_cfg)
        raw = make_disk(work, fat, int(build_id[8:16], 16))
        tmp_out = work / "out.qcow2"
        run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-c", str(raw), str(tmp_out)])
        shutil.move(str(tmp_out), out)

    image_bytes = out.stat().st_size
    seconds = round(time.monotonic() - t0, 1)
    manifest.update(
        {
            "image": out.name,
            "image_bytes": image_bytes,
            "image_sha256": sha256_file(out),
            "initramfs_bytes": len(initrd),
            "vmlinuz_bytes": len(vmlinuz),
            "build_seconds": seconds,
            "cache": {
                "dir": str(cache),
                "index": fetched.index,
                "downloaded": fetched.downloaded,
                "extracted": fetched.extracted,
                "warm": not fetched.downloaded,
            },
            "built_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        }
    )
    manifest_path = out.with_name(out.name.removesuffix(".qcow2") + ".manifest.json")
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    log(f"{out}: {image_bytes / 1e6:.1f} MB, built in {seconds}s (manifest {manifest_path.name})")
    if image_bytes >= IMAGE_LIMIT_BYTES:
        raise BuildError(f"image is {image_bytes} bytes, over the {IMAGE_LIMIT_BYTES} limit")
    if seconds > BUILD_TIME_TARGET_S:
        log(f"warning: the build took {seconds}s, over the {BUILD_TIME_TARGET_S:.0f}s target")
    return manifest


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Build the Linux reference guest (a qcow2 image) from Debian packages.")
    ap.add_argument("--out", type=Path, default=Path("build/reference-guest.qcow2"), help="output image (qcow2)")
    ap.add_argument("--http-url", default=DEFAULT_HTTP_URL, help="selftest URL baked into the guest")
    ap.add_argument("--udp-port", type=int, default=DEFAULT_UDP_PORT, help="UDP echo port baked into the guest")
    ap.add_argument("--require-snd", action="store_true", help="the guest FAILs virtio-snd without the device")
    ap.add_argument(
        "--guest-arg",
        action="append",
        default=[],
        metavar="'ARG...'",
        help="more selftest flags to bake in (the Windows guest's names, e.g. --guest-arg='--test-input-events'); "
        "repeatable, blank-separated words",
    )
    ap.add_argument(
        "--cache", type=Path, default=Path("build/cache"), help="download/extract cache (default build/cache)"
    )
    ap.add_argument("--refresh", action="store_true", help="refresh the package index even if it is recent")
    ap.add_argument("--mirror", default=os.environ.get("AERO_DEBIAN_MIRROR", DEFAULT_MIRROR), help="Debian mirror")
    ap.add_argument("--suite", default=DEFAULT_SUITE, help=argparse.SUPPRESS)
    ap.add_argument("--keyring", default=DEFAULT_KEYRING, help="keyring that signs the suite")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        build(args)
    except BuildError as exc:
        print(f"reference-guest: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("reference-guest: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
