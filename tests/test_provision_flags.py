"""Every ``provision`` option lands in the boot-time task as the guest selftest's own flag.

Each case builds an ISO, reads it back with pycdlib and splits the task's command line with the
test-side CRT model; the expected flags are written out here, not taken from the harness's table.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_provision_iso import (
    DEFAULT_TASK,
    ENV,
    SELFTEST,
    OpenIso,
    command,
    inputs,  # noqa: F401 - a fixture
    open_iso,  # noqa: F401 - a fixture
    provision,
    task_xml_command_line,
    usage_fails,
)
from wincmd_model import argv, cmd_line

from harness.cli import main
from harness.provision import task as task_module
from harness.provision.flags import SWITCHES, SelftestOptions, guest_flags
from harness.provision.quoting import batch_command

# provision flag (ours, or upstream's name) -> the selftest flags it bakes, in the task's order.
CASES: list[tuple[str, list[str]]] = [
    ("--require-net-msix", ["--require-net-msix"]),
    ("--require-virtio-net-msix", ["--require-net-msix"]),
    ("--require-input-msix", ["--require-input-msix"]),
    ("--require-virtio-input-msix", ["--require-input-msix"]),
    ("--require-snd-msix", ["--require-snd-msix", "--test-snd-capture"]),
    ("--require-virtio-snd-msix", ["--require-snd-msix", "--test-snd-capture"]),
    ("--expect-blk-msi", ["--expect-blk-msi"]),
    ("--test-blk-resize", ["--test-blk-resize"]),
    ("--test-virtio-blk-resize", ["--test-blk-resize"]),
    ("--test-blk-reset", ["--test-blk-reset"]),
    ("--test-virtio-blk-reset", ["--test-blk-reset"]),
    ("--test-input-events", ["--test-input-events"]),
    ("--test-input-events-extended", ["--test-input-events", "--test-input-events-extended"]),
    ("--test-input-events-extra", ["--test-input-events", "--test-input-events-extended"]),
    ("--test-input-media-keys", ["--test-input-media-keys"]),
    ("--test-media-keys", ["--test-input-media-keys"]),
    ("--test-input-leds", ["--test-input-leds"]),
    ("--test-input-led", ["--test-input-led"]),
    ("--test-input-tablet-events", ["--test-input-tablet-events"]),
    ("--test-tablet-events", ["--test-input-tablet-events"]),
    ("--test-net-link-flap", ["--test-net-link-flap"]),
    ("--require-snd", ["--require-snd", "--test-snd-capture"]),
    ("--disable-snd", ["--disable-snd"]),
    ("--disable-snd-capture", ["--disable-snd-capture"]),
    ("--test-snd-capture", ["--test-snd-capture"]),
    ("--require-snd-capture", ["--test-snd-capture", "--require-snd-capture"]),
    ("--require-non-silence", ["--test-snd-capture", "--require-non-silence"]),
    ("--test-snd-buffer-limits", ["--test-snd-capture", "--test-snd-buffer-limits"]),
    ("--allow-virtio-snd-transitional", ["--allow-virtio-snd-transitional"]),
]


def test_the_cases_cover_every_switch_and_alias() -> None:
    assert {flag for flag, _ in CASES} == {name for s in SWITCHES for name in (s.flag, *s.upstream)}


@pytest.mark.parametrize(("flag", "baked"), CASES, ids=[flag for flag, _ in CASES])
def test_each_flag_bakes_the_guest_flag(tmp_path: Path, inputs: tuple[Path, Path],  # noqa: F811
                                        capsys: pytest.CaptureFixture[str], open_iso: OpenIso,  # noqa: F811
                                        flag: str, baked: list[str]) -> None:
    exe, drivers = inputs
    out = tmp_path / "f.iso"
    assert provision(capsys, exe, drivers, "--output-iso", str(out), flag)[0] == 0
    assert open_iso(out).task_argv() == [*DEFAULT_TASK, *baked]


def test_valued_options(tmp_path: Path, inputs: tuple[Path, Path], capsys: pytest.CaptureFixture[str],  # noqa: F811
                        open_iso: OpenIso) -> None:  # noqa: F811
    exe, drivers = inputs
    out = tmp_path / "v.iso"
    assert provision(capsys, exe, drivers, "--output-iso", str(out), "--dns-host", "Aero-Host.example.",
                     "--udp-port", "18081", "--http-url", "https://gw.lan/t", "--blk-root", "E:\\t d\\")[0] == 0
    assert open_iso(out).task_argv() == [SELFTEST, "--http-url", "https://gw.lan/t", "--dns-host",
                                         "Aero-Host.example.", "--udp-port", "18081", "--blk-root", "E:\\t d\\"]


@pytest.mark.parametrize(
    ("flags", "baked"),
    [
        # Capture disabled: no automatic --test-snd-capture.
        (["--require-snd", "--disable-snd-capture"], ["--require-snd", "--disable-snd-capture"]),
        (["--test-snd-buffer-limits", "--disable-snd-capture"], ["--disable-snd-capture", "--test-snd-buffer-limits"]),
        # Given and implied at once: baked once.
        (["--require-snd", "--test-snd-capture"], ["--require-snd", "--test-snd-capture"]),
        (["--test-input-events", "--test-input-events-extended"], ["--test-input-events",
                                                                   "--test-input-events-extended"]),
        # Both disables are the guest's to combine.
        (["--disable-snd", "--disable-snd-capture"], ["--disable-snd", "--disable-snd-capture"]),
    ],
)
def test_implied_flags(tmp_path: Path, inputs: tuple[Path, Path], capsys: pytest.CaptureFixture[str],  # noqa: F811
                       open_iso: OpenIso, flags: list[str], baked: list[str]) -> None:  # noqa: F811
    exe, drivers = inputs
    out = tmp_path / "i.iso"
    assert provision(capsys, exe, drivers, "--output-iso", str(out), *flags)[0] == 0
    assert open_iso(out).task_argv() == [*DEFAULT_TASK, *baked]


def test_help_explains_the_automatic_capture_test(capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "2000")  # argparse wraps at hyphens otherwise
    with pytest.raises(SystemExit) as done:
        main(["provision", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--test-snd-capture" in text
    assert ("turned on without asking by --require-snd, --require-snd-msix, --require-snd-capture, "
            "--require-non-silence or --test-snd-buffer-limits unless --disable-snd or --disable-snd-capture") in text
    for name in ("--selftest-exe-path", "--output-iso-path", "--enable-virtio-input-compat", "--test-tablet-events"):
        assert name in text


ALL_COMPATIBLE = [s.flag for s in SWITCHES if s.flag not in ("--disable-snd", "--disable-snd-capture")]


def test_a_long_command_line_goes_through_the_task_xml(tmp_path: Path, inputs: tuple[Path, Path],  # noqa: F811
                                                       capsys: pytest.CaptureFixture[str],
                                                       open_iso: OpenIso) -> None:  # noqa: F811
    exe, drivers = inputs
    out = tmp_path / "x.iso"
    assert provision(capsys, exe, drivers, "--output-iso", str(out), "--blk-root", "D:\\a & b\\",
                     *ALL_COMPATIBLE)[0] == 0
    iso = open_iso(out)
    assert "AERO/provision/AeroVirtioSelftest.xml" in iso.joliet_files()
    (schtasks,) = command(iso.script(), "schtasks")
    assert "/TR" not in schtasks and "/XML" in schtasks
    expected = [*DEFAULT_TASK, "--blk-root", "D:\\a & b\\", *ALL_COMPATIBLE]
    assert iso.task_argv() == expected
    assert len(task_xml_command_line(iso.read("AERO/provision/AeroVirtioSelftest.xml"))) > 261


@pytest.mark.parametrize(
    ("flags", "detail"),
    [
        (["--disable-snd", "--require-snd"], "--disable-snd contradicts --require-snd"),
        (["--disable-snd", "--require-snd-msix"], "--disable-snd contradicts --require-snd-msix"),
        (["--disable-snd", "--require-virtio-snd-msix"], "--disable-snd contradicts --require-snd-msix"),
        (["--disable-snd", "--require-snd-capture"], "--disable-snd contradicts --require-snd-capture"),
        (["--disable-snd", "--test-snd-capture"], "--disable-snd contradicts --test-snd-capture"),
        (["--disable-snd", "--test-snd-buffer-limits"], "--disable-snd contradicts --test-snd-buffer-limits"),
        (["--disable-snd", "--require-non-silence"], "--disable-snd contradicts --require-non-silence"),
        (["--disable-snd", "--allow-virtio-snd-transitional"],
         "--disable-snd contradicts --allow-virtio-snd-transitional"),
        (["--disable-snd-capture", "--require-snd-capture"], "--disable-snd-capture contradicts --require-snd-capture"),
        (["--disable-snd-capture", "--test-snd-capture"], "--disable-snd-capture contradicts --test-snd-capture"),
        (["--disable-snd-capture", "--require-non-silence"], "--disable-snd-capture contradicts --require-non-silence"),
        (["--install-all-infs", "--inf-allow-list", "aero_virtio_blk.inf"], "--install-all-infs and --inf-allow-list"),
        (["--dns-host", "host lan"], "--dns-host is not a host name"),
        (["--dns-host", "-bad.lan"], "--dns-host"),
        (["--dns-host", "bad-.lan"], "--dns-host"),
        (["--dns-host", "a..lan"], "--dns-host"),
        (["--dns-host", "under_score.lan"], "--dns-host"),
        (["--dns-host", "x" * 64 + ".lan"], "--dns-host"),
        (["--dns-host", ("a" * 60 + ".") * 5], "--dns-host"),
        (["--dns-host", ""], "--dns-host"),
        (["--dns-host", "host.lan&calc"], "--dns-host"),
        (["--dns-host", "h\u00f6st.lan"], "--dns-host"),
    ],
)
@pytest.mark.bad_input
def test_bad_input_writes_nothing(tmp_path: Path, inputs: tuple[Path, Path],  # noqa: F811
                                  capsys: pytest.CaptureFixture[str], flags: list[str], detail: str) -> None:
    exe, drivers = inputs
    tree, iso = tmp_path / "out" / "tree", tmp_path / "out" / "p.iso"
    usage_fails(capsys, ["--selftest-exe", str(exe), "--drivers-dir", str(drivers), "--output-dir", str(tree),
                         "--output-iso", str(iso), *flags], detail)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["host.lan", "HOST.LAN.", "10.0.2.2", "a-b.c", "x" * 63, "localhost"])
def test_host_names_the_guest_can_resolve(tmp_path: Path, inputs: tuple[Path, Path],  # noqa: F811
                                          capsys: pytest.CaptureFixture[str], name: str) -> None:
    exe, drivers = inputs
    assert provision(capsys, exe, drivers, "--output-dir", str(tmp_path / "t"), "--dns-host", name)[0] == 0


# Printable text with every character that matters to either layer (argv quoting, cmd escaping, XML).
_TRICKY = st.text(alphabet=st.sampled_from(list('ab Z09\\"\t %^&|<>()!:;,=*?/.-_~')), min_size=1, max_size=20)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(
    switches=st.lists(st.sampled_from([s.field for s in SWITCHES]), unique=True),
    blk_root=st.none() | _TRICKY.filter(lambda t: t.strip() != "" and '"' not in t),
    http_tail=_TRICKY,
)
def test_the_task_runs_exactly_the_guest_flags(switches: list[str], blk_root: str | None, http_tail: str) -> None:
    """Through /TR (cmd.exe, then schtasks' argv) or the task XML, the selftest reads guest_flags back."""
    turned_on: dict[str, Any] = dict.fromkeys(switches, True)
    options = dataclasses.replace(
        SelftestOptions(http_url="http://10.0.2.2:18080/" + http_tail.replace(" ", "").replace("\t", ""),
                        blk_root=blk_root), **turned_on)
    task = task_module.define_task(options, "test")
    if task.route == "tr":
        schtasks = batch_command(["schtasks", "/TR", task.command_line])
        outer = argv(cmd_line(schtasks, ENV))
        assert outer[:2] == ["schtasks", "/TR"] and len(outer) == 3
        line = outer[2]
    else:
        assert task.xml is not None
        line = task_xml_command_line(task.xml)
    assert line == task.command_line
    assert argv(line) == [SELFTEST, *guest_flags(options)]
