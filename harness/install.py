"""Windows 7 Setup under QEMU: the disk, the VM's command line, the user's steps, the launch.

The VM has the disk and NIC of the layout the tests use (contract by default: the modern-only
virtio-blk disk and virtio-net NIC the Aero drivers bind; the device modules build their arguments,
so an image installed here boots in the runs), plus two IDE CD-ROMs: the user's Windows 7 ISO
(booted first, while the disk is empty) and the provisioning ISO (``aero-win7-harness provision``)
that holds the storage driver Setup needs to see the disk. As upstream's installer, it attaches no
virtio keyboard or mouse: Setup has no driver for them, and bound to the display they would take
its keyboard and mouse input; Setup is driven with the PS/2 keyboard and the USB tablet instead.
Setup is interactive, so the display defaults to VNC; inside a container VNC listens on all the
container's addresses so that a published port reaches it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Literal

from harness.devices import Board, Layout
from harness.devices.base import DISPLAY
from harness.devices.blk import Blk
from harness.devices.net import Net
from harness.disk import GuestDisk, WriteMode
from harness.errors import InfraError, InterruptedRun, UsageError
from harness.netns import in_container
from harness.provision import layout
from harness.qemu.binary import image_info, probe_qemu, qemu_img_for, resolve_executable
from harness.qemu.capabilities import capabilities
from harness.qemu.cmdline import opts, render

AccelChoice = Literal["auto", "kvm", "tcg"]

REQUIRED_DEVICES = ("virtio-blk-pci", "virtio-net-pci", "ide-cd", "usb-tablet")
VNC_BASE_PORT = 5900
_ISO_SIGNATURE_OFFSET = 0x8001  # first volume descriptor's identifier
_ISO_SIGNATURES = (b"CD001", b"BEA01")  # ISO 9660, or a UDF volume recognition sequence
_VNC = re.compile(r"vnc=(?P<host>[^:,]*):(?P<display>\d+)")
_STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class InstallRequest:
    win7_iso: Path
    disk_image: Path
    create_disk: bool = False
    disk_size_gb: int = 32
    provisioning_iso: Path | None = None
    memory_mb: int = 2048
    smp: int = 2
    accel: AccelChoice = "auto"
    display: str | None = None  # QEMU's -display value; None: VNC (see default_display)
    qemu_system: str = "qemu-system-x86_64"
    qemu_img: str | None = None  # None: the qemu-img beside --qemu-system, else on PATH
    qemu_extra: tuple[str, ...] = ()
    layout: Layout = Layout.CONTRACT


@dataclass(frozen=True)
class InstallPlan:
    request: InstallRequest
    create_disk_argv: list[str] | None
    qemu_argv: list[str]
    display: str


def default_display() -> str:
    """VNC display :0, on loopback; on all addresses inside a container (publish the port)."""
    return f"vnc={'0.0.0.0' if in_container() else '127.0.0.1'}:0"


def _check_iso(path: Path, option: str) -> Path:
    if not path.is_file():
        raise UsageError(f"{option} is not a file: {path}")
    try:
        with path.open("rb") as iso:
            iso.seek(_ISO_SIGNATURE_OFFSET)
            signature = iso.read(5)
    except OSError as err:
        raise UsageError(f"{option} cannot be read: {path}: {err.strerror}") from err
    if signature not in _ISO_SIGNATURES:
        raise UsageError(f"{option} is not an ISO image (no ISO 9660 or UDF volume): {path}")
    return path


def _check_disk(request: InstallRequest, qemu_img: str) -> str:
    """The disk's format; for --create-disk, that the file can be made."""
    disk = request.disk_image
    if request.create_disk:
        if disk.exists():
            raise UsageError(f"--disk-image already exists: {disk} (drop --create-disk to install onto it)")
        if not disk.parent.is_dir():
            raise UsageError(f"the folder of --disk-image does not exist: {disk.parent}")
        return "qcow2"
    if not disk.is_file():
        raise UsageError(f"--disk-image is not a file: {disk} (add --create-disk to make a new one)")
    if not os.access(disk, os.R_OK | os.W_OK):
        raise UsageError(f"--disk-image must be readable and writable for Setup: {disk}")
    fmt = str(image_info(qemu_img, disk).get("format", ""))
    if not fmt:
        raise UsageError(f"qemu-img cannot tell the format of --disk-image: {disk}")
    return fmt


def _accel_args(accel: AccelChoice) -> list[str]:
    # auto (only in --dry-run, where nothing is probed): QEMU's own fallback order.
    names = ["kvm", "tcg"] if accel == "auto" else [accel]
    return [arg for name in names for arg in ("-accel", name)]


def _qemu_argv(qemu: str, request: InstallRequest, disk_format: str, display: str) -> list[str]:
    board = Board(layout=request.layout, caps=capabilities(qemu), out_dir=Path("."),
                  disk=GuestDisk(request.disk_image, disk_format, snapshot=False, mode=WriteMode.IN_PLACE))
    devices = [Blk(bootindex=1), Net()]  # Setup boots the CD first, then the installed disk
    argv = [
        qemu, "-name", "aero-win7-install", "-machine", "pc", *_accel_args(request.accel),
        "-m", str(request.memory_mb), "-smp", str(request.smp), "-rtc", "base=localtime",
        "-vga", "none", "-device", opts("VGA", id=DISPLAY),  # the runs' primary display
        *[arg for device in devices if device.attached(board) for arg in device.qemu_args(board, {})],
        "-drive", opts(None, {"if": "none", "id": "win7-setup", "media": "cdrom", "readonly": True,
                              "format": "raw", "file": request.win7_iso}),
        "-device", opts("ide-cd", {"drive": "win7-setup", "bus": "ide.0", "unit": 0, "bootindex": 0}),
    ]
    if request.provisioning_iso is not None:
        argv += [
            "-drive", opts(None, {"if": "none", "id": "aero-provisioning", "media": "cdrom", "readonly": True,
                                  "format": "raw", "file": request.provisioning_iso}),
            "-device", opts("ide-cd", {"drive": "aero-provisioning", "bus": "ide.1", "unit": 0}),
        ]
    argv += [
        "-usb", "-device", "usb-tablet",
        "-display", display,
        *request.qemu_extra,
    ]
    return argv


def plan_install(request: InstallRequest) -> InstallPlan:
    """Check everything and build the commands; nothing is created or started (UsageError on bad input)."""
    for value, what, low in ((request.memory_mb, "--memory-mb", 256), (request.smp, "--smp", 1),
                             (request.disk_size_gb, "--disk-size-gb", 1)):
        if value < low:
            raise UsageError(f"{what} must be at least {low}: {value}")
    _check_iso(request.win7_iso, "--win7-iso")
    if request.provisioning_iso is not None:
        _check_iso(request.provisioning_iso, "--provisioning-iso")
    qemu = probe_qemu(request.qemu_system)
    missing = [name for name in REQUIRED_DEVICES if not qemu.has_device(name)]
    if missing:
        raise UsageError(f"{qemu.path} lacks the device(s) {', '.join(missing)}")
    qemu_img = resolve_executable(request.qemu_img, "qemu-img") if request.qemu_img else qemu_img_for(qemu.path)
    disk_format = _check_disk(request, qemu_img)
    display = request.display or default_display()
    create = None
    if request.create_disk:
        create = [qemu_img, "create", "-f", "qcow2", str(request.disk_image), f"{request.disk_size_gb}G"]
    return InstallPlan(request, create, _qemu_argv(qemu.path, request, disk_format, display), display)


def steps(plan: InstallPlan) -> list[str]:
    """What the user does once the VM is up."""
    vnc = _VNC.fullmatch(plan.display.split(",")[0]) if plan.display.startswith("vnc=") else None
    if vnc is not None:
        host = vnc["host"] or "0.0.0.0"
        port = VNC_BASE_PORT + int(vnc["display"])
        lines = [f"Windows Setup runs in QEMU; watch it with a VNC viewer on {host}:{port}."]
        if host not in ("127.0.0.1", "localhost", "::1"):
            lines.append(f"(In a container, publish the port: docker run -p 127.0.0.1:{port}:{port} ...; "
                         f"then connect to 127.0.0.1:{port}.)")
    else:
        lines = [f"Windows Setup runs in QEMU (display: {plan.display})."]
    script = layout.on_media(layout.SCRIPT)
    drivers = layout.on_media(layout.DRIVERS)
    if plan.request.provisioning_iso is None:
        lines.append("Warning: no --provisioning-iso; Setup sees the virtio disk only with its driver "
                     "(make the ISO with 'aero-win7-harness provision').")
    run = render(["aero-win7-harness", "run", "--disk-image", str(plan.request.disk_image), "--snapshot",
                  *(["--virtio-transitional"] if plan.request.layout is Layout.TRANSITIONAL else [])])
    storage = ("aero_virtio_blk.inf (the Aero virtio-blk driver, PCI\\VEN_1AF4&DEV_1042&REV_01)"
               if plan.request.layout is Layout.CONTRACT else "the virtio storage driver of your older driver set "
               "(the transitional layout's disk is PCI\\VEN_1AF4&DEV_1001)")
    lines += [
        "Steps:",
        "  1. In Setup choose Custom install. No disk is listed: click 'Load driver', browse the provisioning CD "
        f"to {drivers} and pick {storage} for your Windows 7 edition; the disk appears.",
        "  2. Install Windows onto that disk and finish Setup.",
        f"  3. In Windows, run {script} from the provisioning CD as administrator "
        f"(it logs to {layout.GUEST_LOG}).",
        "  4. Reboot (provision.cmd does it when made with --auto-reboot), let Windows come up, then shut it down.",
        f"  5. Run the tests: {run}",
    ]
    return lines


def create_disk(argv: list[str]) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as err:
        raise UsageError(f"qemu-img could not be run ({argv[0]}): {err}") from err
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        raise UsageError(f"cannot create the disk image: {reason}")


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise InterruptedRun(f"stopped by {signal.Signals(signum).name}")


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_vm(argv: list[str]) -> int:
    """Run QEMU in the foreground until the user closes the VM; stop it cleanly on SIGINT/SIGTERM."""
    with _sigterm_interrupts():
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        except OSError as err:
            raise InfraError(f"QEMU could not be started ({argv[0]}): {err}") from err
        try:
            return proc.wait()
        except BaseException:
            proc.terminate()  # QEMU shuts down cleanly on SIGTERM
            try:
                proc.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
