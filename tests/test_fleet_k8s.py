"""``matrix k8s``: the manifests of a matrix, validated offline against the Kubernetes API schemas
(``kubernetes-validate``, strict: an unknown field fails), their security fields checked one by one,
and deploy/kubernetes/ kept as the renderer makes it. No cluster runs here: the pod's container
contract (read-only root, no capabilities, non-root, DNS on 127.0.0.1, the port sysctl, no
network) is run in Docker with the same settings, and ``matrix exec`` for real.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml as pyyaml  # type: ignore[import-untyped]  # a YAML 1.1 reader, as Kubernetes' own

from harness.fleet import k8s
from harness.fleet.expand import load_matrix
from tests.conftest import PASSING, lines, missing_prerequisite
from tests.test_fleet_e2e import harness_image  # noqa: F401 - a fixture

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy" / "kubernetes"
EXAMPLE = DEPLOY / "matrix.example.yaml"
EXAMPLE_IMAGE = "registry.example.org/aero-win7-harness:0.1.0"
VERSIONS = ("1.33.0", "1.37.0")  # the oldest with backoffLimitPerIndex and FailIndex GA, and the newest known

SIX = """\
version: 1
parallelism: 2
defaults: {timeout: 600}
cases:
  - {name: win7-a, image: images/win7.qcow2, flags: [--snapshot, --memory-mb, "4096", --smp, "4"]}
  - {name: failing, selfcheck: true, timeout: 1}
products:
  - prefix: ref
    images: {guest: {selfcheck: true}}
    flag_sets:
      contract: []
      transitional: [--virtio-transitional]
      snd: [--enable-virtio-snd, --virtio-snd-audio-backend, wav]
      transitional-snd: [--virtio-transitional, --enable-virtio-snd, --virtio-snd-audio-backend, wav]
"""


@pytest.fixture(scope="module")
def validate() -> Any:
    try:
        import kubernetes_validate  # type: ignore[import-untyped]
    except ImportError:
        missing_prerequisite("kubernetes-validate is not installed (pip install kubernetes-validate)")
    return kubernetes_validate.validate


def render(tmp_path: Path, text: str = SIX, **options: Any) -> list[dict[str, Any]]:
    path = tmp_path / "matrix.yaml"
    path.write_text(text, encoding="utf-8")
    matrix = load_matrix(path)
    opts = k8s.K8sOptions(**options)
    return k8s.manifests(matrix, opts) + k8s.manifests(matrix, opts, merge=True)


def harness(*args: str | Path, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}, check=False)


# -- the API schemas ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_matches_the_kubernetes_schema(validate: Any, tmp_path: Path, version: str) -> None:
    documents = render(tmp_path, namespace="driver-lab")
    assert [d["kind"] for d in documents] == ["ConfigMap", "NetworkPolicy", "Job", "Job"]
    for document in documents:
        validate(document, version, strict=True)


def test_the_schemas_are_live(validate: Any, tmp_path: Path) -> None:
    """A mistake the renderer avoids is caught: the check is not a formality."""
    import kubernetes_validate

    job = render(tmp_path)[2]
    job["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFS"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(job, VERSIONS[0], strict=True)


@pytest.mark.parametrize("path", sorted(DEPLOY.glob("*.yaml")), ids=lambda p: p.name)
def test_the_deploy_folders_manifests_match_the_schema(validate: Any, path: Path) -> None:
    if path == EXAMPLE:
        load_matrix(path)  # a matrix, not a manifest
        return
    documents = list(pyyaml.safe_load_all(path.read_text(encoding="utf-8")))
    assert documents
    for document in documents:
        for version in VERSIONS:
            validate(document, version, strict=True)


def test_the_deploy_folder_is_what_the_renderer_makes() -> None:
    for target, extra in (("fleet.yaml", []), ("merge-job.yaml", ["--merge-job"])):
        proc = harness("matrix", "k8s", EXAMPLE, "--image", EXAMPLE_IMAGE, *extra)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout == (DEPLOY / target).read_text(encoding="utf-8"), (
            f"deploy/kubernetes/{target} is stale: regenerate it as deploy/kubernetes/README.md says")


def test_a_yaml_1_1_reader_reads_what_was_built(tmp_path: Path) -> None:
    """Kubernetes reads YAML 1.1, where a bare off or yes is a boolean: every string stays a string."""
    path = tmp_path / "matrix.yaml"
    path.write_text(SIX, encoding="utf-8")
    documents = k8s.manifests(load_matrix(path), k8s.K8sOptions())
    assert list(pyyaml.safe_load_all(k8s.to_yaml(documents))) == documents


# -- what the pods may do ----------------------------------------------------------------------------------


def pod_of(job: dict[str, Any]) -> dict[str, Any]:
    return dict(job["spec"]["template"]["spec"])


def test_the_job_is_indexed_one_case_an_index(tmp_path: Path) -> None:
    configmap, policy, job, _merge = render(tmp_path)
    cases = json.loads(configmap["data"]["cases.json"])
    assert [c["name"] for c in cases] == ["win7-a", "failing", "ref-guest-contract", "ref-guest-transitional",
                                          "ref-guest-snd", "ref-guest-transitional-snd"]
    assert cases[0]["image"] == "/images/images/win7.qcow2"  # under the images volume
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 6, 2)
    assert (spec["backoffLimitPerIndex"], spec["maxFailedIndexes"]) == (1, 6)
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    assert rules[1]["action"] == "FailIndex" and 6 not in rules[1]["onExitCodes"]["values"]
    assert sorted(rules[1]["onExitCodes"]["values"]) == [1, 2, 3, 4, 5, 130]
    (container,) = pod_of(job)["containers"]
    assert container["args"] == ["matrix", "exec", "/etc/aero-win7-matrix/cases.json", "--out-root", "/out",
                                 "--network-isolation", "off", "--require-kvm"]
    index = next(e for e in container["env"] if e["name"] == "JOB_COMPLETION_INDEX")
    assert "batch.kubernetes.io/job-completion-index" in index["valueFrom"]["fieldRef"]["fieldPath"]
    assert policy["spec"] == {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "aero-win7-fleet"}},
                              "policyTypes": ["Ingress", "Egress"]}  # no rule: nothing in, nothing out
    assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"] == "aero-win7-fleet"


@pytest.mark.parametrize("which", [2, 3], ids=["matrix-job", "merge-job"])
def test_the_pods_are_locked_down(tmp_path: Path, which: int) -> None:
    pod = pod_of(render(tmp_path)[which])
    assert pod["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
        "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "53"}]}
    assert (pod["dnsPolicy"], pod["dnsConfig"]["nameservers"]) == ("None", ["127.0.0.1"])
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    assert "hostNetwork" not in pod and "hostPID" not in pod and "hostIPC" not in pod
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "privileged": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/tmp"]["name"]]["emptyDir"] == {"sizeLimit": "1Gi"}
    assert volumes[mounts["/var/tmp"]["name"]]["emptyDir"] == {"sizeLimit": "16Gi"}  # QEMU's snapshot overlay
    assert "/out" in mounts and "persistentVolumeClaim" in volumes[mounts["/out"]["name"]]
    assert all("hostPath" not in v for v in volumes.values())
    if which == 2:
        assert mounts["/images"]["readOnly"] is True
        assert volumes["images"]["persistentVolumeClaim"]["readOnly"] is True
        # the whole claim: exec makes case-<index>/ as the pod's user, not the kubelet as root
        assert mounts["/out"] == {"name": "out", "mountPath": "/out"}
        assert container["resources"]["limits"]["devices.kubevirt.io/kvm"] == "1"
        assert container["resources"]["requests"] == {"cpu": "4", "memory": "5120Mi", "devices.kubevirt.io/kvm": "1"}
        assert pod["activeDeadlineSeconds"] == 600 + k8s.DEADLINE_MARGIN_S


def test_the_merge_job_merges_every_index(tmp_path: Path) -> None:
    merge_job = render(tmp_path)[3]
    args = pod_of(merge_job)["containers"][0]["args"]
    assert args == ["merge", "--by-index", *(f"/out/case-{i}" for i in range(6)), "--expect-cases",
                    "/etc/aero-win7-matrix/cases.json", "--out-dir", "/out"]


# -- bad input ---------------------------------------------------------------------------------------


@pytest.mark.bad_input
def test_an_image_outside_the_images_volume_is_usage(tmp_path: Path) -> None:
    path = tmp_path / "matrix.yaml"
    path.write_text("version: 1\ncases:\n  - {name: a, image: /srv/win7.qcow2}\n", encoding="utf-8")
    proc = harness("matrix", "k8s", path)
    assert proc.returncode == 2
    assert proc.stdout == (f"FAIL: USAGE: {path}:3: case 'a': image: /srv/win7.qcow2 is not under the "
                           f"images root {tmp_path} (--images-root): in a pod, images come from the images volume\n")
    proc = harness("matrix", "k8s", path, "--images-root", "/srv")
    assert proc.returncode == 0, proc.stdout
    assert '"image": "/images/win7.qcow2"' in proc.stdout


@pytest.mark.bad_input
@pytest.mark.parametrize(("flag", "value"), [("--name", "Aero_Fleet"), ("--out-claim", "x" * 60),
                                             ("--image", "has space")])
def test_bad_names_are_usage(tmp_path: Path, flag: str, value: str) -> None:
    path = tmp_path / "matrix.yaml"
    path.write_text(SIX, encoding="utf-8")
    proc = harness("matrix", "k8s", path, flag, value)
    assert proc.returncode == 2
    assert proc.stdout.startswith(f"FAIL: USAGE: {flag} {value!r}: not a")


@pytest.mark.bad_input
def test_exec_needs_an_index(tmp_path: Path) -> None:
    cases = tmp_path / "cases.json"
    cases.write_text(k8s.cases_json(load_matrix(EXAMPLE).cases), encoding="utf-8")
    env = {"JOB_COMPLETION_INDEX": ""}
    proc = harness("matrix", "exec", cases, "--out-dir", tmp_path / "out", env=env)
    assert (proc.returncode, proc.stdout) == (2, "FAIL: USAGE: no --index and no JOB_COMPLETION_INDEX (set by a "
                                                 "Kubernetes Indexed Job)\n")
    proc = harness("matrix", "exec", cases, "--out-dir", tmp_path / "out", env={"JOB_COMPLETION_INDEX": "9"})
    assert (proc.returncode, proc.stdout) == (2, f"FAIL: USAGE: index 9: {cases} has 4 case(s)\n")
    cases.write_text("{}", encoding="utf-8")
    proc = harness("matrix", "exec", cases, "--index", "0", "--out-dir", tmp_path / "out")
    assert (proc.returncode, proc.stdout) == (2, "FAIL: USAGE: not a list of matrix cases (as 'matrix list "
                                                 "--format json' prints)\n")


@pytest.mark.parametrize("version", VERSIONS)
def test_the_nodes_kvm_group_is_a_supplemental_group(validate: Any, tmp_path: Path, version: str) -> None:
    _configmap, _policy, job, merge_job = render(tmp_path, kvm_group=36)
    validate(job, version, strict=True)
    assert pod_of(job)["securityContext"]["supplementalGroups"] == [36]
    assert "supplementalGroups" not in pod_of(merge_job)["securityContext"]  # the merge touches no device
    proc = harness("matrix", "k8s", EXAMPLE, "--kvm-group", "36")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rendered = list(pyyaml.safe_load_all(proc.stdout))[2]
    assert pod_of(rendered)["securityContext"]["supplementalGroups"] == [36]
    for bad in ("0", "kvm"):
        proc = harness("matrix", "k8s", EXAMPLE, "--kvm-group", bad)
        assert (proc.returncode, proc.stdout) == (2, f"FAIL: USAGE: argument --kvm-group: not a whole number of at "
                                                     f"least 1: '{bad}'\n")


STALE = {"results.json": '{"verdict": "PASS", "token": null, "exit_code": 0, "detail": "", "tests": {}}',
         "junit.xml": "<testsuites/>", "report.html": "<p>PASS</p>", "screenshot.png": "png",
         "case.json": '{"name": "other", "exit_code": 0}', "console.log": "PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS\n"}


def stale_run(folder: Path) -> None:
    """What an earlier, passing run of a case left in its folder."""
    folder.mkdir(parents=True)
    for name, text in STALE.items():
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "serial.log").write_text("earlier\n", encoding="utf-8")


@pytest.mark.fault
@pytest.mark.parametrize("layout", ["out-dir", "out-root"])
def test_exec_removes_an_earlier_runs_verdict_before_the_case_runs(tmp_path: Path, layout: str) -> None:
    """A pod that ends early (here: its disk image is gone, USAGE before anything boots) must not
    leave the earlier run's PASS for the merge to find."""
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text("version: 1\ncases:\n  - {name: ok, selfcheck: true}\n  - {name: gone, image: gone.qcow2}\n",
                      encoding="utf-8")
    cases = tmp_path / "cases.json"
    cases.write_text(k8s.cases_json(load_matrix(matrix).cases), encoding="utf-8")
    volume = tmp_path / "out-volume"
    stale_run(volume / "case-1")
    where = ["--out-dir", volume / "case-1"] if layout == "out-dir" else ["--out-root", volume]
    proc = harness("matrix", "exec", cases, *where, env={"JOB_COMPLETION_INDEX": "1"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == f"FAIL: USAGE: disk image not found: {tmp_path / 'gone.qcow2'}"
    left = sorted(p.name for p in (volume / "case-1").iterdir() if not p.name.startswith("."))  # not its lock
    assert left == ["case.json", "serial.log"], left  # the reports went; other files are the harness's to replace
    record = json.loads((volume / "case-1" / "case.json").read_text())
    assert (record["name"], record["runner"]) == ("gone", "matrix exec")
    proc = harness("merge", "--by-index", volume / "case-0", volume / "case-1", "--expect-cases", cases,
                   "--out-dir", volume)
    merged = json.loads((volume / "results.json").read_text())
    assert [(c["name"], c["token"]) for c in merged["cases"]] == [("ok", "RUN_MISSING"), ("gone", "RESULTS_MISSING")]
    assert proc.returncode == 6 and merged["verdict"] == "FAIL", proc.stdout


def test_exec_out_root_makes_the_index_folder(tmp_path: Path) -> None:
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps([{"name": "gone", "selfcheck": False, "image": str(tmp_path / "gone.qcow2"),
                                  "flags": [], "timeout": 5, "runner": []}]), encoding="utf-8")
    volume = tmp_path / "out-volume"
    proc = harness("matrix", "exec", cases, "--index", "0", "--out-root", volume)
    assert (proc.returncode, proc.stdout) == (2, f"FAIL: USAGE: --out-root {volume}: no such folder (the out "
                                                 "volume's mount)\n")
    volume.mkdir()
    proc = harness("matrix", "exec", cases, "--index", "0", "--out-root", volume)
    assert proc.returncode == 2 and "disk image not found" in proc.stdout, proc.stdout
    record = json.loads((volume / "case-0" / "case.json").read_text())
    assert record["argv"][-2:] == ["--out-dir", str(volume / "case-0")]
    (volume / "case-0").rename(volume / "elsewhere")
    (volume / "case-0").symlink_to(volume / "elsewhere")
    proc = harness("matrix", "exec", cases, "--index", "0", "--out-root", volume)
    assert (proc.returncode, proc.stdout) == (2, f"FAIL: USAGE: {volume / 'case-0'} is a symbolic link: the fleet "
                                                 "does not write through links; remove it\n")
    proc = harness("matrix", "exec", cases, "--index", "0")
    assert proc.returncode == 2 and "one of the arguments --out-dir --out-root is required" in proc.stdout


def test_why_kvm_cannot_be_opened(tmp_path: Path) -> None:
    from harness.fleet.pod import kvm_problem

    assert kvm_problem(tmp_path / "kvm") == (f"{tmp_path / 'kvm'} is not in this pod: ask for the KVM device "
                                             "plugin's resource (devices.kubevirt.io/kvm) and check that the node "
                                             "runs the plugin")
    (tmp_path / "kvm").write_bytes(b"")
    assert kvm_problem(tmp_path / "kvm") == f"{tmp_path / 'kvm'} is not a character device"
    assert kvm_problem(Path("/dev/null")) is None  # open to everyone (a 0660 device is run in Docker below)


@pytest.mark.qemu
@pytest.mark.usefixtures("qemu", "no_stray_qemu")
def test_exec_hands_over_to_the_harness(tmp_path: Path, make_guest: Any, ports: tuple[int, int]) -> None:
    image = make_guest(lines(*PASSING))
    path = tmp_path / "matrix.yaml"
    path.write_text(textwrap.dedent(f"""\
        version: 1
        cases:
          - {{name: one, selfcheck: true}}
          - name: two
            image: {image.name}
            timeout: 30
            flags: [--accel, tcg, --http-port, "{ports[0]}", --udp-port, "{ports[1]}"]
    """), encoding="utf-8")
    cases = tmp_path / "cases.json"
    cases.write_text(k8s.cases_json(load_matrix(path).cases), encoding="utf-8")
    out = tmp_path / "case-1"
    proc = harness("matrix", "exec", cases, "--out-dir", out, env={"JOB_COMPLETION_INDEX": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS"
    record = json.loads((out / "case.json").read_text())
    assert (record["name"], record["runner"], record["exit_code"]) == ("two", "matrix exec", None)
    assert record["argv"][-2:] == ["--out-dir", str(out)]
    assert json.loads((out / "results.json").read_text())["verdict"] == "PASS"


# -- the pod's container contract, in Docker -------------------------------------------------------------


KVM_GROUP = 4242  # a node's kvm group, for a 0660 /dev/kvm


def node_kvm(tmp_path: Path) -> Path:
    """/dev/kvm as a node with a kvm group has it (0660, root:kvm): a device node of its own, which
    Docker, like a container runtime for the device plugin, creates in the container with its owner
    and mode."""
    if os.geteuid() != 0:
        missing_prerequisite("making a device node needs root")
    node = tmp_path / "node-dev" / "kvm"
    node.parent.mkdir()
    os.mknod(node, stat.S_IFCHR | 0o660, os.makedev(10, 232))
    os.chown(node, 0, KVM_GROUP)
    node.chmod(0o660)
    return node


def run_pod(engine: docker.DockerClient, image: str, pod: dict[str, Any], env: dict[str, str],
            mounts: dict[str, Path], kvm: Path | None = None) -> tuple[int, str]:
    """A pod's one container run by Docker with the pod's settings: its user and supplemental
    groups, read-only root, no capability, no new privileges, its emptyDirs as tmpfs, resolv.conf
    naming its nameservers, its sysctls, and no network (the NetworkPolicy); ``mounts`` stand for
    its other volumes, ``kvm`` for the device the KVM device plugin gives the pod it asks for."""
    (container,) = pod["containers"]
    security = container["securityContext"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    scratch = {m["mountPath"]: f"size={volumes[m['name']]['emptyDir']['sizeLimit'].removesuffix('i').lower()}"
               for m in container["volumeMounts"] if "emptyDir" in volumes[m["name"]]}
    assert set(scratch) == {"/tmp", "/var/tmp"}
    others = {m["mountPath"]: m for m in container["volumeMounts"] if "emptyDir" not in volumes[m["name"]]}
    assert set(others) == set(mounts)
    assert all("subPath" not in m and "subPathExpr" not in m for m in others.values())
    binds = [docker.types.Mount(path, str(mounts[path]), type="bind", read_only=bool(m.get("readOnly")))
             for path, m in others.items()]
    asks_kvm = k8s.KVM_RESOURCE in container["resources"].get("limits", {})
    assert (kvm is not None) <= asks_kvm
    user = pod["securityContext"]
    run = engine.containers.run(
        image, container["args"], detach=True, mounts=binds,
        environment={e["name"]: e["value"] for e in container["env"] if "value" in e} | env,
        user=f"{user['runAsUser']}:{user['runAsGroup']}", group_add=[str(g) for g in user.get("supplementalGroups", [])],
        devices=[f"{kvm}:/dev/kvm:rwm"] if kvm is not None else [], read_only=security["readOnlyRootFilesystem"],
        cap_drop=security["capabilities"]["drop"], privileged=security["privileged"],
        security_opt=["no-new-privileges"] if security["allowPrivilegeEscalation"] is False else [],
        tmpfs=scratch, network_mode="none", dns=pod["dnsConfig"]["nameservers"],
        sysctls={s["name"]: s["value"] for s in user["sysctls"]})
    try:
        code = int(run.wait(timeout=600)["StatusCode"])
        return code, run.logs().decode(errors="replace")
    finally:
        run.remove(force=True)


TWO = "version: 1\ncases:\n  - {name: a, selfcheck: true}\n  - {name: b, selfcheck: true, flags: [--virtio-transitional]}\n"


def pod_volumes(tmp_path: Path, configmap: dict[str, Any], owner: int) -> tuple[Path, Path, Path]:
    """The ConfigMap's folder, an empty images volume and an out volume whose root belongs to ``owner``."""
    config = tmp_path / "configmap"
    config.mkdir()
    (config / "cases.json").write_text(configmap["data"]["cases.json"], encoding="utf-8")
    images = tmp_path / "images"
    images.mkdir()
    volume = tmp_path / "out-volume"
    volume.mkdir()
    os.chown(volume, owner, owner)
    return config, images, volume


@pytest.mark.docker
@pytest.mark.slow
def test_the_pods_run_a_case_and_the_merge_as_the_manifests_say(engine: docker.DockerClient, harness_image: str,  # noqa: F811
                                                                tmp_path: Path) -> None:
    """Index 1 of a two-case Job on a node whose /dev/kvm is 0660 root:kvm, rendered with that
    group; then the merge Job over the out volume (where index 0 never ran). The out volume's root
    belongs to the pod's user, as deploy/kubernetes/README.md asks of the claim; the index's folder
    is the pod's own making."""
    configmap, _policy, job, merge_job = render(tmp_path, text=TWO, kvm_group=KVM_GROUP)
    pod = pod_of(job)
    config, images, volume = pod_volumes(tmp_path, configmap, pod["securityContext"]["runAsUser"])
    out = volume / "case-1"
    code, logs = run_pod(engine, harness_image, pod, {"JOB_COMPLETION_INDEX": "1"},
                         {"/etc/aero-win7-matrix": config, "/images": images, "/out": volume}, kvm=node_kvm(tmp_path))
    assert out.stat().st_uid == pod["securityContext"]["runAsUser"]  # made by the pod, not by a kubelet as root
    results = json.loads((out / "results.json").read_text())
    assert code == results["exit_code"], logs
    assert json.loads((out / "case.json").read_text())["name"] == "b"
    assert results["layout"] == "transitional"  # index 1's flags reached the harness
    assert "start" in results["timeline"]["phases"], logs  # the guest booted and its selftest began
    assert results["network_isolation"]["isolated"] is False  # the pod is the namespace: --network-isolation off
    log = (out / "harness.log").read_text()
    assert "guest name server: answering on 127.0.0.1:53" in log, logs
    assert "not readable and writable" not in log  # the device was open to the pod; KVM or TCG is the probe's call

    code, logs = run_pod(engine, harness_image, pod_of(merge_job), {},
                         {"/etc/aero-win7-matrix": config, "/out": volume})
    assert code == 6, logs  # index 0 never ran: RUN_MISSING is INFRA, the worst here
    merged = json.loads((volume / "results.json").read_text())
    assert [(c["name"], c["token"] if c["name"] == "a" else c["verdict"]) for c in merged["cases"]] == [
        ("a", "RUN_MISSING"), ("b", results["verdict"])]
    assert (volume / "index.html").is_file() and 'href="case-1/report.html"' in (volume / "index.html").read_text()


@pytest.mark.fault
@pytest.mark.docker
def test_a_pod_that_cannot_write_or_open_kvm_says_why_at_once(engine: docker.DockerClient, harness_image: str,  # noqa: F811
                                                              tmp_path: Path) -> None:
    """Nothing boots in any of these: an out volume the pod's user cannot write into, an index
    folder a kubelet made as root, and a 0660 /dev/kvm without its group (no silent TCG)."""
    configmap, _policy, job, _merge = render(tmp_path, text=TWO)
    pod = pod_of(job)
    uid = pod["securityContext"]["runAsUser"]
    config, images, volume = pod_volumes(tmp_path, configmap, 0)
    mounts = {"/etc/aero-win7-matrix": config, "/images": images, "/out": volume}
    kvm = node_kvm(tmp_path)
    code, logs = run_pod(engine, harness_image, pod, {"JOB_COMPLETION_INDEX": "0"}, mounts, kvm=kvm)
    assert (code, logs.splitlines()[-1]) == (2, "FAIL: USAGE: cannot create the case's out dir /out/case-0: "
                                                f"Permission denied (this process: uid {uid}, groups {uid}; /out must "
                                                "be writable by it)")
    os.chown(volume, uid, uid)
    (volume / "case-0").mkdir()  # what a subPath mount's kubelet leaves: root's, 0755
    code, logs = run_pod(engine, harness_image, pod, {"JOB_COMPLETION_INDEX": "0"}, mounts, kvm=kvm)
    assert (code, logs.splitlines()[-1]) == (2, "FAIL: USAGE: the case's out dir /out/case-0 is not writable by this "
                                                f"process (uid {uid}, groups {uid})")
    code, logs = run_pod(engine, harness_image, pod, {"JOB_COMPLETION_INDEX": "1"}, mounts, kvm=kvm)
    said = (f"FAIL: INFRA: case b: KVM is required (--require-kvm) but /dev/kvm (mode 0660, owner 0:{KVM_GROUP}) "
            f"cannot be opened by uid {uid} (groups {uid}): give the pod the device's group (matrix k8s --kvm-group "
            f"{KVM_GROUP}, the pod's supplementalGroups), or have the container runtime give devices the pod's user "
            "(device_ownership_from_security_context), or make /dev/kvm 0666 on the nodes; see "
            "deploy/kubernetes/README.md")
    assert (code, logs.splitlines()[-1]) == (6, said)
    record = json.loads((volume / "case-1" / "case.json").read_text())
    assert (record["name"], record["exit_code"], record["verdict_line"]) == ("b", 6, said)
    cases = volume / "cases.json"
    cases.write_text(configmap["data"]["cases.json"], encoding="utf-8")
    proc = harness("merge", "--by-index", volume / "case-0", volume / "case-1", "--expect-cases", cases,
                   "--out-dir", tmp_path / "merged")
    assert proc.returncode == 6, proc.stdout
    merged = json.loads((tmp_path / "merged" / "results.json").read_text())
    assert merged["cases"][1]["token"] == "RESULTS_MISSING" and said in merged["cases"][1]["detail"]
