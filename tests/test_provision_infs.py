"""Which INFs ``provision.cmd`` installs: the default list, ``--inf-allow-list``, ``--install-all-infs``.

Each case reads the ISO back and takes the install order from the script's ``pnputil`` lines.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_provision_iso import (
    DEFAULT_INSTALL,
    DRIVER_FILES,
    HWIDS,
    OpenIso,
    inf_text,
    inputs,  # noqa: F401 - a fixture
    installed,
    make_inputs,
    open_iso,  # noqa: F401 - a fixture
    usage_fails,
)

from harness.cli import main

LEGACY = "snd & co (test)/w7/aero-virtio-snd-legacy.inf"


def _installs(capsys: pytest.CaptureFixture[str], open_iso: OpenIso, exe: Path, drivers: Path,  # noqa: F811
              *extra: str, warnings: list[str] | None = None) -> list[str]:
    """The INFs the script installs, in order (the manifest and the text file agree); stderr into ``warnings``."""
    out = drivers.parent / "sel.iso"
    code = main(["provision", "--selftest-exe", str(exe), "--drivers-dir", str(drivers), "--output-iso", str(out),
                 *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.out
    if warnings is not None:
        warnings[:] = [line for line in captured.err.splitlines() if line.startswith("WARNING: ")]
    iso = open_iso(out)
    found = [path.removeprefix("AERO/drivers/") for path in installed(iso.script())]
    manifest = json.loads(iso.read("AERO/provision/manifest.json"))
    assert manifest["infs"]["installed"] == found
    text = iso.read("AERO_WIN7_PROVISIONING.TXT").decode("utf-8")
    for number, rel in enumerate(found, start=1):
        assert f"  {number}. AERO\\drivers\\{rel.replace('/', chr(92))}\r\n" in text
    return found


def test_default_list_installs_the_contract_drivers(inputs: tuple[Path, Path],  # noqa: F811
                                                    capsys: pytest.CaptureFixture[str],
                                                    open_iso: OpenIso) -> None:  # noqa: F811
    exe, drivers = inputs
    warnings: list[str] = []
    assert _installs(capsys, open_iso, exe, drivers, warnings=warnings) == DEFAULT_INSTALL
    (warning,) = warnings
    assert warning.startswith("WARNING: not installed (not in the default list): ")
    assert "tools/virtio-transport-test.inf" in warning


def test_transitional_snd_adds_the_legacy_inf(inputs: tuple[Path, Path],  # noqa: F811
                                              capsys: pytest.CaptureFixture[str], open_iso: OpenIso) -> None:  # noqa: F811
    exe, drivers = inputs
    assert _installs(capsys, open_iso, exe, drivers, "--allow-virtio-snd-transitional") == [*DEFAULT_INSTALL, LEGACY]
    # A list of one's own must name it.
    assert _installs(capsys, open_iso, exe, drivers, "--allow-virtio-snd-transitional",
                     "--inf-allow-list", "aero_virtio_snd.inf") == ["snd & co (test)/w7/aero_virtio_snd.inf"]


def test_a_missing_default_inf_is_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            open_iso: OpenIso) -> None:  # noqa: F811
    files = {rel: data for rel, data in DRIVER_FILES.items() if "tablet" not in rel}
    exe, drivers = make_inputs(tmp_path, files)
    warnings: list[str] = []
    assert _installs(capsys, open_iso, exe, drivers, warnings=warnings) == [
        rel for rel in DEFAULT_INSTALL if "tablet" not in rel]
    assert "WARNING: aero_virtio_tablet.inf of the default INF list is not under --drivers-dir; it is skipped" in \
        warnings


@pytest.mark.bad_input
def test_no_default_inf_at_all_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exe, drivers = make_inputs(tmp_path, {"viostor/viostor.inf": b"[Version]\r\n"})
    line = usage_fails(capsys, ["--selftest-exe", str(exe), "--drivers-dir", str(drivers),
                                "--output-dir", str(tmp_path / "t")], "no INF of the default list")
    assert "--inf-allow-list" in line and "--install-all-infs" in line
    assert not (tmp_path / "t").exists()


def test_allow_list_by_name_keeps_its_order(inputs: tuple[Path, Path],  # noqa: F811
                                            capsys: pytest.CaptureFixture[str], open_iso: OpenIso) -> None:  # noqa: F811
    exe, drivers = inputs
    assert _installs(capsys, open_iso, exe, drivers, "--inf-allow-list", "aero_virtio_net.inf", "Aero_Virtio_Blk.INF",
                     "--inf-allow-list", "virtio-transport-test.inf") == [
        "net kvm/AERO_VIRTIO_NET.INF", "blk/aero_virtio_blk.inf", "tools/virtio-transport-test.inf"]


@pytest.mark.parametrize(
    "entry",
    [
        "snd & co (test)/w7/aero_virtio_snd.inf",
        "snd & co (test)\\w7\\AERO_VIRTIO_SND.inf",
        ".\\snd & co (test)\\w7\\aero_virtio_snd.inf",
        "./snd & co (test)/w7/aero_virtio_snd.inf",
        "\\snd & co (test)\\w7\\aero_virtio_snd.inf",
        # Upstream's form: the path on its media, under the drivers folder's own name.
        "drivers out\\snd & co (test)\\w7\\aero_virtio_snd.inf",
        "  snd & co (test)/w7/aero_virtio_snd.inf  ",
    ],
)
def test_allow_list_by_relative_path(inputs: tuple[Path, Path], capsys: pytest.CaptureFixture[str],  # noqa: F811
                                     open_iso: OpenIso, entry: str) -> None:  # noqa: F811
    exe, drivers = inputs
    assert _installs(capsys, open_iso, exe, drivers, "--inf-allow-list", entry) == [
        "snd & co (test)/w7/aero_virtio_snd.inf"]


def test_the_same_inf_twice_is_installed_once(inputs: tuple[Path, Path],  # noqa: F811
                                              capsys: pytest.CaptureFixture[str], open_iso: OpenIso) -> None:  # noqa: F811
    exe, drivers = inputs
    assert _installs(capsys, open_iso, exe, drivers, "--inf-allow-list", "aero_virtio_blk.inf", "aero_virtio_net.inf",
                     "BLK/AERO_VIRTIO_BLK.INF") == ["blk/aero_virtio_blk.inf", "net kvm/AERO_VIRTIO_NET.INF"]


def _with_second_blk(tmp_path: Path, data: bytes) -> tuple[Path, Path]:
    return make_inputs(tmp_path, {**DRIVER_FILES, "old/blk/aero_virtio_blk.inf": data})


@pytest.mark.bad_input
def test_an_ambiguous_name_needs_a_relative_path(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 open_iso: OpenIso) -> None:  # noqa: F811
    exe, drivers = _with_second_blk(tmp_path, inf_text(HWIDS["blk"]))
    base = ["--selftest-exe", str(exe), "--drivers-dir", str(drivers), "--output-iso", str(tmp_path / "a.iso")]
    line = usage_fails(capsys, [*base, "--inf-allow-list", "aero_virtio_blk.inf"], "matches several INFs")
    assert "blk/aero_virtio_blk.inf, old/blk/aero_virtio_blk.inf" in line and "relative path" in line
    # The default list cannot choose either when both list the contract's ID.
    usage_fails(capsys, base, "the default list's aero_virtio_blk.inf matches several INFs")
    assert not (tmp_path / "a.iso").exists()
    assert _installs(capsys, open_iso, exe, drivers, "--inf-allow-list", "old/blk/aero_virtio_blk.inf") == [
        "old/blk/aero_virtio_blk.inf"]


def test_the_default_list_prefers_the_inf_with_the_contract_id(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                open_iso: OpenIso) -> None:  # noqa: F811
    # A transitional-only blk driver beside the contract one: the default list takes the contract one.
    exe, drivers = _with_second_blk(tmp_path, inf_text("PCI\\VEN_1AF4&DEV_1001"))
    assert _installs(capsys, open_iso, exe, drivers) == DEFAULT_INSTALL
    # Also when the contract one is UTF-16 and in another case (the ID is compared without case).
    files = {**DRIVER_FILES, "blk/aero_virtio_blk.inf": inf_text(HWIDS["blk"].lower(), utf16=True),
             "old/aero_virtio_blk.inf": b"[Version]\r\n"}
    exe, drivers = make_inputs(tmp_path / "b", files)
    assert _installs(capsys, open_iso, exe, drivers) == DEFAULT_INSTALL
    # An explicit list does not guess.
    usage_fails(capsys, ["--selftest-exe", str(exe), "--drivers-dir", str(drivers), "--output-iso",
                         str(tmp_path / "c.iso"), "--inf-allow-list", "aero_virtio_blk.inf"], "matches several INFs")


@pytest.mark.bad_input
def test_an_entry_matching_nothing_names_the_available_infs(inputs: tuple[Path, Path],  # noqa: F811
                                                            tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    exe, drivers = inputs
    base = ["--selftest-exe", str(exe), "--drivers-dir", str(drivers), "--output-dir", str(tmp_path / "t"),
            "--output-iso", str(tmp_path / "t.iso")]
    line = usage_fails(capsys, [*base, "--inf-allow-list", "aero_virtio_blk.inf", "viostor.inf"],
                       "--inf-allow-list entry 'viostor.inf' matches no .inf under --drivers-dir")
    available = sorted((rel for rel in DRIVER_FILES if rel.lower().endswith(".inf")), key=str.casefold)
    assert line.endswith("the INFs there: " + ", ".join(available))
    usage_fails(capsys, [*base, "--inf-allow-list", "input/aero_virtio_blk.inf"], "matches no .inf")
    usage_fails(capsys, [*base, "--inf-allow-list", " "], "empty entry")
    usage_fails(capsys, [*base, "--inf-allow-list"], "--inf-allow-list")
    assert not (tmp_path / "t").exists() and not (tmp_path / "t.iso").exists()


def test_install_all_infs(inputs: tuple[Path, Path], capsys: pytest.CaptureFixture[str],  # noqa: F811
                          open_iso: OpenIso) -> None:  # noqa: F811
    exe, drivers = inputs
    every = sorted(rel for rel in DRIVER_FILES if rel.lower().endswith(".inf"))
    warnings: list[str] = []
    assert _installs(capsys, open_iso, exe, drivers, "--install-all-infs", warnings=warnings) == every
    assert warnings == []
