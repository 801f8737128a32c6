"""``matrix exec``: one case of a cases.json run in this process's place, as a Kubernetes pod of
the Indexed Job (``harness.fleet.k8s``) does.

- Which case: ``--index``, else ``$JOB_COMPLETION_INDEX`` (set by an Indexed Job).
- Where: ``--out-dir DIR``; or ``--out-root DIR``, the shared out volume, in whose
  ``case-<index>`` the case writes. That folder is made by this process, so it belongs to the
  pod's user: a ``subPath`` mount's folder would be made by the kubelet, as root, and the pod's
  non-root user could not write into it where the volume ignores ``fsGroup`` (NFS). Either way
  ``casedir.prepare`` first removes an earlier attempt's reports: a case that ends before the
  harness writes its own is RESULTS_MISSING in the merge, never the earlier PASS.
- ``--require-kvm``: the pod was given ``/dev/kvm`` (the device plugin's resource), so its user
  must be able to open it; where it cannot (a node's 0660 ``/dev/kvm`` without the node's kvm
  group among the pod's groups), the case ends at once with INFRA and one line saying why and how
  to fix it, recorded in ``case.json`` for the merge, instead of a silent run under TCG. Whether
  KVM is fast enough stays the harness's own choice (``--accel auto``).
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from harness.errors import InfraError, UsageError
from harness.fleet.case import Case, cases_from_json
from harness.fleet.casedir import index_folder, prepare
from harness.fleet.record import CaseRecord, now
from harness.qemu.accel import KVM_DEVICE

INDEX_ENV = "JOB_COMPLETION_INDEX"


def read_cases(path: Path) -> list[Case]:
    try:
        return cases_from_json(json.loads(path.read_text(encoding="utf-8")))
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror}") from err
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UsageError(f"{path}: not JSON ({err})") from err


def pick_index(given: int | None, environ: Mapping[str, str]) -> int:
    if given is not None:
        return given
    text = environ.get(INDEX_ENV, "")
    if not text.isdigit():
        raise UsageError(f"no --index and no {INDEX_ENV} (set by a Kubernetes Indexed Job)")
    return int(text)


def out_folder(out_dir: Path | None, out_root: Path | None, index: int) -> Path:
    if out_dir is not None:
        return out_dir
    assert out_root is not None
    if not out_root.is_dir():
        raise UsageError(f"--out-root {out_root}: no such folder (the out volume's mount)")
    return out_root / index_folder(index)


def kvm_problem(device: Path = KVM_DEVICE) -> str | None:
    """Why this process cannot open ``device`` for a KVM guest, with the fix; None when it can."""
    try:
        info = device.stat()
    except FileNotFoundError:
        return (f"{device} is not in this pod: ask for the KVM device plugin's resource (devices.kubevirt.io/kvm) "
                "and check that the node runs the plugin")
    except OSError as err:
        return f"{device}: {err.strerror}"
    if not stat.S_ISCHR(info.st_mode):
        return f"{device} is not a character device"
    if os.access(device, os.R_OK | os.W_OK):
        return None
    groups = ",".join(str(g) for g in sorted({os.getgid(), *os.getgroups()}))
    return (f"{device} (mode {stat.S_IMODE(info.st_mode):04o}, owner {info.st_uid}:{info.st_gid}) cannot be opened by "
            f"uid {os.getuid()} (groups {groups}): give the pod the device's group (matrix k8s --kvm-group "
            f"{info.st_gid}, the pod's supplementalGroups), or have the container runtime give devices the pod's "
            "user (device_ownership_from_security_context), or make /dev/kvm 0666 on the nodes; "
            "see deploy/kubernetes/README.md")


def exec_case(cases_path: Path, index: int | None, out_dir: Path | None, out_root: Path | None,
              network_isolation: str | None, require_kvm: bool) -> NoReturn:
    cases = read_cases(cases_path)
    chosen = pick_index(index, os.environ)
    if chosen >= len(cases):
        raise UsageError(f"index {chosen}: {cases_path} has {len(cases)} case(s)")
    case = cases[chosen]
    folder = prepare(out_folder(out_dir, out_root, chosen))
    extra = ["--network-isolation", network_isolation] if network_isolation else []
    argv = [sys.executable, "-m", "harness", *case.harness_argv(folder, extra)]
    record = CaseRecord(case, argv, "matrix exec", now())
    problem = kvm_problem() if require_kvm else None
    error = InfraError(f"case {case.name}: KVM is required (--require-kvm) but {problem}") if problem else None
    if error is not None:
        record.exit_code, record.verdict_line = int(error.exit_code), error.verdict_line()
    try:
        record.write(folder)
    except OSError as err:
        raise UsageError(f"cannot write to the case's out dir {folder}: {err.strerror}") from err
    if error is not None:
        raise error
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)  # the harness takes this process's place: its exit code is the pod's
