"""``aero-win7-harness matrix``: fleet runs described by a matrix file (``harness.fleet``).

    matrix validate FILE                       check it; nothing starts
    matrix list FILE [--format table|json|github] [--job-timeout-minutes MIN]
    matrix run FILE [--jobs N] [--out-dir DIR] [--case NAME]... [--image IMAGE]
    matrix k8s FILE [--name NAME] [--image IMAGE] [--images-claim C] [--out-claim C] [--kvm-group GID] [--merge-job]
    matrix exec CASES.json [--index N] --out-dir DIR|--out-root DIR [--require-kvm]
                                               (inside a pod: run one case of the list)

Heavy imports (YAML, JSON Schema, Docker) happen in ``execute``: every run of the harness builds
this parser.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.errors import ExitCode

HELP = "check, list, run (locally, N at a time), or render for Kubernetes a matrix file of cases"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a whole number of at least 1: {text!r}")
    return value


def _index(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a completion index (0, 1, ...): {text!r}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="matrix_command", metavar="ACTION", required=True, parser_class=type(parser))

    validate = sub.add_parser("validate", help="check the file (schema, names, flags); nothing starts")
    validate.add_argument("file", type=Path, metavar="FILE")

    listing = sub.add_parser("list", help="the expanded cases")
    listing.add_argument("file", type=Path, metavar="FILE")
    listing.add_argument("--format", choices=("table", "json", "github"), default="table",
                         help="table: for people; json: a JSON array of the cases on one line (for CI engines); "
                              "github: 'cases=<json>', 'parallelism=N' and 'timeout_minutes=N' lines for "
                              "$GITHUB_OUTPUT "
                              "(default: %(default)s)")
    listing.add_argument("--case", action="append", default=[], metavar="NAME", help="only this case (repeatable)")
    listing.add_argument("--job-timeout-minutes", type=_positive, default=None, metavar="MIN",
                         help="with --format github: the 'timeout_minutes=' line, the case jobs' "
                              "timeout-minutes (default: the longest case's timeout, rounded up to minutes, plus 30: "
                              "installing the harness and building its image)")

    run = sub.add_parser("run", help="run the cases here, each in the harness's container (aero-win7-docker), "
                                     "N at a time, then merge them")
    run.add_argument("file", type=Path, metavar="FILE")
    run.add_argument("--jobs", "-j", type=_positive, default=None, metavar="N",
                     help="cases at once (default: half the available cores, at least 1)")
    run.add_argument("--out-dir", type=Path, default=None, metavar="DIR",
                     help="each case in DIR/<case>, the merge in DIR (default: ./out/matrix)")
    run.add_argument("--case", action="append", default=[], metavar="NAME", help="only this case (repeatable)")
    run.add_argument("--image", default=None, metavar="IMAGE",
                     help="the harness image for every case (default: the case's harness_image, else "
                          "$AERO_WIN7_IMAGE, else aero-win7-harness:latest)")

    k8s = sub.add_parser("k8s", help="print the Kubernetes manifests (ConfigMap, NetworkPolicy, Indexed Job)")
    k8s.add_argument("file", type=Path, metavar="FILE")
    k8s.add_argument("--name", default="aero-win7-fleet", help="the Job's name, prefix of the others (default: "
                                                                "%(default)s)")
    k8s.add_argument("--namespace", default=None, help="metadata.namespace (default: none, kubectl's)")
    k8s.add_argument("--image", default=None, metavar="IMAGE",
                     help="the harness image the pods run (default: aero-win7-harness:<this version>)")
    k8s.add_argument("--images-claim", default="aero-win7-images", metavar="CLAIM",
                     help="PersistentVolumeClaim of the disk images, mounted read-only at /images "
                          "(default: %(default)s)")
    k8s.add_argument("--images-root", type=Path, default=None, metavar="DIR",
                     help="the folder whose content that volume holds: a case's image DIR/x.qcow2 is "
                          "/images/x.qcow2 in the pod (default: the matrix file's folder)")
    k8s.add_argument("--out-claim", default="aero-win7-out", metavar="CLAIM",
                     help="PersistentVolumeClaim shared by the pods, mounted at /out: index I makes and writes "
                          "case-I/, so its root must be writable by uid 10001 (default: %(default)s)")
    k8s.add_argument("--kvm-group", type=_positive, default=None, metavar="GID",
                     help="the nodes' /dev/kvm group, added to the pods' supplementalGroups: needed where /dev/kvm "
                          "is 0660 and the container runtime keeps the node's owner (see deploy/kubernetes/README.md)")
    k8s.add_argument("--merge-job", action="store_true",
                     help="print the Job that merges the out volume instead (apply it once the matrix Job ended)")

    run_one = sub.add_parser("exec", help="run one case of a cases.json (matrix list --format json) in this "
                                          "process's place: what a Kubernetes pod runs")
    run_one.add_argument("cases", type=Path, metavar="CASES.json")
    run_one.add_argument("--index", type=_index, default=None, metavar="N",
                         help="which case (default: $JOB_COMPLETION_INDEX)")
    where = run_one.add_mutually_exclusive_group(required=True)
    where.add_argument("--out-dir", type=Path, default=None, metavar="DIR", help="the case's out dir")
    where.add_argument("--out-root", type=Path, default=None, metavar="DIR",
                       help="a shared out volume: the case writes DIR/case-<index>, which this process creates")
    run_one.add_argument("--network-isolation", choices=("auto", "on", "off"), default=None,
                         help="passed to the harness after the case's flags")
    run_one.add_argument("--require-kvm", action="store_true",
                         help="the pod was given /dev/kvm: end with INFRA, saying why, when this user cannot "
                              "open it (instead of a silent run under TCG)")


def _validate(args: argparse.Namespace) -> int:
    from harness.fleet.expand import load_matrix

    matrix = load_matrix(args.file)
    kinds = sum(1 for c in matrix.cases if c.selfcheck)
    print(f"PASS: {args.file}: {len(matrix.cases)} case(s) ({kinds} selfcheck), parallelism {matrix.parallelism}",
          flush=True)
    return ExitCode.PASS


def _table(cases: list) -> str:  # type: ignore[type-arg]
    import shlex

    rows = [("case", "kind", "image", "timeout", "runner", "flags")]
    rows += [(c.name, c.subcommand, str(c.image or "(reference guest)"), f"{c.timeout_s:g} s", ",".join(c.runner),
              shlex.join(c.all_flags())) for c in cases]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join("  ".join(cell.ljust(widths[i]) if i < 5 else cell for i, cell in enumerate(row)).rstrip()
                     for row in rows) + "\n"


def _list(args: argparse.Namespace) -> int:
    from harness.fleet.expand import load_matrix

    matrix = load_matrix(args.file)
    cases = matrix.select(args.case)
    data = json.dumps([case.to_json() for case in cases], separators=(",", ":"))
    if args.format == "json":
        sys.stdout.write(data + "\n")
    elif args.format == "github":
        from harness.fleet.case import job_timeout_minutes

        minutes = args.job_timeout_minutes or job_timeout_minutes(cases)
        sys.stdout.write(f"cases={data}\nparallelism={matrix.parallelism}\ntimeout_minutes={minutes}\n")
    else:
        sys.stdout.write(_table(cases))
    sys.stdout.flush()
    return ExitCode.PASS


def _run(args: argparse.Namespace) -> int:
    from harness.fleet.expand import load_matrix
    from harness.fleet.local import DEFAULT_OUT, LocalRun, check_harness_images, check_images, default_jobs
    from harness.fleet.merge import console_lines

    matrix = load_matrix(args.file)
    cases = matrix.select(args.case)
    check_images(matrix, cases)
    check_harness_images(matrix, cases, args.image)
    out_root = args.out_dir if args.out_dir is not None else DEFAULT_OUT
    merged = LocalRun(matrix, cases, out_root, args.jobs or default_jobs(), image=args.image).run()
    print("\n".join(console_lines(merged)), flush=True)
    return int(merged.exit_code)


def _k8s(args: argparse.Namespace) -> int:
    from harness.fleet import k8s
    from harness.fleet.expand import load_matrix

    matrix = load_matrix(args.file)
    options = k8s.K8sOptions(name=args.name, namespace=args.namespace, image=args.image or k8s.K8sOptions.image,
                             images_claim=args.images_claim, out_claim=args.out_claim, images_root=args.images_root,
                             kvm_group=args.kvm_group)
    documents = k8s.manifests(matrix, options, merge=args.merge_job)
    what = "the merge Job" if args.merge_job else "the ConfigMap, NetworkPolicy and Indexed Job"
    header = f"# {what} of {args.file.name}, rendered by aero-win7-harness matrix k8s\n"
    sys.stdout.write(k8s.to_yaml(documents, header))
    sys.stdout.flush()
    return ExitCode.PASS


def _exec(args: argparse.Namespace) -> int:
    from harness.fleet.pod import exec_case

    exec_case(args.cases, args.index, args.out_dir, args.out_root, args.network_isolation, args.require_kvm)


def execute(args: argparse.Namespace) -> int:
    actions = {"validate": _validate, "list": _list, "run": _run, "k8s": _k8s, "exec": _exec}
    return actions[args.matrix_command](args)
