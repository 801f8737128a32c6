"""Entry point of ``aero-win7-docker``: the harness's run flags with host paths, run in Docker.

    aero-win7-docker [LAUNCHER OPTIONS] [run] --disk-image ./win7.qcow2 [RUN FLAGS] [-- QEMU ARGS]
    aero-win7-docker [LAUNCHER OPTIONS] selfcheck [RUN FLAGS]

The disk image's folder is mounted read-only at /images, the output folder (--out-dir, default
./out) read-write at /out; the container runs as the caller's uid:gid, or as the image's own
non-root user when the caller is root (the output folder is lent to it for the run).

Order: every check of the input that needs no engine; then the output folder is opened once
(``outdir``: everything after goes through that descriptor) and the launcher's lock taken on it
(``outlock``), from which on the folder is changed: the previous run's reports go, then
``launcher.log`` is written, then a root caller's folder is lent (``ownership``); then the engine,
whose bind mount of the folder's path is checked against the descriptor before and after.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath

from harness import __version__
from harness.commands.run import add_run_options
from harness.commands.selfcheck import DEFAULT_TIMEOUT_S as SELFCHECK_TIMEOUT_S
from harness.entry import guarded
from harness.errors import HarnessError, UsageError
from harness.launcher import kvm, loans, mounts, outdir, outlock, ownership
from harness.launcher.container import ContainerSpec, run_container
from harness.launcher.engine import connect
from harness.launcher.ownership import IMAGE_USER, LAUNCHER_LOG
from harness.launcher.retry import RetryPolicy
from harness.logsetup import add_file_log, get_logger, remove_handler, setup_console
from harness.outputs import discard_reports
from harness.qemu.binary import DEFAULT_QEMU_SYSTEM
from harness.usage import UsageParser

DEFAULT_IMAGE = "aero-win7-harness:latest"
SUBCOMMANDS = ("run", "selfcheck")
log = get_logger("launcher")


def _launcher_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("launcher (host side)")
    g.add_argument("--image", default=os.environ.get("AERO_WIN7_IMAGE") or DEFAULT_IMAGE,
                   help="the harness image (default: $AERO_WIN7_IMAGE or %(default)s)")
    g.add_argument("--network", default="none", metavar="MODE",
                   help="container network; the guest's services run inside the container, so none is "
                        "needed (default: %(default)s)")
    g.add_argument("--engine-attempts", type=int, default=5, metavar="N",
                   help="tries of each Docker engine call on transient failures (default: %(default)s)")
    g.add_argument("--engine-backoff", type=float, default=0.5, metavar="S",
                   help="first wait between tries, doubling up to 8 s (default: %(default)s)")
    g.add_argument("--engine-timeout", type=float, default=60.0, metavar="S",
                   help="timeout of one Docker engine request (default: %(default)s)")


def build_parser(subcommand: str) -> argparse.ArgumentParser:
    parser = UsageParser(prog=f"aero-win7-docker {subcommand}" if subcommand != "run" else "aero-win7-docker",
                     allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"aero-win7-docker {__version__}")
    _launcher_options(parser)
    add_run_options(parser, disk_required=subcommand == "run")
    if subcommand == "selfcheck":  # the same defaults as the harness's selfcheck, so none is lost
        parser.set_defaults(timeout_seconds=SELFCHECK_TIMEOUT_S)
    return parser


def _split_subcommand(argv: list[str]) -> tuple[str, list[str]]:
    """The subcommand, wherever it stands among the options (a flag's value is never taken for it)."""
    takes_value = {option for action in build_parser("run")._actions if action.nargs != 0
                   for option in action.option_strings}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            break
        if arg in SUBCOMMANDS:
            return arg, argv[:i] + argv[i + 1:]
        i += 2 if arg in takes_value else 1
    return "run", argv


def harness_argv(parser: argparse.ArgumentParser, args: argparse.Namespace,
                 paths: dict[str, PurePosixPath]) -> list[str]:
    """The run flags again, for the harness in the container: host paths replaced by container
    paths, launcher options left out, defaults not repeated."""
    launcher_dests = {a.dest for g in parser._action_groups if g.title == "launcher (host side)"
                      for a in g._group_actions}
    argv: list[str] = []
    seen: set[str] = set()  # a dest two options share (--virtio-layout and --virtio-transitional) goes once
    for action in parser._actions:
        if not action.option_strings or action.dest in launcher_dests or action.dest in seen or \
                action.dest in ("help", "version", "stop_on_stdin_eof"):
            continue
        option = action.option_strings[0]
        if action.dest in paths:
            argv += [option, str(paths[action.dest])]
            seen.add(action.dest)
            continue
        value = getattr(args, action.dest)
        if value == parser.get_default(action.dest):  # the dest's default (two options may share it)
            continue
        seen.add(action.dest)
        argv += [option] if action.nargs == 0 else [option, str(value)]
    extra = list(args.qemu_extra or [])
    if extra[:1] == ["--"]:
        extra = extra[1:]
    return argv + (["--", *extra] if extra else [])


def launch(argv: list[str]) -> int:
    subcommand, rest = _split_subcommand(argv)
    parser = build_parser(subcommand)
    args = parser.parse_args(rest)
    if args.qemu_system != DEFAULT_QEMU_SYSTEM:
        raise UsageError("--qemu-system does not apply: the container brings its own QEMU "
                         "(pass an image with another QEMU through --image)")
    as_root = os.getuid() == 0
    plan, paths = mounts.plan_run(parser, args, top_only=as_root)  # usage errors come before the engine is asked
    out = mounts.out_host(plan)
    uid, gid = IMAGE_USER if as_root else (os.getuid(), os.getgid())
    if as_root:
        mounts.check_image_readable(plan, paths, (uid, gid))
    records = loans.records() if as_root else None  # root's own state folder, before the output folder changes
    disk = args.disk_image.resolve() if args.disk_image is not None else None
    with outdir.pinned(out) as folder:  # from here on the folder itself, whatever becomes of its path
        lendable = (lambda: ownership.check_lendable(folder, mounts.run_names(paths), keep=disk)) if as_root else None
        with outlock.hold(folder, check=lendable) as lock:  # a second launcher stops here, having changed nothing
            # A previous run's verdict (results.json, junit.xml, report.html) must not outlive a run that
            # ends before the harness writes its own (an engine that never answers, an image it lacks).
            removed = discard_reports(out, dir_fd=folder.fd)
            try:
                file_log = add_file_log(folder.via_fd / LAUNCHER_LOG)
            except OSError as err:
                raise UsageError(f"cannot write {out / LAUNCHER_LOG}: {err.strerror}") from err
            try:
                if removed:
                    log.info("removed the previous run's reports: %s", ", ".join(removed),
                             extra={"removed": removed})
                loan = ownership.lend(folder, lock, (uid, gid), records) if as_root else None
                try:
                    return _run(parser, args, subcommand, paths, plan, f"{uid}:{gid}", folder.verify)
                finally:
                    if loan is not None:
                        loan.give_back()
            except HarnessError as err:  # printed once, on stdout, by guarded(); the file log keeps it with its token
                log.debug("%s", err.verdict_line(), extra={"token": err.token, "exit_code": int(err.exit_code)})
                raise
            finally:
                remove_handler(file_log)


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace, subcommand: str,
         paths: dict[str, PurePosixPath], plan: mounts.MountPlan, user: str, verify: Callable[[str], None]) -> int:
    policy = RetryPolicy(attempts=args.engine_attempts, backoff_s=args.engine_backoff)
    client = connect(policy, args.engine_timeout)
    try:
        passthrough = kvm.decide(args.accel, probe_in_image=kvm.image_prober(client, args.image))
        kvm.log_decision(passthrough)
        spec = ContainerSpec(
            image=args.image,
            command=[subcommand, "--stop-on-stdin-eof", *harness_argv(parser, args, paths)],
            user=user,
            mounts=plan.docker_mounts(),
            devices=passthrough.devices,
            group_add=passthrough.group_add,
            network_mode=args.network,
            environment={"AERO_OUT_DIR": str(mounts.OUT_DIR), "HOME": "/tmp"},
        )
        return run_container(client, spec, policy, verify=verify)
    finally:
        client.close()


def main(argv: Sequence[str] | None = None) -> int:
    setup_console("json")
    return guarded(lambda: launch(list(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    sys.exit(main())
