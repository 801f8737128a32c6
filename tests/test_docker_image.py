"""The product image ``aero-win7-harness`` against a real Docker engine (``make image`` first).

Marked ``docker``: locally they skip when no engine answers or the image was not built; in CI
(CI=true) they fail instead. The guest runs use the reference guest baked into the image, under
TCG (no KVM is passed unless the machine really has it), through the host-side launcher.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import struct
import subprocess
import sys
import tarfile
import wave
from pathlib import Path

import docker
import docker.errors
import docker.models.images
import pytest

import harness
from harness.launcher import kvm
from harness.qemu.accel import probe_kvm
from harness.qemu.bootsector import build_image
from tests.conftest import missing_prerequisite
from tests.guestlog import Transcript

pytestmark = pytest.mark.docker

IMAGE = os.environ.get("AERO_WIN7_IMAGE", "aero-win7-harness:latest")
GUEST_IN_IMAGE = "/usr/share/aero-win7-harness/reference-guest.qcow2"
REPO = Path(__file__).resolve().parent.parent
SIZE_GOAL_BYTES = 300_000_000
OWNER = os.getuid()  # the caller's: a root caller's folder is lent to the image's user for the run, then given back
GUI_PACKAGES = re.compile(r"^(qemu-system-gui|qemu-system-modules-\S+|libgtk\S*|libsdl\S*|libspice\S*|"
                          r"libvirglrenderer\S*|libx11-6)$", re.MULTILINE)


@pytest.fixture(scope="module")
def image(engine: docker.DockerClient) -> docker.models.images.Image:
    """The product image. In CI it is (re)built from this tree first (layers cached, so cheap when
    .ci/run ran `make image` already); locally the image at hand is used."""
    if os.environ.get("CI") == "true" and "AERO_WIN7_IMAGE" not in os.environ:
        proc = subprocess.run([str(REPO / "container" / "build-image.sh")], capture_output=True, text=True,
                              timeout=1800, check=False, env={**os.environ, "IMAGE": IMAGE.split(":")[0]})
        assert proc.returncode == 0, f"make image failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    try:
        return engine.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        missing_prerequisite(f"image {IMAGE} not built: run make image (container/build-image.sh)")
        raise


def in_image(engine: docker.DockerClient, *argv: str, entrypoint: str | None = None) -> tuple[int, str]:
    """Exit code and stdout of the image run with these arguments."""
    container = engine.containers.run(IMAGE, list(argv), entrypoint=entrypoint, detach=True, network_mode="none")
    try:
        code = int(container.wait(timeout=600)["StatusCode"])
        return code, container.logs(stdout=True, stderr=False).decode()
    finally:
        container.remove(force=True)


@pytest.fixture(scope="module")
def reference_guest(engine: docker.DockerClient, image: object, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The baked reference guest, copied to the host and made read-only."""
    code, listing = in_image(engine, "-c", f"test -s {GUEST_IN_IMAGE} && echo ok", entrypoint="sh")
    if code != 0:
        missing_prerequisite(f"{IMAGE} has no reference guest ({GUEST_IN_IMAGE}); "
                             "rebuild with REFERENCE_GUEST=required")
    folder = tmp_path_factory.mktemp("images")
    container = engine.containers.create(IMAGE, network_mode="none")
    try:
        bits, _ = container.get_archive(GUEST_IN_IMAGE)
        with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tar:
            tar.extract("reference-guest.qcow2", folder, filter="data")
    finally:
        container.remove(force=True)
    path = folder / "reference-guest.qcow2"
    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    folder.chmod(0o755)  # a root caller's container runs as the image's user, who must enter the folder
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def launcher(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.launcher.cli", "--image", IMAGE, *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


# --- the image itself -------------------------------------------------------------------------

def test_version_prints_harness_and_qemu(engine: docker.DockerClient, image: object) -> None:
    code, out = in_image(engine, "--version")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == f"aero-win7-harness {harness.__version__}"
    assert re.fullmatch(r"QEMU \d+\.\d+\.\d+ \(Debian [^)]+\) at /usr/bin/qemu-system-x86_64", lines[1]), lines


def test_labels_name_the_versions_and_revision(engine: docker.DockerClient, image: docker.models.images.Image) -> None:
    labels = image.labels
    assert labels["org.opencontainers.image.version"] == harness.__version__
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", labels["org.opencontainers.image.revision"])
    qemu = labels["aero-win7-harness.qemu.version"]
    _, out = in_image(engine, "--version")
    assert f"(Debian {qemu})" in out  # the label is the QEMU that is really installed


def test_runs_as_non_root_with_run_as_default(engine: docker.DockerClient, image: docker.models.images.Image) -> None:
    config = image.attrs["Config"]
    assert config["User"] == "harness"
    assert config["Entrypoint"] == ["aero-win7-harness"]
    assert "AERO_OUT_DIR=/out" in config["Env"]
    code, out = in_image(engine, "-c", "id -u", entrypoint="sh")
    assert (code, out.strip()) == (0, "10001")
    code, out = in_image(engine, "--disk-image", "/images/none.qcow2", "--accel", "tcg")
    assert code == 2 and out.strip().splitlines()[-1].startswith("FAIL: USAGE"), out  # `run` is the default


def test_no_gui_packages_and_pinned_qemu(engine: docker.DockerClient, image: docker.models.images.Image) -> None:
    code, out = in_image(engine, "-c", "dpkg-query -W -f '${Package}\\n'; qemu-system-x86_64 -device help",
                         entrypoint="sh")
    assert code == 0
    assert GUI_PACKAGES.findall(out) == []
    assert 'name "virtio-sound-pci"' in out and 'name "virtio-blk-pci"' in out and 'name "virtio-net-pci"' in out


def test_size_goal(image: docker.models.images.Image) -> None:
    size = int(image.attrs["Size"])
    assert size < SIZE_GOAL_BYTES, f"{IMAGE} is {size / 1e6:.0f} MB; the goal is under {SIZE_GOAL_BYTES / 1e6:.0f} MB"


# --- guest runs ---------------------------------------------------------------------------------

PASS_LINE = "PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS"
# Every host action QEMU 10 can serve (not the wheel's horizontal axis: see the wheel test); the tablet
# events bring their tablet.
HOST_ACTION_FLAGS = ("--with-input-events", "--with-input-media-keys", "--with-input-tablet-events",
                     "--with-net-link-flap", "--with-blk-resize")


@pytest.mark.slow
def test_selfcheck_with_plain_docker_run_answers_the_guests_dns_in_the_container(image: object,
                                                                                  tmp_path: Path) -> None:
    """README's plain `docker run` line: no network, the container's resolver pointed at itself."""
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run(["docker", "run", "--rm", "--user", f"{os.getuid()}:{os.getgid()}", "--network", "none",
                           "--dns", "127.0.0.1", "-v", f"{out}:/out", IMAGE, "selfcheck", "--accel", "tcg"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert (proc.returncode, proc.stdout.splitlines()[-1]) == (0, PASS_LINE), proc.stdout + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["tests"]["virtio-net"]["fields"]["dns_name"] == "host.lan"
    assert "host.lan. A -> A 10.0.2.2" in (out / "http.log").read_text()  # answered inside the container
    assert results["network_isolation"]["isolated"] is True  # by the container's own network namespace
    assert results["qemu"]["version"].startswith("10.")
    assert {f["qdev_id"]: f["id"] for f in results["pci"]} == {
        "blk0": "1af4:1042", "nic0": "1af4:1041", "kbd0": "1af4:1052", "mouse0": "1af4:1052"}


@pytest.mark.slow
def test_launcher_selfcheck_transitional_and_intx_only_on_the_images_qemu(image: object, tmp_path: Path) -> None:
    out = tmp_path / "selfcheck"
    proc = launcher("selfcheck", "--virtio-transitional", "--virtio-disable-msix", "--require-intx",
                    "--out-dir", str(out))
    assert (proc.returncode, proc.stdout.splitlines()[-1]) == (0, PASS_LINE), proc.stdout + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert {f["qdev_id"]: f["id"] for f in results["pci"]} == {"blk0": "1af4:1001", "nic0": "1af4:1000"}
    assert results["tests"]["virtio-blk"]["fields"]["irq_mode"] == "intx"
    assert (out / "results.json").stat().st_uid == OWNER


@pytest.mark.slow
def test_sound_and_every_host_action_on_the_images_qemu(image: object, tmp_path: Path) -> None:
    """QEMU 10 with virtio-snd: playback, capture and duplex PASS, the WAV on the host is not silent,
    report.html draws it; the host actions reach the guest through this QEMU too."""
    out = tmp_path / "out"
    proc = launcher("selfcheck", "--out-dir", str(out), "--enable-virtio-snd", "--virtio-snd-audio-backend", "wav",
                    *HOST_ACTION_FLAGS)
    assert (proc.returncode, proc.stdout.splitlines()[-1]) == (0, PASS_LINE), proc.stdout + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    tests = results["tests"]
    for name in ("virtio-snd", "virtio-snd-capture", "virtio-snd-duplex", "virtio-input-events",
                 "virtio-input-media-keys", "virtio-input-tablet-events", "virtio-net-link-flap", "virtio-blk-resize"):
        assert tests[name]["status"] == "PASS", (name, tests[name])
    pci = {f["qdev_id"]: f["id"] for f in results["pci"]}
    assert pci["snd0"] == "1af4:1059" and pci["tablet0"] == "1af4:1052"
    assert {a["reaction"] for a in results["actions"]} == {"blk-resize", "input-inject", "media-keys",
                                                           "input-tablet-inject", "net-link-flap"}
    wav_path = out / "virtio-snd.wav"
    assert wav_path.stat().st_uid == OWNER
    _assert_complete_nonsilent_wav(wav_path)
    page = (out / "report.html").read_text()
    assert "<svg" in page and "polygon" in page  # the waveform, drawn from the samples


@pytest.mark.slow
def test_without_the_host_the_guests_host_coordinated_tests_fail_at_their_deadline_on_the_images_qemu(
        reference_guest: Path, tmp_path: Path) -> None:
    """The image asks for the tests (fw_cfg here, provisioning on Windows); the run has no --with flags."""
    out = tmp_path / "out"
    words = "--test-input-events --test-net-link-flap --test-blk-resize --host-wait-sec 3"
    proc = launcher("--disk-image", str(reference_guest), "--out-dir", str(out), "--timeout-seconds", "300",
                    "--", "-fw_cfg", f"name=opt/org.aero/selftest-args,string={words}")
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1].startswith("FAIL: SELFTEST_FAILED: guest reported AERO_VIRTIO_SELFTEST|RESULT|FAIL")
    tests = json.loads((out / "results.json").read_text())["tests"]
    for name in ("virtio-blk-resize", "virtio-input-events"):
        assert (tests[name]["status"], tests[name]["fields"]["reason"]) == ("FAIL", "timeout"), name
    assert tests["virtio-net-link-flap"]["fields"]["reason"] == "timeout_waiting_link_down"


@pytest.mark.slow
def test_the_wheel_tests_fail_on_the_images_qemu_for_want_of_a_horizontal_wheel(reference_guest: Path,
                                                                                tmp_path: Path) -> None:
    """QEMU 10's virtio mouse has no horizontal wheel either: --with-input-wheel and
    --with-input-events-extended end in VIRTIO_INPUT_WHEEL_FAILED with the reason, the rest PASS."""
    from tests.test_reference_guest_e2e import assert_wheel_fails_for_want_of_a_horizontal_wheel

    out = tmp_path / "out"
    words = "--test-input-events --test-input-events-extended --host-wait-sec 8"
    proc = launcher("--disk-image", str(reference_guest), "--out-dir", str(out), "--timeout-seconds", "300",
                    "--with-input-wheel", "--with-input-events-extended",
                    "--", "-fw_cfg", f"name=opt/org.aero/selftest-args,string={words}")
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["qemu"]["version"].startswith("10.")
    assert_wheel_fails_for_want_of_a_horizontal_wheel(proc.stdout.splitlines()[-1], proc.stdout + proc.stderr,
                                                      Transcript.read(out / "serial.log"), results)
    assert "unmapped button: 7 [wheel-left]" in (out / "qemu.stderr.log").read_text()


@pytest.mark.fault
def test_a_host_action_the_images_qemu_refuses_is_its_qmp_token(image: object, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    images.chmod(0o755)
    disk = images / "ready.img"
    disk.write_bytes(build_image(b"AERO_VIRTIO_SELFTEST|START|version=1\r\n"
                                 b"AERO_VIRTIO_SELFTEST|TEST|virtio-blk-resize|READY|disk=0|old_bytes=1048576\r\n"))
    disk.chmod(0o644)
    proc = launcher("--disk-image", str(disk), "--out-dir", str(tmp_path / "out"), "--accel", "tcg",
                    "--timeout-seconds", "60", "--with-blk-resize", "--", "-set", "drive.disk0.readonly=on")
    assert proc.returncode == 6, proc.stdout + proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1] == ("FAIL: QMP_BLK_RESIZE_FAILED: QEMU refused block_resize {'device': "
                                            "'disk0', 'size': 68157440}: GenericError: Image is read-only")


@pytest.mark.slow
def test_pass_from_a_read_only_image_leaves_it_unchanged(reference_guest: Path, tmp_path: Path) -> None:
    before = sha256(reference_guest)
    out = tmp_path / "out"
    proc = launcher("--disk-image", str(reference_guest), "--out-dir", str(out), "--timeout-seconds", "300")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1] == PASS_LINE
    assert sha256(reference_guest) == before
    for name in ("serial.log", "results.json", "junit.xml", "harness.log", "report.html"):
        assert (out / name).stat().st_uid == OWNER, name
    assert (out / "launcher.log").stat().st_uid == os.getuid()  # the launcher's own, written on the host


@pytest.mark.slow
def test_a_guest_provisioned_for_another_url_fails_at_its_config_line(reference_guest: Path, tmp_path: Path) -> None:
    proc = launcher("--disk-image", str(reference_guest), "--out-dir", str(tmp_path / "out"),
                    "--timeout-seconds", "300", "--http-path", "/not-the-guests-path")
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1].startswith("FAIL: HTTP_URL_MISMATCH: the guest was provisioned with "
                                                   "http_url=http://10.0.2.2:18080/aero-virtio-selftest")


def _assert_complete_nonsilent_wav(path: Path) -> None:
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert struct.unpack_from("<I", data, 4)[0] == len(data) - 8, "RIFF size not finalised"
    with wave.open(str(path)) as wav:
        assert wav.getsampwidth() == 2
        frames = wav.readframes(wav.getnframes())
    assert wav.getnframes() > wav.getframerate() // 2, "less than half a second captured"
    samples = struct.unpack(f"<{len(frames) // 2}h", frames)
    assert max(abs(s) for s in samples) > 1000, "the capture is silent"


@pytest.mark.slow
def test_a_guest_that_passes_but_plays_nothing_is_audio_silent(image: object, tmp_path: Path) -> None:
    """A real QEMU 10 capture with nothing in it: the guest reports PASS for every test, sound
    included, but never drives the sound device, so the WAV holds no sound (exit 4)."""
    images = tmp_path / "images"
    images.mkdir()
    records = ("START|version=1", "TEST|virtio-blk|PASS", "TEST|virtio-net-udp|PASS", "TEST|virtio-net|PASS",
               "TEST|virtio-snd|PASS", "RESULT|PASS")
    disk = images / "quiet.img"
    disk.write_bytes(build_image(b"".join(f"AERO_VIRTIO_SELFTEST|{r}\r\n".encode() for r in records)))
    out = tmp_path / "out"
    proc = launcher("--disk-image", str(disk), "--out-dir", str(out), "--timeout-seconds", "120", "--accel", "tcg",
                    "--virtio-transitional", "--enable-virtio-snd", "--virtio-snd-audio-backend", "wav")
    assert proc.returncode == 4, proc.stdout + proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1].startswith("FAIL: AUDIO_SILENT: guest passed but the capture is silent")
    results = json.loads((out / "results.json").read_text())
    assert results["audio"]["header_complete"] is True and results["audio"]["peak"] == 0


def test_the_kvm_probe_runs_inside_the_image(engine: docker.DockerClient, image: object) -> None:
    """On a host without QEMU the launcher asks the image's QEMU whether KVM really runs guests;
    its answer must agree with the host's own probe (same kernel, same device)."""
    if not Path("/dev/kvm").exists():
        missing_prerequisite("this host has no /dev/kvm to probe")
    usable, reason = kvm.image_prober(engine, IMAGE)(Path("/dev/kvm"))
    host = probe_kvm()
    assert usable is host.usable, (reason, host.reason)
    assert reason.startswith("in the image: ")
