"""``aero-win7-harness provision``: make the provisioning media (ISO and/or folder)."""

from __future__ import annotations

import argparse
from pathlib import Path
from urllib.parse import urlsplit

from harness import __version__
from harness.errors import UsageError
from harness.provision import layout
from harness.provision.iso import write_iso, write_tree
from harness.provision.media import ProvisionRequest, build_media
from harness.provision.quoting import check_text
from harness.provision.script import SelftestFlags

HELP = "make the provisioning ISO that installs the drivers and the boot-time selftest task in a Windows 7 guest"


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (1-65535): {text!r}")
    return port


def configure(parser: argparse.ArgumentParser) -> None:
    i = parser.add_argument_group("content")
    i.add_argument("--selftest-exe", type=Path, required=True, metavar="PATH",
                   help=f"the guest selftest; lands on the media as {layout.on_media(layout.SELFTEST)}")
    i.add_argument("--drivers-dir", type=Path, required=True, metavar="DIR",
                   help="folder of driver packages (INF, SYS, CAT...); copied as is, every .inf is installed")
    s = parser.add_argument_group("baked into the boot-time selftest task")
    s.add_argument("--http-url", default=layout.DEFAULT_HTTP_URL, metavar="URL",
                   help="the URL the guest tests networking against (default: %(default)s)")
    s.add_argument("--udp-port", type=_port, default=None, metavar="PORT",
                   help="UDP echo port on the host (default: the selftest's own)")
    s.add_argument("--blk-root", default=None, metavar="WINPATH",
                   help=r"folder on the virtio disk for the disk test, e.g. 'D:\aero-virtio-selftest\'")
    s.add_argument("--require-snd", action="store_true", help="make the selftest fail when virtio-snd does not pass")
    p = parser.add_argument_group("provisioning steps")
    p.add_argument("--enable-test-signing", action="store_true",
                   help="run 'bcdedit /set testsigning on' (for test-signed drivers on 64-bit Windows 7)")
    p.add_argument("--auto-reboot", action="store_true", help="reboot the guest when provisioning is done")
    o = parser.add_argument_group("output (without either, the ISO goes to ./" + layout.DEFAULT_ISO_NAME + ")")
    o.add_argument("--output-iso", type=Path, default=None, metavar="PATH", help="write the media as an ISO here")
    o.add_argument("--output-dir", type=Path, default=None, metavar="DIR",
                   help="write the media as plain files here (empty or earlier media)")


def _check_url(text: str) -> None:
    try:
        url = urlsplit(text)
        ok = url.scheme in ("http", "https") and bool(url.hostname) and (url.port is None or url.port > 0)
    except ValueError:  # an unclosed [, or a port that is not a port number
        ok = False
    if not ok or any(ch.isspace() for ch in text):
        raise UsageError(f"--http-url is not an http:// URL: {text!r}")


def _flags(args: argparse.Namespace) -> SelftestFlags:
    _check_url(args.http_url)
    blk_root: str | None = args.blk_root
    if blk_root is not None and (not blk_root.strip() or '"' in blk_root):
        raise UsageError(f"--blk-root is not a Windows path: {blk_root!r}")
    for option, value in (("--http-url", args.http_url), ("--blk-root", blk_root or "")):
        try:
            check_text(value, option)
        except ValueError as err:
            raise UsageError(str(err)) from err
    return SelftestFlags(http_url=args.http_url, udp_port=args.udp_port, blk_root=blk_root,
                         require_snd=args.require_snd)


def execute(args: argparse.Namespace) -> int:
    request = ProvisionRequest(
        selftest_exe=args.selftest_exe,
        drivers_dir=args.drivers_dir,
        flags=_flags(args),
        enable_test_signing=args.enable_test_signing,
        auto_reboot=args.auto_reboot,
    )
    media = build_media(request, __version__)
    output_iso: Path | None = args.output_iso
    if output_iso is None and args.output_dir is None:
        output_iso = Path(layout.DEFAULT_ISO_NAME)
    if args.output_dir is not None:
        write_tree(media, args.output_dir)
        print(f"provisioning media written to {args.output_dir}", flush=True)
    if output_iso is not None:
        write_iso(media, output_iso)
        print(f"provisioning ISO written to {output_iso}", flush=True)
    print(f"in the guest, run {layout.on_media(layout.SCRIPT)} from the media as administrator", flush=True)
    return 0
