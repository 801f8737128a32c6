"""Windows argv quoting and batch-file escaping, checked against the test-side models."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wincmd_model import argv, cmd_line

from harness.provision.quoting import CmdVar, batch_command, batch_text, join_args, quote_arg

# Printable text with every character that matters to either layer (no controls: refused).
_TRICKY = st.text(
    alphabet=st.sampled_from(list('ab Z09\\"\t %^&|<>()!:;,=*?/.-_~é')),
    max_size=24,
)


@pytest.mark.parametrize(
    ("arg", "quoted"),
    [
        ("plain", "plain"),
        ("", '""'),
        ("D:\\aero-virtio-selftest\\", "D:\\aero-virtio-selftest\\"),  # no blank: left alone
        ("D:\\aero tests\\", '"D:\\aero tests\\\\"'),  # trailing backslash doubled before the closing quote
        ("D:\\aero tests\\\\", '"D:\\aero tests\\\\\\\\"'),
        ('say "hi"', '"say \\"hi\\""'),
        ('a\\"b', '"a\\\\\\"b"'),  # backslash before a quote: doubled, plus the quote's own
        ("a\\b c", '"a\\b c"'),  # backslashes not before a quote stay single
        ("tab\there", '"tab\there"'),
    ],
)
def test_quote_arg_exact(arg: str, quoted: str) -> None:
    assert quote_arg(arg) == quoted
    assert argv("prog " + quoted) == ["prog", arg]


def test_seed_blk_root_trailing_backslash_round_trips() -> None:
    # The seed's example: -BlkRoot "D:\aero-virtio-selftest\" (value ends in a backslash).
    blk_root = "D:\\aero-virtio-selftest\\"
    line = join_args(["C:\\AeroTests\\aero-virtio-selftest.exe", "--blk-root", blk_root, "--require-snd"])
    assert argv(line) == ["C:\\AeroTests\\aero-virtio-selftest.exe", "--blk-root", blk_root, "--require-snd"]
    # Last on the line, and needing quotes: the backslash must not eat the closing quote.
    spaced = "D:\\aero virtio selftest\\"
    line = join_args(["x.exe", "--blk-root", spaced])
    assert line == 'x.exe --blk-root "D:\\aero virtio selftest\\\\"'
    assert argv(line) == ["x.exe", "--blk-root", spaced]


@settings(derandomize=True, max_examples=400)
@given(st.lists(_TRICKY, min_size=1, max_size=5))
def test_join_args_round_trips(args: list[str]) -> None:
    assert argv(join_args(["prog.exe", *args])) == ["prog.exe", *args]


@settings(derandomize=True, max_examples=400)
@given(st.lists(_TRICKY, min_size=1, max_size=5))
def test_batch_command_round_trips_through_cmd(args: list[str]) -> None:
    line = batch_command(["prog.exe", *args])
    assert argv(cmd_line(line)) == ["prog.exe", *args]


@settings(derandomize=True, max_examples=300)
@given(st.lists(_TRICKY, min_size=1, max_size=4))
def test_nested_command_line_survives_both_layers(inner: list[str]) -> None:
    """A whole command line as one argument (schtasks /TR) decodes back to the inner argv."""
    task = join_args(["C:\\AeroTests\\t.exe", *inner])
    outer = argv(cmd_line(batch_command(["schtasks", "/TR", task])))
    assert outer == ["schtasks", "/TR", task]
    assert argv(outer[2]) == ["C:\\AeroTests\\t.exe", *inner]


def test_batch_escaping_of_operators_and_percent() -> None:
    line = batch_command(["echo.exe", "a&b", "50%", "x y&z", "(p)"])
    # Outside quotes the operators get a caret; inside cmd's quotes they stay as they are.
    assert line == 'echo.exe a^&b 50%% "x y&z" ^(p^)'
    assert argv(cmd_line(line)) == ["echo.exe", "a&b", "50%", "x y&z", "(p)"]


def test_cmd_variables_are_expanded_not_escaped() -> None:
    drive = CmdVar("AERO_DRIVE")
    line = batch_command(["pnputil", "-i", "-a", (drive, "\\AERO\\drivers\\net kvm\\netkvm.inf")])
    assert line == 'pnputil -i -a "%AERO_DRIVE%\\AERO\\drivers\\net kvm\\netkvm.inf"'
    expected = ["pnputil", "-i", "-a", "E:\\AERO\\drivers\\net kvm\\netkvm.inf"]
    assert argv(cmd_line(line, {"AERO_DRIVE": "E:"})) == expected
    assert batch_text(["50% of ", drive]) == "50%% of %AERO_DRIVE%"


@pytest.mark.attack
def test_control_characters_are_refused() -> None:
    with pytest.raises(ValueError, match="control character"):
        quote_arg("two\nlines")
    with pytest.raises(ValueError, match="not a cmd variable"):
        CmdVar("A B")
