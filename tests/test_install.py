"""``aero-win7-harness install``: the dry-run command, bad input, and a real launch with a real disk."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from qemu.qmp.legacy import QEMUMonitorProtocol

from harness import install, netns
from harness.cli import main
from harness.install import InstallPlan, InstallRequest, steps


def _cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as done:  # argparse's own errors end this way (the console script exits 2)
        return int(str(done.code))


def _make_iso(path: Path) -> Path:
    """A minimal file that carries an ISO 9660 volume descriptor signature."""
    data = bytearray(0x8800)
    data[0x8000:0x8006] = b"\x01CD001"
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def isos(tmp_path: Path) -> tuple[Path, Path]:
    return _make_iso(tmp_path / "Win7 SP1, x64.iso"), _make_iso(tmp_path / "aero-win7-provisioning.iso")


@pytest.fixture
def outside_container(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(netns, "CONTAINER_MARKERS", (tmp_path / "no-such-marker",))


def _argv_after(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == option]


def test_dry_run_prints_the_installer_command(tmp_path: Path, isos: tuple[Path, Path], outside_container: None,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    win7, prov = isos
    disk = tmp_path / "new, disk.qcow2"
    code = _cli(["install", "--win7-iso", str(win7), "--provisioning-iso", str(prov), "--disk-image", str(disk),
                 "--create-disk", "--disk-size-gb", "40", "--memory-mb", "3072", "--smp", "4", "--dry-run",
                 "--", "-cpu", "max"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert len(out) == 2
    create, qemu = (shlex.split(line) for line in out)
    assert Path(create[0]).name == "qemu-img"
    assert create[1:] == ["create", "-f", "qcow2", str(disk), "40G"]
    assert not disk.exists()  # a dry run creates nothing

    assert Path(qemu[0]).name == "qemu-system-x86_64"
    assert _argv_after(qemu, "-machine") == ["pc"]
    assert _argv_after(qemu, "-accel") == ["kvm", "tcg"]
    assert _argv_after(qemu, "-m") == ["3072"]
    assert _argv_after(qemu, "-smp") == ["4"]
    escaped_disk = str(disk).replace(",", ",,")
    assert _argv_after(qemu, "-drive") == [
        f"file={escaped_disk},if=none,id=disk0,format=qcow2",
        f"if=none,id=win7-setup,media=cdrom,readonly=on,format=raw,file={str(win7).replace(',', ',,')}",
        f"if=none,id=aero-provisioning,media=cdrom,readonly=on,format=raw,file={prov}",
    ]
    assert _argv_after(qemu, "-device") == [  # the contract layout's disk and NIC, as the runs have them
        "VGA,id=vga0",
        "virtio-blk-pci,drive=disk0,id=blk0,bootindex=1,disable-legacy=on,queue-size=128,num-queues=1",
        "virtio-net-pci,netdev=net0,id=nic0,disable-legacy=on",
        "ide-cd,drive=win7-setup,bus=ide.0,unit=0,bootindex=0",
        "ide-cd,drive=aero-provisioning,bus=ide.1,unit=0",
        "usb-tablet",
    ]
    assert _argv_after(qemu, "-netdev") == ["user,id=net0"]
    assert _argv_after(qemu, "-display") == ["vnc=127.0.0.1:0"]
    assert qemu[-2:] == ["-cpu", "max"]


def test_install_in_the_transitional_layout(tmp_path: Path, isos: tuple[Path, Path],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    win7, _ = isos
    disk = tmp_path / "old.img"
    disk.write_bytes(bytes(1 << 20))
    assert _cli(["install", "--win7-iso", str(win7), "--disk-image", str(disk), "--virtio-transitional",
                 "--dry-run", "--accel", "tcg"]) == 0
    qemu = shlex.split(capsys.readouterr().out.splitlines()[-1])
    assert [d for d in _argv_after(qemu, "-device") if d.startswith("virtio")] == [
        "virtio-blk-pci,drive=disk0,id=blk0,bootindex=1", "virtio-net-pci,netdev=net0,id=nic0"]


def test_dry_run_on_an_existing_disk_uses_its_format(tmp_path: Path, isos: tuple[Path, Path],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    win7, _ = isos
    disk = tmp_path / "raw.img"
    disk.write_bytes(bytes(1 << 20))
    code = _cli(["install", "--win7-iso", str(win7), "--disk-image", str(disk), "--accel", "tcg",
                 "--display", "gtk", "--dry-run"])
    (line,) = capsys.readouterr().out.splitlines()
    assert code == 0
    qemu = shlex.split(line)
    assert _argv_after(qemu, "-drive")[0] == f"file={disk},if=none,id=disk0,format=raw"
    assert _argv_after(qemu, "-accel") == ["tcg"]
    assert _argv_after(qemu, "-display") == ["gtk"]
    assert not any("aero-provisioning" in arg for arg in qemu)


def test_vnc_listens_on_all_addresses_only_inside_a_container(tmp_path: Path, isos: tuple[Path, Path],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    win7, prov = isos
    marker = tmp_path / ".dockerenv"
    marker.touch()
    monkeypatch.setattr(netns, "CONTAINER_MARKERS", (marker,))
    request = InstallRequest(win7_iso=win7, provisioning_iso=prov, disk_image=tmp_path / "d.qcow2", create_disk=True)
    plan = install.plan_install(request)
    assert plan.display == "vnc=0.0.0.0:0"
    text = "\n".join(steps(plan))
    assert "0.0.0.0:5900" in text and "docker run -p 127.0.0.1:5900:5900" in text
    marker.unlink()
    plan = install.plan_install(request)
    assert plan.display == "vnc=127.0.0.1:0"
    assert "127.0.0.1:5900" in "\n".join(steps(plan)) and "docker run" not in "\n".join(steps(plan))


def test_steps_name_the_media_paths_and_the_harness_run(tmp_path: Path) -> None:
    request = InstallRequest(win7_iso=tmp_path / "w.iso", disk_image=tmp_path / "my disk.qcow2",
                             provisioning_iso=tmp_path / "p.iso")
    text = "\n".join(steps(InstallPlan(request, None, ["qemu"], "vnc=127.0.0.1:2")))
    assert "127.0.0.1:5902" in text
    assert "Load driver" in text and "AERO\\drivers" in text
    assert "AERO\\provision\\provision.cmd" in text and "administrator" in text
    assert f"aero-win7-harness run --disk-image '{tmp_path}/my disk.qcow2' --snapshot" in text
    assert "Warning" not in text
    without = InstallRequest(win7_iso=tmp_path / "w.iso", disk_image=tmp_path / "d.qcow2")
    assert "no --provisioning-iso" in "\n".join(steps(InstallPlan(without, None, ["qemu"], "sdl")))


@pytest.mark.bad_input
def test_bad_input_is_one_usage_line(tmp_path: Path, isos: tuple[Path, Path],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    win7, prov = isos
    existing = tmp_path / "existing.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(existing), "1G"], check=True)
    not_iso = tmp_path / "notes.txt"
    not_iso.write_text("hello")
    base = ["install", "--win7-iso", str(win7), "--dry-run"]
    cases = [
        ([*base, "--disk-image", str(existing), "--create-disk"], "already exists"),
        ([*base, "--disk-image", str(tmp_path / "missing.qcow2")], "--create-disk"),
        ([*base, "--disk-image", str(tmp_path / "no-dir" / "d.qcow2"), "--create-disk"], "does not exist"),
        (["install", "--win7-iso", str(tmp_path / "missing.iso"), "--disk-image", str(existing)], "--win7-iso"),
        (["install", "--win7-iso", str(not_iso), "--disk-image", str(existing)], "not an ISO image"),
        ([*base, "--disk-image", str(existing), "--provisioning-iso", str(tmp_path / "p.iso")], "--provisioning-iso"),
        ([*base, "--disk-image", str(existing), "--memory-mb", "64"], "--memory-mb"),
        ([*base, "--disk-image", str(existing), "--smp", "0"], "--smp"),
        ([*base, "--disk-image", str(tmp_path / "n.qcow2"), "--create-disk", "--disk-size-gb", "0"], "--disk-size-gb"),
        ([*base, "--disk-image", str(existing), "--disk-size-gb", "big"], "--disk-size-gb"),
        ([*base, "--disk-image", str(existing), "--qemu-system", str(tmp_path / "no-qemu")], "QEMU not found"),
        ([*base, "--disk-image", str(existing), "--accel", "hvf"], "--accel"),
        (["install", "--disk-image", str(existing)], "--win7-iso"),
    ]
    for argv, detail in cases:
        code = _cli(argv)
        out = capsys.readouterr().out.splitlines()
        assert code == 2, argv
        assert len(out) == 1, (argv, out)
        assert out[0].startswith("FAIL: USAGE: ") and detail in out[0], (argv, out[0])
    assert prov.exists()


@pytest.mark.bad_input
def test_failed_disk_creation_is_a_usage_error(tmp_path: Path, isos: tuple[Path, Path],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    win7, prov = isos
    disk = tmp_path / "d.qcow2"
    code = _cli(["install", "--win7-iso", str(win7), "--provisioning-iso", str(prov), "--disk-image", str(disk),
                 "--create-disk", "--qemu-img", "false", "--display", "none"])
    out = capsys.readouterr().out.splitlines()
    assert code == 2
    assert out == ["FAIL: USAGE: cannot create the disk image: exit code 1"]
    assert not disk.exists()


def _wait_for(path: Path, proc: subprocess.Popen[str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, f"installer ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.1)


@pytest.mark.qemu
def test_real_launch_creates_the_disk_and_attaches_everything(tmp_path: Path, isos: tuple[Path, Path]) -> None:
    """A real qemu-img and QEMU: the disk is made, QEMU accepts the command line, QMP shows the devices
    (no virtio keyboard or mouse: Setup's pointer is the USB tablet); SIGTERM to the installer stops
    QEMU and ends in the INTERRUPTED line."""
    win7, prov = isos
    disk = tmp_path / "win7.qcow2"
    qmp = tmp_path / "qmp.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "install", "--win7-iso", str(win7), "--provisioning-iso", str(prov),
         "--disk-image", str(disk), "--create-disk", "--disk-size-gb", "2", "--accel", "tcg", "--memory-mb", "256",
         "--display", "none", "--", "-qmp", f"unix:{qmp},server=on,wait=off"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_for(qmp, proc, 30)
        monitor = QEMUMonitorProtocol(str(qmp))
        monitor.connect()
        try:
            blocks = {b["device"] or b["qdev"]: b for b in monitor.cmd_obj({"execute": "query-block"})["return"]}
            pci = monitor.cmd_obj({"execute": "query-pci"})["return"]
            mice = monitor.cmd_obj({"execute": "query-mice"})["return"]
        finally:
            monitor.close()
        info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", str(disk)],
                                         capture_output=True, text=True, check=True).stdout)
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)

    assert info["format"] == "qcow2" and info["virtual-size"] == 2 * 1024**3
    assert blocks["disk0"]["inserted"]["file"] == str(disk)
    assert blocks["disk0"]["inserted"]["drv"] == "qcow2"
    assert blocks["win7-setup"]["inserted"]["file"] == str(win7)
    assert blocks["win7-setup"]["inserted"]["ro"] is True
    assert blocks["aero-provisioning"]["inserted"]["file"] == str(prov)
    virtio = {(d["id"]["vendor"], d["id"]["device"]) for bus in pci for d in bus["devices"]}
    assert {(0x1AF4, 0x1042), (0x1AF4, 0x1041)} <= virtio  # the contract layout's disk and NIC
    assert (0x1AF4, 0x1052) not in virtio  # no virtio input device: Setup has no driver for it
    assert {m["name"] for m in mice} == {"QEMU PS/2 Mouse", "QEMU HID Tablet"}  # Setup's pointers, no virtio one
    assert "aero_virtio_blk.inf" in stdout  # Setup's "Load driver" step names the storage INF

    lines = stdout.splitlines()
    assert lines[0] == f"created {disk} (2 GB, qcow2)"
    assert any("Load driver" in line for line in lines)
    assert lines[-1] == "FAIL: INTERRUPTED: stopped by SIGTERM", (stdout, stderr)
    assert proc.returncode == 130
    assert not qmp.exists()  # QEMU removes its QMP socket only when it shuts down cleanly (not when killed)
    assert os.path.getsize(disk) > 0
