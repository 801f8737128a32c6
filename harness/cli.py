"""Entry point of ``aero-win7-harness``: subcommand dispatch, ``run`` being the default."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from harness import __version__
from harness.entry import guarded
from harness.errors import ExitCode, UsageError
from harness.logsetup import setup_console
from harness.usage import QuietUsageParser, UsageParser

# name -> module under harness.commands; the first is the default subcommand.
SUBCOMMANDS: dict[str, str] = {
    "run": "harness.commands.run",
    "selfcheck": "harness.commands.selfcheck",
    "provision": "harness.commands.provision",
    "install": "harness.commands.install",
    "matrix": "harness.commands.matrix",
    "merge": "harness.commands.merge",
}
DEFAULT_SUBCOMMAND = "run"


def _load(name: str) -> ModuleType:
    return importlib.import_module(SUBCOMMANDS[name])


def _version_text() -> str:
    from harness.qemu.binary import describe_default_qemu

    return f"aero-win7-harness {__version__}\n{describe_default_qemu()}"


def build_parser(quiet: bool = False) -> argparse.ArgumentParser:
    """``quiet``: a bad argument raises UsageError (for programs checking flags) instead of exiting."""
    kind = QuietUsageParser if quiet else UsageParser
    parser = kind(
        prog="aero-win7-harness",
        allow_abbrev=False,
        description="Boot a prepared Windows 7 virtio test image under QEMU and return a PASS/FAIL verdict.",
        epilog=f"Without a subcommand, '{DEFAULT_SUBCOMMAND}' is assumed: "
        "'aero-win7-harness --disk-image X' means 'aero-win7-harness run --disk-image X'.",
    )
    parser.add_argument("--version", action="store_true", help="print the harness and QEMU versions and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=kind)
    for name in SUBCOMMANDS:
        module = _load(name)
        module.configure(sub.add_parser(name, help=module.HELP, description=module.HELP))
    return parser


def _with_default_subcommand(argv: list[str]) -> list[str]:
    if not argv or argv[0] in SUBCOMMANDS or argv[0] in ("-h", "--help", "--version"):
        return argv
    return [DEFAULT_SUBCOMMAND, *argv]


def _main(args_list: list[str]) -> int:
    if args_list[:1] == ["--version"]:
        print(_version_text(), flush=True)
        return ExitCode.PASS
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
        if args.command is None:
            parser.print_help(sys.stderr)
            print("FAIL: USAGE: no arguments: give --disk-image (run) or a subcommand", flush=True)
            return ExitCode.USAGE
        return int(_load(args.command).execute(args))
    except (SystemExit, UsageError) as refused:
        # A run refused for bad input, by argparse, the options or the checks: the earlier run's
        # reports in the out-dir it names go, so a CI step never reads them as this run's.
        usage = isinstance(refused, UsageError) or refused.code == ExitCode.USAGE
        if usage and args_list[:1] in (["run"], ["selfcheck"]):
            from harness.commands.run import discard_after_refusal

            discard_after_refusal(args_list[1:])
        raise


def main(argv: Sequence[str] | None = None) -> int:
    args_list = _with_default_subcommand(list(sys.argv[1:] if argv is None else argv))
    setup_console("text")
    return guarded(lambda: _main(args_list))


if __name__ == "__main__":
    sys.exit(main())
