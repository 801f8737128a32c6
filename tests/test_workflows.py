"""The GitHub workflows: GitHub's schema (check-jsonschema), zizmor's audit, their shape, and the
shell of the harness workflow's steps run for real with stand-ins for docker, make and the launcher."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from harness import __version__

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
HARNESS = WORKFLOWS / "win7-virtio-harness.yml"
CI = WORKFLOWS / "ci.yml"
BIN = Path(sys.executable).parent
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


def _load(path: Path) -> dict[str, Any]:
    data = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _tool(name: str) -> str:
    """A console script of the test extra: beside this Python (a venv), else on PATH."""
    path = BIN / name if (BIN / name).is_file() else shutil.which(name)
    assert path is not None, f"{name} is not installed (pip install -e '.[test]')"
    return str(path)


def _zizmor(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_tool("zizmor"), "--offline", "--no-progress", *map(str, paths)],
                          capture_output=True, text=True, check=False)


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def _step(workflow: dict[str, Any], name: str) -> dict[str, Any]:
    (step,) = [s for s in _steps(workflow) if s.get("name") == name]
    return step


# -- schema and audit -----------------------------------------------------------------------------


def test_workflows_match_githubs_schema() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
         str(HARNESS), str(CI)],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok -- validation done" in proc.stdout


def test_zizmor_finds_nothing() -> None:
    proc = _zizmor(HARNESS, CI)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings to report" in proc.stdout


def test_zizmor_would_catch_an_inline_input_and_a_tag_pin(tmp_path: Path) -> None:
    """The audit is live offline: the two mistakes the workflows avoid are reported when made."""
    text = HARNESS.read_text(encoding="utf-8")
    text = text.replace('mkdir -p "$OUT_DIR"\n', 'mkdir -p "$OUT_DIR" ${{ inputs.disk_image_path }}\n', 1)
    text = re.sub(r"actions/checkout@[0-9a-f]{40}", "actions/checkout@v4", text)
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(text, encoding="utf-8")
    proc = _zizmor(bad)
    assert proc.returncode != 0
    assert "template-injection" in proc.stdout and "unpinned-uses" in proc.stdout, proc.stdout


# -- shape ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [HARNESS, CI], ids=lambda p: p.name)
def test_actions_pinned_permissions_explicit_no_expressions_in_scripts(path: Path) -> None:
    workflow = _load(path)
    assert workflow["permissions"] == {"contents": "read"}
    for step in _steps(workflow):
        if "uses" in step:
            assert PINNED.match(step["uses"]), step["uses"]
            if step["uses"].startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False
        if "run" in step:
            assert "${{" not in step["run"], f"expression inside a script: {step['run']}"


def test_harness_workflow_inputs_and_trigger() -> None:
    workflow = _load(HARNESS)
    assert list(workflow["on"]) == ["workflow_dispatch"]
    inputs = workflow["on"]["workflow_dispatch"]["inputs"]
    assert set(inputs) == {"disk_image_path", "timeout_seconds", "snapshot", "serial_log_path", "enable_virtio_snd"}
    assert inputs["disk_image_path"]["required"] is True
    assert (inputs["timeout_seconds"]["type"], inputs["timeout_seconds"]["default"]) == ("number", 600)
    assert (inputs["snapshot"]["type"], inputs["snapshot"]["default"]) == ("boolean", True)
    assert (inputs["enable_virtio_snd"]["type"], inputs["enable_virtio_snd"]["default"]) == ("boolean", False)
    assert inputs["serial_log_path"]["default"].startswith("out/win7-virtio-harness/")
    assert workflow["env"]["OUT_DIR"] == "out/win7-virtio-harness"
    (job,) = workflow["jobs"].values()
    assert "self-hosted" in job["runs-on"]


def test_harness_workflow_uploads_and_summarises_always() -> None:
    workflow = _load(HARNESS)
    upload = _step(workflow, "Upload the artifacts")
    assert upload["if"] == "always()"
    assert upload["uses"].startswith("actions/upload-artifact@")
    assert upload["with"]["name"] == "win7-virtio-harness"
    # not the disk overlay a run without snapshot writes (as large as what the guest wrote)
    assert upload["with"]["path"].splitlines() == ["${{ env.OUT_DIR }}", "${{ inputs.serial_log_path }}",
                                                   "!${{ env.OUT_DIR }}/**/*.qcow2"]
    summary = _step(workflow, "Job summary")
    assert summary["if"] == "always()"
    assert "harness.ci_summary" in summary["run"] and "$GITHUB_STEP_SUMMARY" in summary["run"]
    names = [s.get("name") for s in _steps(workflow)]
    assert names.index("Run the harness") < names.index("Job summary") < names.index("Upload the artifacts")


def test_ci_workflow_runs_tests_image_and_selfcheck() -> None:
    workflow = _load(CI)
    assert set(workflow["on"]) == {"push", "pull_request", "workflow_dispatch"}
    runs = {job_id: [s.get("run", "") for s in job["steps"]] for job_id, job in workflow["jobs"].items()}
    assert "bash .ci/run" in runs["tests"]
    assert runs["image"][-2:] == ["make image", "make selfcheck"]
    for job_id, job in workflow["jobs"].items():
        assert job["runs-on"].startswith("ubuntu-"), job_id
        assert any("udevadm trigger --name-match=kvm" in run for run in runs[job_id]), job_id


# -- the harness workflow's scripts, run --------------------------------------------------------


def _fake(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/usr/bin/env bash\n" + body, encoding="utf-8")
    path.chmod(0o755)


def _run_step(step: dict[str, Any], workdir: Path, env: dict[str, str],
              values: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a step's script as GitHub's ``shell: bash`` does, the expressions of its ``env:`` filled in
    from ``values`` (``{"inputs.snapshot": "true", ...}``)."""
    step_env = {key: re.sub(r"\$\{\{\s*([\w.]+)\s*\}\}", lambda m: values[m.group(1)], str(value))
                for key, value in step.get("env", {}).items()}
    script = workdir / "step.sh"
    script.write_text(step["run"], encoding="utf-8")
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=workdir,
                          env={**env, **step_env}, capture_output=True, text=True, check=False)


@pytest.fixture
def runner(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A workspace and an environment whose PATH starts with stand-ins, then this Python."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    env = {
        "PATH": os.pathsep.join([str(bin_dir), str(BIN), "/usr/bin", "/bin"]),
        "HOME": str(tmp_path),
        "OUT_DIR": _load(HARNESS)["env"]["OUT_DIR"],
        "GITHUB_OUTPUT": str(tmp_path / "github_output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "step_summary.md"),
        "PYTHONPATH": str(ROOT),
    }
    return workspace, env


def _launcher(bin_dir: Path, exit_code: int) -> None:
    """A stand-in aero-win7-docker: records its argv, logs to stderr, prints a verdict line."""
    verdict = "PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS" if exit_code == 0 else "FAIL: TIMEOUT: stand-in"
    _fake(bin_dir, "aero-win7-docker",
          'printf "%s\\0" "$@" > "$HOME/launcher-argv"\n'
          'echo \'{"level": "INFO", "message": "on stderr"}\' >&2\n'
          f'echo "{verdict}"\nexit {exit_code}\n')


def _inputs(**overrides: str) -> dict[str, str]:
    values = {"inputs.disk_image_path": "/srv/images/win7.qcow2", "inputs.timeout_seconds": "600",
              "inputs.snapshot": "true", "inputs.serial_log_path": "out/win7-virtio-harness/serial.log",
              "inputs.enable_virtio_snd": "false", "steps.image.outputs.name": f"aero-win7-harness:{__version__}"}
    values.update({f"inputs.{key}": value for key, value in overrides.items()})
    return values


@pytest.mark.parametrize(
    ("inputs", "flags"),
    [
        ({"snapshot": "true", "enable_virtio_snd": "false"}, ["--snapshot"]),
        ({"snapshot": "false", "enable_virtio_snd": "true"}, ["--enable-virtio-snd"]),
        ({"snapshot": "true", "enable_virtio_snd": "true"}, ["--snapshot", "--enable-virtio-snd"]),
    ],
)
def test_run_step_passes_inputs_as_arguments_verbatim(runner: tuple[Path, dict[str, str]],
                                                      inputs: dict[str, str], flags: list[str]) -> None:
    workspace, env = runner
    bin_dir = Path(env["PATH"].split(os.pathsep)[0])
    _launcher(bin_dir, 0)
    hostile = '/srv/images/win 7 $(touch pwned) `id`;"x".qcow2'
    values = _inputs(disk_image_path=hostile, timeout_seconds="900", serial_log_path="logs/com 1.log", **inputs)
    proc = _run_step(_step(_load(HARNESS), "Run the harness"), workspace, env, values)
    assert proc.returncode == 0, proc.stderr
    argv = (Path(env["HOME"]) / "launcher-argv").read_text().split("\0")[:-1]
    assert argv == ["--image", f"aero-win7-harness:{__version__}", "--disk-image", hostile,
                    "--out-dir", "out/win7-virtio-harness", "--timeout-seconds", "900",
                    "--serial-log", "logs/com 1.log", *flags]
    assert not (workspace / "pwned").exists()
    assert (workspace / "logs").is_dir()
    console = (workspace / "out/win7-virtio-harness/harness-console.log").read_text()
    assert console.splitlines()[-1] == "PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS"


def test_run_step_fails_with_the_harness_and_keeps_its_output(runner: tuple[Path, dict[str, str]]) -> None:
    workspace, env = runner
    _launcher(Path(env["PATH"].split(os.pathsep)[0]), 5)
    proc = _run_step(_step(_load(HARNESS), "Run the harness"), workspace, env, _inputs(serial_log_path=""))
    assert proc.returncode == 5  # pipefail: tee does not hide the harness's exit code
    argv = (Path(env["HOME"]) / "launcher-argv").read_text().split("\0")[:-1]
    assert "--serial-log" not in argv
    console = (workspace / "out/win7-virtio-harness/harness-console.log").read_text()
    assert "FAIL: TIMEOUT: stand-in" in console and "on stderr" in console


@pytest.mark.parametrize("present", [True, False])
def test_image_step_builds_only_when_the_versioned_image_is_missing(runner: tuple[Path, dict[str, str]],
                                                                    present: bool) -> None:
    workspace, env = runner
    bin_dir = Path(env["PATH"].split(os.pathsep)[0])
    _fake(bin_dir, "docker", f'echo "docker $*" >> "$HOME/calls"\nexit {0 if present else 1}\n')
    _fake(bin_dir, "make", 'echo "make $*" >> "$HOME/calls"\n')
    _fake(bin_dir, "python", f'exec "{sys.executable}" "$@"\n')
    proc = _run_step(_step(_load(HARNESS), "Build the harness image when missing"), workspace, env, {})
    assert proc.returncode == 0, proc.stderr
    calls = (Path(env["HOME"]) / "calls").read_text().splitlines()
    assert calls[0] == f"docker image inspect aero-win7-harness:{__version__}"
    assert calls[1:] == ([] if present else ["make image"])
    assert Path(env["GITHUB_OUTPUT"]).read_text() == f"name=aero-win7-harness:{__version__}\n"


def test_summary_step_writes_the_table(runner: tuple[Path, dict[str, str]]) -> None:
    workspace, env = runner
    out = workspace / "out" / "win7-virtio-harness"
    out.mkdir(parents=True)
    (out / "results.json").write_text(
        '{"verdict": "PASS", "token": null, "exit_code": 0, "tests": {"virtio-blk": {"status": "PASS", '
        '"fields": {"write_ok": "1"}}}, "accel": "kvm", "qemu": {"version": "7.2.22", "argv": []}, '
        '"duration_s": 12.5, "version": "0.1.0"}', encoding="utf-8")
    proc = _run_step(_step(_load(HARNESS), "Job summary"), workspace, env, {})
    assert proc.returncode == 0, proc.stderr
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert summary.startswith("## Win7 virtio harness: PASS")
    assert "| virtio-blk | PASS | write_ok=1 |" in summary


def test_scripts_parse_with_bash() -> None:
    for path in (HARNESS, CI):
        for step in _steps(_load(path)):
            if "run" in step:
                proc = subprocess.run(["bash", "-n"], input=step["run"], capture_output=True, text=True, check=False)
                assert proc.returncode == 0, (path.name, step.get("name"), proc.stderr)
