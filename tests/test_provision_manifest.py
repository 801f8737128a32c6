"""``AERO/provision/manifest.json`` and ``AERO_WIN7_PROVISIONING.TXT``, read back from the ISO."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from test_provision_iso import (
    DEFAULT_INSTALL,
    DEFAULT_TASK,
    OpenIso,
    command,
    inputs,  # noqa: F401 - a fixture
    installed,
    open_iso,  # noqa: F401 - a fixture
    provision,
    task_xml_command_line,
)
from wincmd_model import argv

import harness
from harness.provision.manifest import guest_flags, selftest_options


def _manifest(capsys: pytest.CaptureFixture[str], open_iso: OpenIso, exe: Path, drivers: Path,  # noqa: F811
              *extra: str) -> tuple[dict[str, Any], Any]:
    out = drivers.parent / "m.iso"
    assert provision(capsys, exe, drivers, "--output-iso", str(out), *extra)[0] == 0
    iso = open_iso(out)
    raw = iso.read("AERO/provision/manifest.json")
    assert raw.isascii() and raw.endswith(b"\n")
    data: dict[str, Any] = json.loads(raw)
    return data, iso


def test_the_manifest_records_what_the_media_does(inputs: tuple[Path, Path],  # noqa: F811
                                                  capsys: pytest.CaptureFixture[str],
                                                  open_iso: OpenIso) -> None:  # noqa: F811
    exe, drivers = inputs
    data, iso = _manifest(capsys, open_iso, exe, drivers, "--require-snd", "--udp-port", "28081",
                          "--enable-test-signing", "--inf-allow-list", "aero_virtio_net.inf", "blk/aero_virtio_blk.inf")
    assert data["format"] == "aero-win7-provisioning-manifest" and data["format_version"] == 1
    assert data["harness_version"] == harness.__version__
    assert data["selftest"] == {
        "media_path": "AERO/selftest/aero-virtio-selftest.exe",
        "guest_path": "C:\\AeroTests\\aero-virtio-selftest.exe",
        "sha256": hashlib.sha256(iso.read("AERO/selftest/aero-virtio-selftest.exe")).hexdigest(),
    }
    assert data["selftest"]["sha256"] == hashlib.sha256(exe.read_bytes()).hexdigest()
    options = data["options"]
    assert options["udp-port"] == 28081 and options["dns-host"] == "host.lan" and options["blk-root"] is None
    assert options["require-snd"] is True and options["test-snd-capture"] is True
    assert options["enable-test-signing"] is True and options["auto-reboot"] is False
    assert options["enable-virtio-input-compat-id-name"] is False
    assert options["inf-allow-list"] == ["aero_virtio_net.inf", "blk/aero_virtio_blk.inf"]
    assert options["install-all-infs"] is False
    assert data["implied"] == {"test-snd-capture": "turned on by --require-snd"}
    assert data["infs"]["source"] == "allow-list" and data["infs"]["root"] == "AERO/drivers"
    lines = iso.script()
    assert [f"AERO/drivers/{rel}" for rel in data["infs"]["installed"]] == installed(lines) == [
        "AERO/drivers/net kvm/AERO_VIRTIO_NET.INF", "AERO/drivers/blk/aero_virtio_blk.inf"]
    assert "tools/virtio-transport-test.inf" in data["infs"]["not_installed"]
    # The task: exactly the /TR value the script passes, and the argv the selftest reads from it.
    task = data["task"]
    (schtasks,) = command(lines, "schtasks")
    assert task["name"] == "AeroVirtioSelftest" and task["created_with"] == "schtasks /TR" and task["xml"] is None
    assert task["command_line"] == schtasks[-1]
    assert task["argv"] == argv(task["command_line"]) == iso.task_argv() == [
        *DEFAULT_TASK, "--udp-port", "28081", "--require-snd", "--test-snd-capture"]
    # The run side can rebuild the flags from the options.
    assert guest_flags(selftest_options(data)) == task["argv"][1:]


def test_the_manifest_names_the_task_xml(inputs: tuple[Path, Path], capsys: pytest.CaptureFixture[str],  # noqa: F811
                                         open_iso: OpenIso) -> None:  # noqa: F811
    exe, drivers = inputs
    many = ["--require-net-msix", "--require-input-msix", "--require-snd-msix", "--expect-blk-msi", "--test-blk-reset",
            "--test-blk-resize", "--test-input-events-extended", "--test-input-media-keys", "--test-net-link-flap",
            "--test-input-tablet-events", "--require-snd", "--require-non-silence"]
    data, iso = _manifest(capsys, open_iso, exe, drivers, *many)
    task = data["task"]
    assert task["created_with"] == "schtasks /XML" and task["xml"] == "AERO/provision/AeroVirtioSelftest.xml"
    assert task["command_line"] == task_xml_command_line(iso.read(task["xml"]))
    assert task["argv"] == iso.task_argv()
    assert data["implied"].keys() == {"test-input-events", "test-snd-capture"}
    assert guest_flags(selftest_options(data)) == task["argv"][1:]


def test_the_text_file_lists_the_infs_and_every_option(inputs: tuple[Path, Path],  # noqa: F811
                                                       capsys: pytest.CaptureFixture[str],
                                                       open_iso: OpenIso) -> None:  # noqa: F811
    exe, drivers = inputs
    data, iso = _manifest(capsys, open_iso, exe, drivers, "--test-snd-buffer-limits", "--blk-root", "D:\\t\\",
                          "--enable-virtio-input-compat-id-name")
    raw = iso.read("AERO_WIN7_PROVISIONING.TXT")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    text = raw.decode("utf-8").split("\r\n")
    assert "Driver INFs installed (the default list), in this order:" in text
    for number, rel in enumerate(DEFAULT_INSTALL, start=1):
        assert f"  {number}. AERO\\drivers\\{rel.replace('/', chr(92))}" in text
    assert "  AERO\\drivers\\tools\\virtio-transport-test.inf" in text  # under "not installed"
    assert f"  {data['task']['command_line']}" in text
    assert f"  SHA-256 {data['selftest']['sha256']}" in text
    rows = {line.split()[0]: line.split(None, 1)[1] for line in text if line.startswith("  --")}
    for key in data["options"]:
        assert f"--{key}" in rows or key in ("inf-allow-list", "install-all-infs"), key
    assert rows["--blk-root"] == "D:\\t\\"
    assert rows["--test-snd-capture"] == "yes (turned on by --test-snd-buffer-limits)"
    assert rows["--require-snd"] == "no"
    assert rows["--enable-virtio-input-compat-id-name"].startswith("yes (CompatIdName=1 under HKLM\\System\\")
    # The marker the guest finds the media by.
    assert b"AERO\\provision\\provision.cmd" in iso.read("AERO_PROVISIONING_MEDIA.TXT")
