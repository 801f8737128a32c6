"""The matrix file: its schema, the expansion (defaults, images x flag sets), the flag check, and
the commands that read it (``matrix validate``, ``matrix list``). Bad input is one USAGE line that
names the file, the line, the case and the key, exit 2, and nothing starts."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from harness.errors import UsageError
from harness.fleet.case import Case, cases_from_json
from harness.fleet.expand import load_matrix
from harness.fleet.schema import DEFAULT_RUNNER, SCHEMA
from harness.qemu.bootsector import Ending, build_image

GOOD = """\
version: 1
parallelism: 3
defaults:
  timeout: 900
  flags: [--snapshot, --, -smp, "1"]
cases:
  - name: win7-snd
    image: images/win7.qcow2
    flags: [--enable-virtio-snd, --virtio-snd-audio-backend, wav, --, -name, win7]
    runner: [self-hosted, linux, kvm, win7]
  - name: ref
    selfcheck: true
    timeout: 1
    harness_image: aero-win7-harness:test
products:
  - prefix: ref
    images:
      guest: {selfcheck: true}
      disk: /srv/images/other.qcow2
    flag_sets:
      contract: []
      transitional: [--virtio-transitional]
    flags: [--memory-mb, "1024"]
"""


def write(tmp_path: Path, text: str, name: str = "matrix.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def harness(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True, text=True,
                          timeout=60, cwd=cwd, stdin=subprocess.DEVNULL, check=False)


def usage_line(tmp_path: Path, text: str) -> str:
    with pytest.raises(UsageError) as caught:
        load_matrix(write(tmp_path, text))
    return caught.value.verdict_line()


# -- the schema and the expansion -------------------------------------------------------------------


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)


def test_cases_then_products_with_defaults_applied(tmp_path: Path) -> None:
    matrix = load_matrix(write(tmp_path, GOOD))
    assert matrix.parallelism == 3
    assert matrix.names() == ["win7-snd", "ref", "ref-guest-contract", "ref-guest-transitional",
                              "ref-disk-contract", "ref-disk-transitional"]
    win7 = matrix.case("win7-snd")
    assert win7.image is not None and str(win7.image) == str(tmp_path / "images" / "win7.qcow2")
    assert win7.flags == ("--snapshot", "--enable-virtio-snd", "--virtio-snd-audio-backend", "wav")
    assert win7.qemu_args == ("-smp", "1", "-name", "win7")  # defaults' QEMU arguments first
    assert (win7.timeout_s, win7.runner) == (900.0, ("self-hosted", "linux", "kvm", "win7"))
    ref = matrix.case("ref")
    assert (ref.selfcheck, ref.image, ref.timeout_s, ref.harness_image) == (True, None, 1.0, "aero-win7-harness:test")
    assert ref.runner == DEFAULT_RUNNER
    transitional = matrix.case("ref-disk-transitional")
    assert str(transitional.image) == "/srv/images/other.qcow2"  # absolute paths stay
    assert transitional.flags == ("--snapshot", "--memory-mb", "1024", "--virtio-transitional")
    assert transitional.memory_mb == 1024


def test_timeouts_default_to_the_harnesss_own(tmp_path: Path) -> None:
    matrix = load_matrix(write(tmp_path, """\
        version: 1
        cases:
          - {name: a, selfcheck: true}
          - {name: b, image: b.qcow2}
    """))
    assert [c.timeout_s for c in matrix.cases] == [300.0, 600.0]


def test_a_case_runs_with_the_fleets_own_flags_added(tmp_path: Path) -> None:
    matrix = load_matrix(write(tmp_path, GOOD))
    assert matrix.case("win7-snd").harness_argv(Path("/out/x")) == [
        "run", "--disk-image", str(tmp_path / "images" / "win7.qcow2"), "--snapshot", "--enable-virtio-snd",
        "--virtio-snd-audio-backend", "wav", "--timeout-seconds", "900", "--out-dir", "/out/x",
        "--", "-smp", "1", "-name", "win7"]
    assert matrix.case("ref").harness_argv(Path("o"), ["--network-isolation", "off"]) == [
        "selfcheck", "--snapshot", "--timeout-seconds", "1", "--out-dir", "o", "--network-isolation", "off",
        "--", "-smp", "1"]


def test_the_json_form_round_trips(tmp_path: Path) -> None:
    matrix = load_matrix(write(tmp_path, GOOD))
    again = cases_from_json(json.loads(json.dumps([c.to_json() for c in matrix.cases])))
    assert again == list(matrix.cases)
    with pytest.raises(UsageError):
        Case.from_json({"name": "x"})


# -- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("version: 1\ncases:\n  - name: a\n    selfcheck: true\n  - name: b\n    selfcheck: true\n    timout: 3\n",
     "matrix.yaml:7: case 'b': timout: unknown key (known: flags, harness_image, image, name, runner, selfcheck, "
     "timeout)"),
    ("version: 1\ncases:\n  - name: a\n    selfcheck: true\n    flags: [--no-such-flag]\n",
     "matrix.yaml:5: case 'a': flags: unrecognized arguments: --no-such-flag"),
    ("version: 1\ncases:\n  - name: a\n    selfcheck: true\n    flags: [--memory-mb, '8']\n",
     "matrix.yaml:5: case 'a': flags: --memory-mb must be at least 16, not 8"),
    ("version: 1\ncases:\n  - name: a\n    selfcheck: true\n    flags: [--snapshot, --write-to-image]\n",
     "matrix.yaml:5: case 'a': flags: --snapshot and --write-to-image exclude each other"),
    ("version: 1\ncases:\n  - name: a\n    selfcheck: true\n  - name: a\n    image: x.qcow2\n",
     "matrix.yaml:5: case 'a': name: duplicate case name 'a' (first at line 3)"),
    ("version: 1\ncases:\n  - name: ref-g-x\n    selfcheck: true\nproducts:\n  - prefix: ref\n"
     "    images: {g: {selfcheck: true}}\n    flag_sets: {x: []}\n",
     "matrix.yaml:7: products[0] (prefix 'ref'): images.g: duplicate case name 'ref-g-x' (first at line 3)"),
    ("version: 1\ncases:\n  - name: a\n    selfcheck: true\n    flags: [--out-dir, x]\n",
     "matrix.yaml:5: case 'a': flags: --out-dir is not a case flag: the fleet gives each case its own out dir"),
    ("version: 1\ncases:\n  - name: a\n    selfcheck: true\n    flags: [--serial-log=x.log]\n",
     "matrix.yaml:5: case 'a': flags: --serial-log is not a case flag: the fleet puts every output in the case's "
     "out dir"),
    ("version: 1\ncases:\n  - name: a\n    selfcheck: true\n    flags: [--timeout-seconds, '5']\n",
     "matrix.yaml:5: case 'a': flags: --timeout-seconds is not a case flag: use the case's 'timeout' key"),
    ("version: 1\ncases:\n  - name: a\n    selfcheck: true\n    flags: [--print-qemu]\n",
     "matrix.yaml:5: case 'a': flags: --print-qemu is not a case flag: a case must run (a dry run writes no "
     "results)"),
    ("version: 1\ncases:\n  - name: a\n    image: x.qcow2\n    selfcheck: true\n",
     "matrix.yaml:4: case 'a': image: a selfcheck case has no image (the reference guest is in the harness image)"),
    ("version: 1\ncases:\n  - name: a\n", "matrix.yaml:3: case 'a': missing key 'image' (give image: PATH or "
                                          "selfcheck: true)"),
    ("version: 1\ncases:\n  - name: a b\n    selfcheck: true\n",
     "matrix.yaml:3: case 'a b': name: 'a b' does not match ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"),
    ("version: 1\ncases:\n  - name: a\n    selfcheck: true\n    timeout: 0\n",
     "matrix.yaml:5: case 'a': timeout: 0: must be greater than 0"),
    ("version: 2\ncases:\n  - {name: a, selfcheck: true}\n",
     "matrix.yaml:1: version: version 2 is not supported (this harness reads version 1)"),
    ("version: 1\n", "matrix.yaml: no cases: give 'cases' or 'products'"),
    ("version: 1\nparallelism: 0\ncases:\n  - {name: a, selfcheck: true}\n",
     "matrix.yaml:2: parallelism: 0: must be at least 1"),
    ("version: 1\nproducts:\n  - images: {g: {selfcheck: true}, h: 3}\n    flag_sets: {x: []}\n",
     "matrix.yaml:3: products[0]: images.h: an image is a path or {selfcheck: true}"),
    ("version: 1\nproducts:\n  - images: {g: {selfcheck: true}}\n    flag_sets: {x: [--memory-mb, '8']}\n",
     "matrix.yaml:4: products[0]: flag_sets.x: case 'g-x': --memory-mb must be at least 16, not 8"),
    # a mistake in an inherited flag list is blamed where it is, not on the case that inherits it
    ("version: 1\ndefaults:\n  timeout: 60\n  flags: [--bogus]\ncases:\n  - {name: a, selfcheck: true, flags: [--smp, '1']}\n",
     "matrix.yaml:4: defaults: flags: unrecognized arguments: --bogus"),
    ("version: 1\ndefaults:\n  flags: [--snapshot]\ncases:\n  - name: a\n    selfcheck: true\n"
     "    flags: [--write-to-image]\n",
     "matrix.yaml:7: case 'a': flags: --snapshot and --write-to-image exclude each other (with defaults.flags)"),
    ("version: 1\nproducts:\n  - prefix: ref\n    images: {g: {selfcheck: true}}\n    flags: [--memory-mb, '8']\n"
     "    flag_sets: {x: [], y: [--virtio-transitional]}\n",
     "matrix.yaml:5: products[0] (prefix 'ref'): flags: --memory-mb must be at least 16, not 8"),
    ("version: 1\ndefaults:\n  flags: [--smp, '1']\nproducts:\n  - images: {g: {selfcheck: true}}\n"
     "    flags: [--snapshot]\n    flag_sets:\n      x: []\n      y: [--write-to-image]\n",
     "matrix.yaml:9: products[0]: flag_sets.y: case 'g-y': --snapshot and --write-to-image exclude each other "
     "(with products[0].flags)"),
    ("version: 1\ndefaults:\n  flags: [--snapshot]\nproducts:\n  - images: {g: {selfcheck: true}}\n"
     "    flag_sets: {x: [--memory-mb, '8']}\n",
     "matrix.yaml:6: products[0]: flag_sets.x: case 'g-x': --memory-mb must be at least 16, not 8"),
    # an inherited list refused alone for want of what the case supplies is not blamed for the case's own error
    ("version: 1\ndefaults:\n  flags: [--raw-serial]\ncases:\n  - name: a\n    selfcheck: true\n"
     "    flags: [--follow-serial, --smp, '0']\n",
     "matrix.yaml:7: case 'a': flags: --smp must be at least 1, not 0"),
    ("version: 1\ndefaults:\n  flag: [--snapshot]\ncases:\n  - {name: a, selfcheck: true}\n",
     "matrix.yaml:3: defaults: flag: unknown key (known: flags, harness_image, runner, timeout)"),
    ("version: 1\ncases: [1\n", "matrix.yaml:3: not valid YAML: expected ',' or ']', but got '<stream end>'"),
    ("version: 1\nversion: 1\n", "matrix.yaml:2: not valid YAML: found duplicate key \"version\" with value \"1\" "
                                 "(original value: \"1\")"),
    ("- a\n- b\n", "matrix.yaml: a matrix is a mapping of keys (version, defaults, cases, products), not "
                   "CommentedSeq"),
    ("", "matrix.yaml: empty: a matrix needs 'version' and 'cases' or 'products'"),
], ids=lambda v: v.split(":")[0] if v.startswith("matrix") else None)
@pytest.mark.bad_input
def test_bad_matrices_are_one_line_naming_the_case_and_the_key(tmp_path: Path, text: str, expected: str) -> None:
    assert usage_line(tmp_path, text) == f"FAIL: USAGE: {tmp_path / expected}"


@pytest.mark.bad_input
def test_validate_and_list_print_one_usage_line_and_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\ncases:\n  - name: a\n    selfcheck: true\n    flags: [--bogus]\n")
    for action in ("validate", "list"):
        proc = harness("matrix", action, path)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stdout.splitlines() == [f"FAIL: USAGE: {path}:5: case 'a': flags: unrecognized arguments: "
                                            "--bogus"]
        assert "Traceback" not in proc.stderr


@pytest.mark.bad_input
def test_a_missing_or_unreadable_file_is_usage(tmp_path: Path) -> None:
    proc = harness("matrix", "validate", tmp_path / "nope.yaml")
    assert (proc.returncode, proc.stdout) == (2, f"FAIL: USAGE: matrix file not found: {tmp_path / 'nope.yaml'}\n")
    (tmp_path / "bin.yaml").write_bytes(b"version: 1\n\xff\xfe\n")
    proc = harness("matrix", "validate", tmp_path / "bin.yaml")
    assert (proc.returncode, proc.stdout) == (2, f"FAIL: USAGE: {tmp_path / 'bin.yaml'}: not UTF-8 text (byte 11)\n")


# -- validate and list -------------------------------------------------------------------------------


def test_validate_says_how_many_cases(tmp_path: Path) -> None:
    proc = harness("matrix", "validate", write(tmp_path, GOOD))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == f"PASS: {tmp_path / 'matrix.yaml'}: 6 case(s) (3 selfcheck), parallelism 3\n"


def test_list_json_is_the_expanded_cases_on_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    proc = harness("matrix", "list", path, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1
    cases = json.loads(proc.stdout)
    assert [c["name"] for c in cases] == load_matrix(path).names()
    assert cases[0] == {"name": "win7-snd", "selfcheck": False, "image": str(tmp_path / "images" / "win7.qcow2"),
                        "flags": ["--snapshot", "--enable-virtio-snd", "--virtio-snd-audio-backend", "wav", "--",
                                  "-smp", "1", "-name", "win7"],
                        "timeout": 900.0, "runner": ["self-hosted", "linux", "kvm", "win7"], "harness_image": None,
                        "memory_mb": 2048, "smp": 2}


def test_list_github_gives_the_outputs_of_a_job(tmp_path: Path) -> None:
    proc = harness("matrix", "list", write(tmp_path, GOOD), "--format", "github", "--case", "ref")
    assert proc.returncode == 0, proc.stderr
    first, second, third = proc.stdout.splitlines()
    assert first.startswith("cases=") and [c["name"] for c in json.loads(first.removeprefix("cases="))] == ["ref"]
    assert second == "parallelism=3"
    assert third == "timeout_minutes=31"  # ref's 1 s, in whole minutes, and 30 for installing and building


def test_the_case_jobs_timeout_follows_the_longest_case_or_is_given(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    proc = harness("matrix", "list", path, "--format", "github")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[2] == "timeout_minutes=45"  # win7-snd: 900 s = 15 min, + 30
    proc = harness("matrix", "list", path, "--format", "github", "--job-timeout-minutes", "200")
    assert proc.stdout.splitlines()[2] == "timeout_minutes=200"
    proc = harness("matrix", "list", path, "--format", "github", "--job-timeout-minutes", "1.5")
    assert (proc.returncode, proc.stdout) == (2, "FAIL: USAGE: argument --job-timeout-minutes: not a whole number "
                                                 "of at least 1: '1.5'\n")
    path = write(tmp_path, "version: 1\ncases:\n  - {name: a, selfcheck: true, timeout: 61}\n", "short.yaml")
    assert harness("matrix", "list", path, "--format", "github").stdout.splitlines()[2] == "timeout_minutes=32"


@pytest.mark.bad_input
def test_list_table_and_an_unknown_case(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    proc = harness("matrix", "list", path)
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.splitlines()
    assert rows[0].split() == ["case", "kind", "image", "timeout", "runner", "flags"]
    assert rows[2].split()[:4] == ["ref", "selfcheck", "(reference", "guest)"]
    assert len(rows) == 7
    proc = harness("matrix", "list", path, "--case", "nope")
    assert proc.returncode == 2
    assert proc.stdout == (f"FAIL: USAGE: {path}: no case named 'nope' (cases: win7-snd, ref, ref-guest-contract, "
                           "ref-guest-transitional, ref-disk-contract, ref-disk-transitional)\n")


# -- a local run's input, refused before anything starts -----------------------------------------------


@pytest.mark.bad_input
def test_matrix_run_refuses_a_missing_image_before_starting_anything(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "win7.qcow2").write_bytes(build_image(b"hello", Ending.HALT))
    path = write(tmp_path, """\
        version: 1
        cases:
          - {name: present, image: images/win7.qcow2}
        products:
          - images: {gone: images/missing.qcow2}
            flag_sets: {plain: []}
    """)
    out = tmp_path / "out"
    proc = harness("matrix", "run", path, "--out-dir", out)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [f"FAIL: USAGE: {path}:5: products[0]: images.gone: case 'gone-plain': "
                                        f"disk image not found: {tmp_path / 'images' / 'missing.qcow2'}"]
    assert not out.exists()  # nothing started, not even a case's folder
    path.write_text("version: 1\ncases:\n  - {name: present, image: images/win7.qcow2}\n"
                    "  - {name: gone, image: images/missing.qcow2}\n", encoding="utf-8")
    proc = harness("matrix", "run", path, "--out-dir", out)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [f"FAIL: USAGE: {path}:4: case 'gone': image: disk image not found: "
                                        f"{tmp_path / 'images' / 'missing.qcow2'}"]  # the case named once
    assert not out.exists()


@pytest.mark.bad_input
def test_matrix_run_refuses_bad_jobs(tmp_path: Path) -> None:
    proc = harness("matrix", "run", write(tmp_path, GOOD), "--jobs", "0")
    assert proc.returncode == 2
    assert proc.stdout.splitlines() == ["FAIL: USAGE: argument --jobs/-j: not a whole number of at least 1: '0'"]
