"""The reference guest's options, on the build host: the guest's own shell (busybox from the
builder's cache) runs selftest.sh in its dry-run mode (AERO_SELFTEST_DRY=1), which parses the baked
and the fw_cfg words, prints START and CONFIG (or the usage error) and the resolved options.

What the guest then does under QEMU, driven by the harness, is in test_reference_guest_e2e.py.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.guestlog import MARK, parse_record

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- the option parser (no QEMU)


def busybox_path(request: pytest.FixtureRequest) -> str:
    """The guest's own shell: busybox from the builder's cache (built first if the cache is cold)."""
    from tests.refguest import CACHE

    found = sorted(CACHE.glob("extract/busybox-static_*/usr/bin/busybox"))
    if not found:
        request.getfixturevalue("guest")  # a build fills the cache
        found = sorted(CACHE.glob("extract/busybox-static_*/usr/bin/busybox"))
    assert found, f"no busybox in {CACHE}"
    return str(found[-1])


def dry_run(busybox: str, tmp: Path, baked: str, fwcfg: str | None) -> tuple[list[str], dict[str, str]]:
    """selftest.sh's option handling on the build host: the COM1 lines and the resolved options."""
    conf = tmp / "selftest.conf"
    conf.write_text(f"AERO_BUILD_ID='test'\nAERO_GUEST_ARGS='{baked}'\n")
    fw = tmp / "fwcfg"
    if fwcfg is not None:
        fw.write_text(fwcfg)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TMPDIR": str(tmp), "AERO_SELFTEST_DRY": "1",
           "AERO_LIB": str(REPO / "reference-guest" / "guest"), "AERO_SELFTEST_CONF": str(conf),
           "AERO_SELFTEST_FWCFG": str(fw)}  # fmt: skip
    proc = subprocess.run([busybox, "sh", str(REPO / "reference-guest" / "guest" / "selftest.sh")], env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.replace("\r\n", "\n").splitlines()
    opts = dict(line[4:].split("=", 1) for line in out if line.startswith("opt "))
    return [line for line in out if not line.startswith("opt ")], opts


BAKED = "--http-url http://10.0.2.2:18080/aero-virtio-selftest --udp-port 18081"


def test_fw_cfg_words_come_after_the_baked_ones_and_win(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    bb = busybox_path(request)
    lines, opts = dry_run(bb, tmp_path, BAKED + " --require-snd",
                          "--udp-port 19000 --dns-host foo.lan --test-input-events-extended --test-tablet-events "
                          "--test-input-leds --no-such-flag --http-url http://10.0.2.2:8080/x\n")  # fmt: skip
    assert lines[0] == "AERO_VIRTIO_SELFTEST|START|version=1"
    assert "reference-guest: unknown arg: --no-such-flag" in lines
    config = next(parse_record(line) for line in lines if line.startswith(MARK + "CONFIG"))
    assert config is not None
    keys = list(config.fields)
    assert keys[:10] == ["http_url", "http_url_large", "udp_port", "dns_host", "blk_root", "expect_blk_msi",
                         "require_net_msix", "require_input_msix", "require_snd_msix", "test_net_link_flap"]
    assert config["http_url"] == "http://10.0.2.2:8080/x" and config["http_url_large"] == "http://10.0.2.2:8080/x-large"
    assert (config["udp_port"], config["dns_host"], config["blk_root"]) == ("19000", "foo.lan", "")
    assert config["guest"] == "aero-reference-linux" and config["fwcfg_args"] == "10"
    for flag in ("require_snd", "test_input_events", "test_input_events_modifiers", "test_input_events_buttons",
                 "test_input_events_wheel", "test_input_tablet_events", "test_input_led"):
        assert config[flag] == "1", flag
    assert "disable_snd" not in config.fields
    assert (opts["AERO_HTTP_HOST"], opts["AERO_HTTP_PORT"], opts["AERO_HTTP_PATH"]) == ("10.0.2.2", "8080", "/x")
    assert not any(line.startswith(MARK + "RESULT") for line in lines)  # no usage error: the run goes on


def test_without_fw_cfg_the_baked_options_hold(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    lines, opts = dry_run(busybox_path(request), tmp_path, BAKED, None)
    config = parse_record(lines[1])
    assert config is not None and config.kind == "CONFIG"
    assert (config["udp_port"], config["dns_host"], config["fwcfg_args"]) == ("18081", "host.lan", "0")
    assert opts["OPT_NET_TIMEOUT_SEC"] == "120" and opts["REQUIRE_SND"] == "0"
    assert opts["OPT_HOST_WAIT_SEC"] == ""  # the host-coordinated tests keep their own deadlines


def test_host_wait_sec_shortens_every_host_deadline_and_says_so_in_config(request: pytest.FixtureRequest,
                                                                          tmp_path: Path) -> None:
    lines, opts = dry_run(busybox_path(request), tmp_path, BAKED, "--host-wait-sec 4")
    config = parse_record(lines[1])
    assert config is not None and config["host_wait_sec"] == "4"
    assert opts["OPT_HOST_WAIT_SEC"] == "4"


@pytest.mark.parametrize(("words", "message"), [
    ("--disable-snd --test-snd", "reference-guest: --disable-snd cannot be combined with --require-snd"),
    ("--disable-snd --require-snd-msix", "reference-guest: --disable-snd cannot be combined with --require-snd-msix"),
    ("--disable-snd-capture --require-non-silence",
     "reference-guest: --disable-snd-capture cannot be combined with --require-non-silence"),
    ("--udp-port 0", "reference-guest: --udp-port 0: must be 1..65535"),
    ("--net-timeout-sec soon", "reference-guest: --net-timeout-sec soon: not a number"),
    ("--http-url ftp://x/", "reference-guest: --http-url ftp://x/: must be http://HOST[:PORT]/PATH"),
    ("--dns-host", "reference-guest: missing value for --dns-host"),
    ("--host-wait-sec 0", "reference-guest: --host-wait-sec 0: must be 1..600"),
])  # fmt: skip
def test_conflicts_and_bad_values_end_the_run_with_a_failure(request: pytest.FixtureRequest, tmp_path: Path,
                                                            words: str, message: str) -> None:
    lines, _ = dry_run(busybox_path(request), tmp_path, BAKED, words)
    assert message in lines
    assert lines[-1] == "AERO_VIRTIO_SELFTEST|RESULT|FAIL"
    assert [r.kind for r in map(parse_record, lines) if r] == ["START", "CONFIG", "RESULT"]
