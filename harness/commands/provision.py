"""``aero-win7-harness provision``: make the provisioning media (ISO and/or folder).

The flags are upstream's generator's (New-AeroWin7TestImage.ps1) in kebab-case; where our name
differs, upstream's is accepted too (``--selftest-exe-path``, ``--require-virtio-net-msix``...).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness import __version__
from harness.logsetup import get_logger
from harness.outputs import path_arg
from harness.provision import layout
from harness.provision.flags import SWITCHES, SelftestOptions
from harness.provision.infs import DEFAULT_INFS, TRANSITIONAL_SND_INF, InfSelection
from harness.provision.iso import check_iso_target, check_tree_target, write_iso, write_tree
from harness.provision.media import build_media
from harness.provision.request import ProvisionRequest, Steps

HELP = "make the provisioning ISO that installs the drivers and the boot-time selftest task in a Windows 7 guest"

log = get_logger("provision")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (1-65535): {text!r}")
    return port


def _content(parser: argparse.ArgumentParser) -> None:
    i = parser.add_argument_group("content")
    i.add_argument("--selftest-exe", "--selftest-exe-path", dest="selftest_exe", type=path_arg, required=True,
                   metavar="PATH", help=f"the guest selftest; lands on the media as {layout.on_media(layout.SELFTEST)}")
    i.add_argument("--drivers-dir", type=path_arg, required=True, metavar="DIR",
                   help="folder of driver packages (INF, SYS, CAT...); copied whole, the chosen INFs are installed")
    i.add_argument("--inf-allow-list", nargs="+", action="extend", default=None, metavar="INF",
                   help="install these INFs, in this order: file names, or paths relative to --drivers-dir when "
                        "a name is not unique (any case); without it: " + ", ".join(DEFAULT_INFS)
                        + f" (and {TRANSITIONAL_SND_INF} with --allow-virtio-snd-transitional), those present")
    i.add_argument("--install-all-infs", action="store_true",
                   help="install every INF under --drivers-dir (sorted by path) instead of a list")


def _baked(parser: argparse.ArgumentParser) -> None:
    s = parser.add_argument_group("baked into the boot-time selftest task (each bakes the selftest flag of its name)")
    s.add_argument("--http-url", default=layout.DEFAULT_HTTP_URL, metavar="URL",
                   help="the URL the guest tests networking against (default: %(default)s)")
    s.add_argument("--dns-host", default=layout.DEFAULT_DNS_HOST, metavar="NAME",
                   help="the host name the guest resolves (default: %(default)s)")
    s.add_argument("--udp-port", type=_port, default=None, metavar="PORT",
                   help="UDP echo port on the host (default: not passed, the selftest's own 18081; older "
                        "selftests do not know the flag)")
    s.add_argument("--blk-root", default=None, metavar="WINPATH",
                   help=r"folder on the virtio disk for the disk test, e.g. 'D:\aero-virtio-selftest\'")
    for switch in SWITCHES:
        s.add_argument(switch.flag, *switch.upstream, dest=switch.field, action="store_true", help=switch.help)


def _steps(parser: argparse.ArgumentParser) -> None:
    p = parser.add_argument_group("provisioning steps")
    p.add_argument("--enable-test-signing", action="store_true",
                   help="run 'bcdedit /set testsigning on' (for test-signed drivers on 64-bit Windows 7)")
    p.add_argument("--enable-virtio-input-compat-id-name", "--virtio-input-compat-id-name",
                   "--enable-virtio-input-compat", dest="enable_virtio_input_compat_id_name", action="store_true",
                   help="set CompatIdName=1 (REG_DWORD) under " + layout.VIRTIO_INPUT_PARAMETERS
                        + " so the virtio-input driver accepts QEMU's device names; provisioning fails if it cannot")
    p.add_argument("--auto-reboot", action="store_true", help="reboot the guest when provisioning is done")


def configure(parser: argparse.ArgumentParser) -> None:
    _content(parser)
    _baked(parser)
    _steps(parser)
    o = parser.add_argument_group("output (without either, the ISO goes to ./" + layout.DEFAULT_ISO_NAME + ")")
    o.add_argument("--output-iso", "--output-iso-path", dest="output_iso", type=path_arg, default=None, metavar="PATH",
                   help="write the media as an ISO here")
    o.add_argument("--output-dir", type=path_arg, default=None, metavar="DIR",
                   help="write the media as plain files here (empty or earlier media)")


def _request(args: argparse.Namespace) -> ProvisionRequest:
    options = SelftestOptions(http_url=args.http_url, dns_host=args.dns_host, udp_port=args.udp_port,
                              blk_root=args.blk_root, **{s.field: getattr(args, s.field) for s in SWITCHES})
    allow_list: list[str] | None = args.inf_allow_list
    steps = Steps(enable_test_signing=args.enable_test_signing, auto_reboot=args.auto_reboot,
                  enable_virtio_input_compat_id_name=args.enable_virtio_input_compat_id_name,
                  inf_allow_list=None if allow_list is None else tuple(allow_list),
                  install_all_infs=args.install_all_infs)
    return ProvisionRequest(args.selftest_exe, args.drivers_dir, options, steps)


def _tell(infs: InfSelection) -> None:
    log.info("installing %d INF(s) from %s: %s", len(infs.selected), infs.source,
             ", ".join(str(p) for p in infs.selected))
    for name in infs.missing_defaults:
        log.warning("%s of the default INF list is not under --drivers-dir; it is skipped", name)
    if infs.not_selected:
        log.warning("not installed (not in %s): %s", infs.source, ", ".join(str(p) for p in infs.not_selected))


def execute(args: argparse.Namespace) -> int:
    output_iso: Path | None = args.output_iso
    if output_iso is None and args.output_dir is None:
        output_iso = Path(layout.DEFAULT_ISO_NAME)
    plan = build_media(_request(args), __version__)
    if args.output_dir is not None:
        check_tree_target(args.output_dir)
    if output_iso is not None:
        check_iso_target(output_iso)
    _tell(plan.infs)
    if plan.task.route == "xml":
        log.info("the task's command line is %d characters, more than schtasks /TR takes: the task is made from %s",
                 len(plan.task.command_line), layout.on_media(layout.TASK_XML))
    if args.output_dir is not None:
        write_tree(plan.media, args.output_dir)
        print(f"provisioning media written to {args.output_dir}", flush=True)
    if output_iso is not None:
        write_iso(plan.media, output_iso)
        print(f"provisioning ISO written to {output_iso}", flush=True)
    print(f"in the guest, run {layout.on_media(layout.SCRIPT)} from the media as administrator", flush=True)
    return 0
