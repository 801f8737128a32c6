"""``matrix run`` end to end: a 6-case matrix as ``aero-win7-docker`` containers two at a time,
then ``merge`` of the same folders. Marked docker and slow: each case boots its guest once, under
TCG (or KVM where it really works).

The cases: the reference guest baked into the harness image (``selfcheck``) in the transitional
layout, and made to fail (a 1-second timeout); and a product of two disk images x two flag sets,
sound on and off through the image: the session's reference-guest builds (shared with the other
tests, built once), one that does not test sound and one that requires it, each run with and
without the sound device. Every case's verdict is what it must be: a PASS where the guest and the
device agree, the guest's own failure (VIRTIO_SND_FAILED) where the image wants a device it does
not get, and the merge agrees with each case's own results.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import docker
import docker.errors
import pytest
from junitparser import JUnitXml

from harness.fleet import ranking
from harness.launcher.container import LABEL
from tests.conftest import IN_CI, REPO, missing_prerequisite
from tests.refguest import Built

pytestmark = [pytest.mark.docker, pytest.mark.slow]

IMAGE = os.environ.get("AERO_WIN7_IMAGE", "aero-win7-harness:latest")
SND = ["--enable-virtio-snd", "--virtio-snd-audio-backend", "wav"]


def six_cases(images: Path, ports: tuple[int, int]) -> str:
    """The matrix: ``images`` holds plain.qcow2 and snd.qcow2, built for ``ports``."""
    return f"""\
version: 1
parallelism: 2
defaults:
  timeout: 300
cases:
  - name: ref-small
    selfcheck: true
    flags: [--smp, "1", --memory-mb, "1024", --virtio-transitional]
  - name: too-short
    selfcheck: true
    timeout: 1
products:
  - prefix: ref
    images:
      plain: {images / "plain.qcow2"}
      snd: {images / "snd.qcow2"}
    flags: [--snapshot, --http-port, "{ports[0]}", --udp-port, "{ports[1]}"]
    flag_sets:
      contract: []
      snd: {json.dumps(SND)}
"""


NAMES = ["ref-small", "too-short", "ref-plain-contract", "ref-plain-snd", "ref-snd-contract", "ref-snd-snd"]
# (verdict, token, exit code) each case must end with
EXPECTED = {"ref-small": ("PASS", "PASS", 0), "too-short": ("FAIL", "TIMEOUT", 5),
            "ref-plain-contract": ("PASS", "PASS", 0), "ref-plain-snd": ("PASS", "PASS", 0),
            "ref-snd-contract": ("FAIL", "VIRTIO_SND_FAILED", 1), "ref-snd-snd": ("PASS", "PASS", 0)}


# What the image must hold as this tree does: the fleet's own code (the pods run it).
FLEET_SOURCES = """
import hashlib, json, pathlib, harness
root = pathlib.Path(harness.__file__).parent
files = [*root.glob("fleet/*.py"), root / "commands" / "matrix.py", root / "commands" / "merge.py"]
print(json.dumps({str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}))
"""


def fleet_sources() -> list[Path]:
    root = REPO / "harness"
    return [*root.glob("fleet/*.py"), root / "commands" / "matrix.py", root / "commands" / "merge.py"]


@pytest.fixture(scope="session")
def harness_image(engine: docker.DockerClient) -> str:
    """The harness image, from this tree: CI (re)builds it (cached layers make that cheap after
    .ci/run's make image); locally the image at hand ($AERO_WIN7_IMAGE) must know this tree's
    launcher and ``matrix exec``."""
    if IN_CI and "AERO_WIN7_IMAGE" not in os.environ:
        proc = subprocess.run([str(REPO / "container" / "build-image.sh")], capture_output=True, text=True,
                              timeout=1800, check=False, env={**os.environ, "IMAGE": IMAGE.split(":")[0]})
        assert proc.returncode == 0, f"make image failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    try:
        engine.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        missing_prerequisite(f"image {IMAGE} not built: run make image")
    try:
        selfcheck = engine.containers.run(IMAGE, ["selfcheck", "--help"], remove=True, network_mode="none")
        inside = engine.containers.run(IMAGE, ["-c", FLEET_SOURCES], entrypoint="python3", remove=True,
                                       network_mode="none")
    except docker.errors.ContainerError as err:
        missing_prerequisite(f"image {IMAGE} is older than this tree ({err}): run make image")
    if b"--stop-on-stdin-eof" not in bytes(selfcheck):
        missing_prerequisite(f"image {IMAGE} is older than this tree's launcher: run make image")
    here = {str(p.relative_to(REPO / "harness")): hashlib.sha256(p.read_bytes()).hexdigest() for p in fleet_sources()}
    if json.loads(bytes(inside)) != here:
        missing_prerequisite(f"image {IMAGE} holds another harness.fleet than this tree: run make image")
    return IMAGE


def harness(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def launcher_containers(engine: docker.DockerClient, under: Path) -> list[str]:
    """The launchers' containers that mount something of ``under`` (this test's folder: others may
    run containers on the same engine at the same time)."""
    found = []
    for container in engine.containers.list(all=True, filters={"label": LABEL}):
        sources = [str(m.get("Source", "")) for m in container.attrs.get("Mounts", [])]
        if any(source == str(under) or source.startswith(f"{under}/") for source in sources):
            found.append(str(container.name))
    return found


def most_at_once(records: list[dict[str, object]]) -> int:
    events = []
    for record in records:
        start = datetime.fromisoformat(str(record["started_at"])).timestamp()
        events += [(start, 1), (start + float(record["wall_s"]), -1)]  # type: ignore[arg-type]
    running = peak = 0
    for _at, step in sorted(events, key=lambda e: (e[0], e[1])):
        running += step
        peak = max(peak, running)
    return peak


@pytest.fixture
def disk_images(tmp_path: Path, guest: Built, guest_require_snd: Built) -> Path:
    """The session's two reference-guest builds in a folder the containers' user may read."""
    images = tmp_path / "images"
    images.mkdir()
    images.chmod(0o755)
    for name, built in (("plain.qcow2", guest), ("snd.qcow2", guest_require_snd)):
        shutil.copyfile(built.image, images / name)
        (images / name).chmod(0o644)
    return images


def test_a_six_case_matrix_runs_two_at_a_time_and_merges(engine: docker.DockerClient, harness_image: str,
                                                        tmp_path: Path, disk_images: Path,
                                                        guest_ports: tuple[int, int]) -> None:
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(six_cases(disk_images, guest_ports), encoding="utf-8")
    out = tmp_path / "out"
    started = time.monotonic()
    proc = harness("matrix", "run", matrix, "--jobs", "2", "--out-dir", out, "--image", harness_image, timeout=1800)
    took = time.monotonic() - started
    own = {name: json.loads((out / name / "results.json").read_text()) for name in NAMES}
    # every case ends as it must: the guests that match their devices pass, the others fail as they should
    assert {n: (own[n]["verdict"], own[n]["token"], own[n]["exit_code"]) for n in NAMES} == EXPECTED, \
        proc.stdout + proc.stderr[-3000:]
    assert own["ref-snd-contract"]["tests"]["virtio-snd"]["fields"]["reason"] == "device_missing"
    assert own["ref-snd-snd"]["tests"]["virtio-snd"]["status"] == "PASS"  # the image's own sound test ran
    assert proc.returncode == ranking.worst([code for _verdict, _token, code in EXPECTED.values()]) == 5
    # the flags reached each run: layout, sound device, and the image of each product case
    assert {n: own[n]["layout"] for n in NAMES} == {n: "transitional" if n == "ref-small" else "contract"
                                                    for n in NAMES}
    for name in NAMES:
        argv = " ".join(own[name]["qemu"]["argv"] or [])
        assert ("virtio-sound-pci" in argv) == name.endswith("snd"), name
    for name in NAMES[2:]:
        image = disk_images / ("snd.qcow2" if name.startswith("ref-snd") else "plain.qcow2")
        record = json.loads((out / name / "case.json").read_text())
        assert record["case"]["image"] == str(image), name
    # the merge: a verdict per case as its own results.json says, the worst exit code, the slowest markers
    merged = json.loads((out / "results.json").read_text())
    assert [c["name"] for c in merged["cases"]] == NAMES
    for case in merged["cases"]:
        mine = own[case["name"]]
        assert (case["verdict"], case["exit_code"], case["source"]) == (mine["verdict"], mine["exit_code"],
                                                                        "results.json"), case["name"]
        assert case["duration_s"] == mine["duration_s"] and case["wall_s"] >= mine["duration_s"]
        assert case["report"] == f"{case['name']}/report.html"
    assert merged["exit_code"] == proc.returncode
    assert all(case["slowest_markers"] for case in merged["cases"] if case["verdict"] == "PASS")
    assert [case["verdict"] for case in merged["cases"]] == [EXPECTED[n][0] for n in NAMES]
    # the console: one line a case, then the verdict
    lines = proc.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == [f"case {n}" for n in NAMES]
    assert lines[-1].startswith("FAIL: ") and lines[-1].endswith(f"(exit {proc.returncode})")
    # junit: a testsuite per case
    suites = {suite.name: suite for suite in JUnitXml.fromfile(str(out / "junit.xml"))}
    assert list(suites) == NAMES
    assert not next(c for c in suites["too-short"] if c.name == "overall").is_passed
    # index and summary
    page = (out / "index.html").read_text()
    assert all(f'href="{n}/report.html"' in page for n in NAMES)
    summary = (out / "summary.md").read_text()
    assert all(any(line.startswith(f"| {n} |") for line in summary.splitlines()) for n in NAMES)
    # two at a time, no more
    records = [json.loads((out / n / "case.json").read_text()) for n in NAMES]
    assert all(r["exit_code"] == own[r["name"]]["exit_code"] for r in records)
    assert most_at_once(records) == 2
    assert sum(float(r["wall_s"]) for r in records) > took * 1.2  # they did overlap
    assert not launcher_containers(engine, tmp_path)  # every container was removed

    # merge again from the folders alone, elsewhere
    again = harness("merge", *(out / n for n in NAMES), "--out-dir", tmp_path / "merged")
    assert again.returncode == proc.returncode, again.stdout
    assert again.stdout.splitlines()[-1] == lines[-1]
    remerged = json.loads((tmp_path / "merged" / "results.json").read_text())
    assert [(c["name"], c["verdict"], c["exit_code"]) for c in remerged["cases"]] == [
        (c["name"], c["verdict"], c["exit_code"]) for c in merged["cases"]]
    assert remerged["cases"][0]["report"] == "../out/ref-small/report.html"


@pytest.mark.fault
def test_an_interrupted_matrix_stops_its_cases_and_still_merges(engine: docker.DockerClient, harness_image: str,
                                                               tmp_path: Path) -> None:
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text("version: 1\ncases:\n" + "".join(f"  - {{name: c{i}, selfcheck: true}}\n" for i in range(3)),
                      encoding="utf-8")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "harness", "matrix", "run", str(matrix), "--jobs", "2",
                             "--out-dir", str(out), "--image", harness_image], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # a CI shell's job
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # both running cases have a container
            names = launcher_containers(engine, tmp_path)
            consoles = [out / f"c{i}" / "launcher.log" for i in range(2)]
            if len(names) >= 2 and all(p.exists() and "created container" in p.read_text() for p in consoles):
                break
            time.sleep(0.5)
        else:
            pytest.fail("the cases did not start")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stdout + stderr[-3000:]
    assert stdout.splitlines()[-1].startswith("FAIL: INTERRUPTED: stopped by SIGINT")
    merged = json.loads((out / "results.json").read_text())
    assert [c["name"] for c in merged["cases"]] == ["c0", "c1", "c2"]
    assert merged["cases"][2]["token"] == "RESULTS_MISSING" and "not started" in merged["cases"][2]["detail"]
    assert all(case["exit_code"] == 130 for case in merged["cases"][:2]), merged["cases"]
    deadline = time.monotonic() + 30
    while launcher_containers(engine, tmp_path) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not launcher_containers(engine, tmp_path)
