"""``aero-win7-harness install``: boot Windows 7 Setup with the test layout and the provisioning ISO."""

from __future__ import annotations

import argparse

from harness.devices import Layout
from harness.errors import InfraError
from harness.install import InstallRequest, create_disk, plan_install, run_vm, steps
from harness.outputs import path_arg
from harness.qemu.accel import choose_accel
from harness.qemu.binary import DEFAULT_QEMU_SYSTEM, probe_qemu
from harness.qemu.cmdline import render

HELP = "start an interactive Windows 7 install in QEMU with the virtio disk, the NIC and the provisioning ISO"


def configure(parser: argparse.ArgumentParser) -> None:
    m = parser.add_argument_group("media")
    m.add_argument("--win7-iso", type=path_arg, required=True, metavar="PATH", help="your Windows 7 installation ISO")
    m.add_argument("--provisioning-iso", type=path_arg, default=None, metavar="PATH",
                   help="the ISO made by 'aero-win7-harness provision' (drivers for Setup, provision.cmd)")
    m.add_argument("--disk-image", type=path_arg, required=True, metavar="PATH",
                   help="the disk Windows is installed onto (attached as virtio-blk)")
    m.add_argument("--create-disk", action="store_true",
                   help="create --disk-image first (qemu-img create -f qcow2); it must not exist")
    m.add_argument("--disk-size-gb", type=int, default=32, metavar="GB",
                   help="size of the disk --create-disk makes (default: %(default)s)")
    q = parser.add_argument_group("QEMU")
    q.add_argument("--qemu-system", default=DEFAULT_QEMU_SYSTEM, metavar="PATH",
                   help="QEMU system emulator, a name on PATH or a path (default: %(default)s)")
    q.add_argument("--qemu-img", default=None, metavar="PATH",
                   help="qemu-img for --create-disk (default: the one beside --qemu-system, else on PATH)")
    q.add_argument("--memory-mb", type=int, default=2048, metavar="MB", help="guest memory (default: %(default)s)")
    q.add_argument("--smp", type=int, default=2, metavar="N", help="guest CPUs (default: %(default)s)")
    q.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                   help="auto: KVM, falling back to TCG when KVM cannot start (default: %(default)s)")
    q.add_argument("--display", default=None, metavar="SPEC",
                   help="QEMU -display value, e.g. gtk, sdl or vnc=127.0.0.1:1 (default: VNC on display :0, "
                        "on 127.0.0.1, or on all addresses inside a container)")
    q.add_argument("--virtio-layout", choices=[layout.value for layout in Layout], default=Layout.CONTRACT.value,
                   help="the virtio devices Setup sees, as in the runs: contract (what the Aero drivers bind) or "
                        "transitional (older drivers) (default: %(default)s)")
    q.add_argument("--virtio-transitional", dest="virtio_layout", action="store_const",
                   const=Layout.TRANSITIONAL.value, help="the same as --virtio-layout transitional")
    q.add_argument("--dry-run", action="store_true", help="print the command(s) and start nothing")
    q.add_argument("qemu_extra", nargs=argparse.REMAINDER, metavar="-- QEMU-ARGS",
                   help="arguments after -- are passed to QEMU last")


def execute(args: argparse.Namespace) -> int:
    extra: list[str] = list(args.qemu_extra)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    accel = args.accel
    if not args.dry_run and accel != "tcg":  # a real launch: KVM only where a probe guest really runs
        accel = choose_accel(accel, probe_qemu(args.qemu_system).path)
    plan = plan_install(InstallRequest(
        win7_iso=args.win7_iso,
        disk_image=args.disk_image,
        create_disk=args.create_disk,
        disk_size_gb=args.disk_size_gb,
        provisioning_iso=args.provisioning_iso,
        memory_mb=args.memory_mb,
        smp=args.smp,
        accel=accel,
        display=args.display,
        qemu_system=args.qemu_system,
        qemu_img=args.qemu_img,
        qemu_extra=tuple(extra),
        layout=Layout(args.virtio_layout),
    ))
    if args.dry_run:
        for argv in (plan.create_disk_argv, plan.qemu_argv):
            if argv is not None:
                print(render(argv), flush=True)
        return 0
    if plan.create_disk_argv is not None:
        create_disk(plan.create_disk_argv)
        print(f"created {args.disk_image} ({args.disk_size_gb} GB, qcow2)", flush=True)
    print("\n".join(steps(plan)), flush=True)
    code = run_vm(plan.qemu_argv)
    if code != 0:
        raise InfraError(f"QEMU exited with code {code}; its messages are above")
    print("The installer VM has stopped.", flush=True)
    return 0
