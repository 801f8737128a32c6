"""``matrix k8s``: the Kubernetes manifests of a matrix, built as data and printed as YAML.

- a ConfigMap holding the expanded cases (``cases.json``, the form ``matrix list --format json``
  prints) with the image paths as the pod sees them (``/images/...``);
- a NetworkPolicy that lets the pods talk to nobody: the guest's services run inside the pod,
  on its loopback, and QEMU user networking must not reach the cluster (enforced where the
  cluster's network plugin implements NetworkPolicy);
- an Indexed Job: one completion index a case, ``parallelism`` from the matrix, each index tried
  once more only after an INFRA exit (6) and never after a verdict, a disruption not counted.

Each pod: ``/dev/kvm`` through the KVM device plugin's resource (``devices.kubevirt.io/kvm``),
never privileged; the image's non-root user; every capability dropped; RuntimeDefault seccomp; a
read-only root file system with emptyDirs at ``/tmp`` and ``/var/tmp`` (QEMU's snapshot overlay);
the images volume read-only at ``/images``; the shared out volume at ``/out``, where ``matrix exec
--out-root /out`` makes the index's own ``case-<index>`` folder as the pod's user (a ``subPath``
folder would be made by the kubelet as root, which a non-root pod cannot write into where the
volume ignores ``fsGroup``, as NFS does); ``--require-kvm``: the KVM device it was given must be
open to the pod's user, else an INFRA failure saying why, never a silent TCG run; ``--kvm-group
GID`` puts the nodes' kvm group among the pod's ``supplementalGroups`` (for a 0660 ``/dev/kvm``).
The pod's resolv.conf names 127.0.0.1 (dnsPolicy None), where the harness answers the guest's name
lookups, on port 53, which the pod's ``net.ipv4.ip_unprivileged_port_start=53`` sysctl (a
namespaced "safe" sysctl) lets its non-root user bind. The harness runs with ``--network-isolation
off``: the pod is the network namespace. ``--merge-job`` renders the Job that merges the out volume
afterwards.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from harness import __version__
from harness.errors import ExitCode, UsageError
from harness.fleet.case import Case
from harness.fleet.casedir import index_folder
from harness.fleet.expand import Matrix

KVM_RESOURCE = "devices.kubevirt.io/kvm"
IMAGES = PurePosixPath("/images")
OUT = PurePosixPath("/out")
MATRIX_MOUNT = PurePosixPath("/etc/aero-win7-matrix")
CASES_KEY = "cases.json"
CONTAINER = "harness"
IMAGE_USER = 10001  # the image's own user (Dockerfile)
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,50}[a-z0-9])?$")  # a DNS label, short enough for pod names
MEMORY_OVERHEAD_MB = 1024  # QEMU, its TCG code cache, the harness
DEADLINE_MARGIN_S = 900  # image pull, KVM probe, boot of QEMU, reports
VERDICT_CODES = [int(c) for c in (ExitCode.FAIL, ExitCode.USAGE, ExitCode.QEMU_EXITED, ExitCode.AUDIO_SILENT,
                                  ExitCode.TIMEOUT, ExitCode.INTERRUPTED)]
TTL_S = 7 * 24 * 3600
# Writable scratch on a read-only root: the harness's sockets and files in /tmp, and QEMU's
# snapshot=on overlay, which QEMU puts in /var/tmp whenever TMPDIR is /tmp (or unset).
SCRATCH_MOUNTS = ({"name": "tmp", "mountPath": "/tmp"}, {"name": "var-tmp", "mountPath": "/var/tmp"})


@dataclass(frozen=True)
class K8sOptions:
    name: str = "aero-win7-fleet"
    namespace: str | None = None
    image: str = f"aero-win7-harness:{__version__}"
    images_claim: str = "aero-win7-images"
    out_claim: str = "aero-win7-out"
    images_root: Path | None = None  # the host folder the images volume holds (default: the matrix file's)
    tmp_size: str = "1Gi"
    var_tmp_size: str = "16Gi"  # QEMU's -snapshot overlay: as large as what the guest writes
    kvm_group: int | None = None  # the nodes' /dev/kvm group, for a 0660 device (supplementalGroups)

    def check(self) -> None:
        for flag, value in (("--name", self.name), ("--images-claim", self.images_claim),
                            ("--out-claim", self.out_claim)) + ((("--namespace", self.namespace),)
                                                                if self.namespace else ()):
            if not NAME_RE.match(value):
                raise UsageError(f"{flag} {value!r}: not a Kubernetes name (lower-case letters, digits and '-', "
                                 "at most 52 characters)")
        if not self.image or any(c.isspace() for c in self.image):
            raise UsageError(f"--image {self.image!r}: not an image reference")
        if self.kvm_group is not None and not 0 < self.kvm_group < 2**31:
            raise UsageError(f"--kvm-group {self.kvm_group}: not a group id (1 to {2**31 - 1})")


def pod_image(matrix: Matrix, case: Case, root: Path) -> PurePosixPath:
    """Where a case's image is in the pod: its path under the images root, below /images."""
    assert case.image is not None
    host = PurePosixPath(case.image)
    try:
        relative = host.relative_to(PurePosixPath(root))
    except ValueError:
        raise matrix.fail(case, f"{host} is not under the images root {root} (--images-root): "
                                "in a pod, images come from the images volume") from None
    return IMAGES / relative


def pod_cases(matrix: Matrix, options: K8sOptions) -> list[Case]:
    root = (options.images_root or matrix.document.folder).resolve()
    return [case.with_image(pod_image(matrix, case, root)) if case.image is not None else case
            for case in matrix.cases]


def _labels(options: K8sOptions, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "aero-win7-harness", "app.kubernetes.io/component": component,
            "app.kubernetes.io/instance": options.name}


def _metadata(options: K8sOptions, name: str, component: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": _labels(options, component)}
    if options.namespace:
        meta["namespace"] = options.namespace
    return meta


def _security(kvm_group: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod's and the container's securityContext."""
    seccomp = {"type": "RuntimeDefault"}
    pod: dict[str, Any] = {"runAsNonRoot": True, "runAsUser": IMAGE_USER, "runAsGroup": IMAGE_USER,
                           "fsGroup": IMAGE_USER}
    if kvm_group is not None:
        pod["supplementalGroups"] = [kvm_group]
    pod |= {"seccompProfile": seccomp,
            "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "53"}]}
    container = {"allowPrivilegeEscalation": False, "privileged": False, "readOnlyRootFilesystem": True,
                 "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}, "seccompProfile": seccomp}
    return pod, container


def _pod_spec(options: K8sOptions, args: list[str], mounts: list[dict[str, Any]], volumes: list[dict[str, Any]],
              resources: dict[str, Any], env: list[dict[str, Any]], deadline_s: int,
              kvm_group: int | None = None) -> dict[str, Any]:
    pod_security, container_security = _security(kvm_group)
    return {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "activeDeadlineSeconds": deadline_s,
        "terminationGracePeriodSeconds": 60,
        # The guest's DNS: QEMU asks the pod's first nameserver, where the harness answers.
        "dnsPolicy": "None",
        "dnsConfig": {"nameservers": ["127.0.0.1"], "searches": [], "options": [{"name": "ndots", "value": "1"}]},
        "securityContext": pod_security,
        "containers": [{
            "name": CONTAINER,
            "image": options.image,
            "imagePullPolicy": "IfNotPresent",
            "args": args,
            "env": [{"name": "HOME", "value": "/tmp"}, {"name": "TMPDIR", "value": "/tmp"},
                    {"name": "AERO_OUT_DIR", "value": str(OUT)}, *env],
            "securityContext": container_security,
            "resources": resources,
            "volumeMounts": mounts,
        }],
        "volumes": [*volumes, {"name": "tmp", "emptyDir": {"sizeLimit": options.tmp_size}},
                    {"name": "var-tmp", "emptyDir": {"sizeLimit": options.var_tmp_size}}],
    }


def cases_json(cases: Sequence[Case]) -> str:
    """The cases as a JSON array, one case a line."""
    return "[\n" + ",\n".join(f"  {json.dumps(case.to_json())}" for case in cases) + "\n]\n"


def configmap(options: K8sOptions, cases: Sequence[Case]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata(options, f"{options.name}-matrix", "matrix"),
            "data": {CASES_KEY: cases_json(cases)}}


def network_policy(options: K8sOptions) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": _metadata(options, f"{options.name}-isolated", "network-policy"),
            "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": options.name}},
                     "policyTypes": ["Ingress", "Egress"]}}


def _pod_deadline(cases: Sequence[Case]) -> int:
    return int(math.ceil(max(case.timeout_s for case in cases))) + DEADLINE_MARGIN_S


def job(options: K8sOptions, cases: Sequence[Case], parallelism: int) -> dict[str, Any]:
    count = len(cases)
    parallel = min(parallelism, count)
    memory = max(case.memory_mb for case in cases) + MEMORY_OVERHEAD_MB
    args = ["matrix", "exec", str(MATRIX_MOUNT / CASES_KEY), "--out-root", str(OUT), "--network-isolation", "off",
            "--require-kvm"]
    index = {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
        "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}
    mounts: list[dict[str, Any]] = [
        {"name": "matrix", "mountPath": str(MATRIX_MOUNT), "readOnly": True},
        {"name": "images", "mountPath": str(IMAGES), "readOnly": True},
        {"name": "out", "mountPath": str(OUT)},  # exec makes case-<index>/ itself, as the pod's user
        *SCRATCH_MOUNTS]
    volumes: list[dict[str, Any]] = [{"name": "matrix", "configMap": {"name": f"{options.name}-matrix"}},
               {"name": "images", "persistentVolumeClaim": {"claimName": options.images_claim, "readOnly": True}},
               {"name": "out", "persistentVolumeClaim": {"claimName": options.out_claim}}]
    resources = {"requests": {"cpu": str(max(case.smp for case in cases)), "memory": f"{memory}Mi", KVM_RESOURCE: "1"},
                 "limits": {"memory": f"{memory}Mi", KVM_RESOURCE: "1"}}
    deadline = _pod_deadline(cases)
    pod = _pod_spec(options, args, mounts, volumes, resources, [index], deadline, options.kvm_group)
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": _metadata(options, options.name, "matrix-case"),
        "spec": {
            "completionMode": "Indexed",
            "completions": count,
            "parallelism": parallel,
            # Every case runs whatever the others do; a verdict is final, an INFRA exit gets one more try.
            "backoffLimitPerIndex": 1,
            "maxFailedIndexes": count,
            "podFailurePolicy": {"rules": [
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                {"action": "FailIndex", "onExitCodes": {"containerName": CONTAINER, "operator": "In",
                                                        "values": VERDICT_CODES}},
            ]},
            "activeDeadlineSeconds": 2 * deadline * math.ceil(count / parallel),
            "ttlSecondsAfterFinished": TTL_S,
            "template": {"metadata": {"labels": _labels(options, "matrix-case")}, "spec": pod},
        },
    }


def merge_job(options: K8sOptions, cases: Sequence[Case]) -> dict[str, Any]:
    """The Job that folds the out volume's case folders into OUT (apply it once the matrix Job ended)."""
    folders = [str(OUT / index_folder(i)) for i in range(len(cases))]
    args = ["merge", "--by-index", *folders, "--expect-cases", str(MATRIX_MOUNT / CASES_KEY), "--out-dir", str(OUT)]
    mounts: list[dict[str, Any]] = [{"name": "matrix", "mountPath": str(MATRIX_MOUNT), "readOnly": True},
                                    {"name": "out", "mountPath": str(OUT)}, *SCRATCH_MOUNTS]
    volumes: list[dict[str, Any]] = [{"name": "matrix", "configMap": {"name": f"{options.name}-matrix"}},
               {"name": "out", "persistentVolumeClaim": {"claimName": options.out_claim}}]
    resources = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
    pod = _pod_spec(options, args, mounts, volumes, resources, [], 600)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": _metadata(options, f"{options.name}-merge", "merge"),
            "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": TTL_S,
                     "template": {"metadata": {"labels": _labels(options, "merge")}, "spec": pod}}}


def manifests(matrix: Matrix, options: K8sOptions, *, merge: bool = False) -> list[dict[str, Any]]:
    options.check()
    cases = pod_cases(matrix, options)
    if merge:
        return [merge_job(options, cases)]
    return [configmap(options, cases), network_policy(options), job(options, cases, matrix.parallelism)]


def _styled(value: Any) -> Any:
    """Multi-line strings as YAML literal blocks (a readable cases.json); strings a YAML 1.1 reader
    would take for something else (``off``, ``yes``, ``1``) double-quoted: Kubernetes' YAML is 1.1."""
    from ruamel.yaml.nodes import ScalarNode
    from ruamel.yaml.resolver import VersionedResolver
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString

    if isinstance(value, dict):
        return {k: _styled(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_styled(v) for v in value]
    if isinstance(value, str) and "\n" in value:
        return LiteralScalarString(value)
    if isinstance(value, str):
        tag = VersionedResolver(version=(1, 1)).resolve(ScalarNode, value, (True, False))
        if tag != "tag:yaml.org,2002:str":
            return DoubleQuotedScalarString(value)
    return value


def to_yaml(documents: Sequence[dict[str, Any]], header: str = "") -> str:
    """The documents as one multi-document YAML stream, keys in the order they were built."""
    import io

    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.width = 120
    yaml.indent(mapping=2, sequence=4, offset=2)
    stream = io.StringIO()
    stream.write(header)
    yaml.dump_all([_styled(d) for d in documents], stream)
    return stream.getvalue()
