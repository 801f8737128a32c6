"""End to end: the harness against the Linux reference guest and the real virtio devices (host QEMU).

Each test is one boot of the reference guest, driven by the harness as a Windows image would be:
its devices, its services (HTTP, UDP echo, DNS), its host actions over QMP, its verdict. The guest's
own words are read back from serial.log (tests/guestlog.py), what the services saw from http.log.
Failures are caused for real on the host side (a port the guest was not built for, a host that
does not act, an IDs mismatch), never faked by the guest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.actions import wheel_events
from harness.devices.input import NO_HWHEEL
from tests.conftest import HarnessRun, free_port, harness_argv, missing_prerequisite, qemu_children_of, small_tmpfs
from tests.guestlog import Transcript
from tests.refguest import HTTP_PATH, PATTERN, PATTERN_FNV1A64, Built

pytestmark = [pytest.mark.qemu, pytest.mark.slow, pytest.mark.usefixtures("qemu", "no_stray_qemu")]
Run = Callable[..., HarnessRun]
TCG = ("--accel", "tcg", "--timeout-seconds", "240")
BOOT_S = 300  # the subprocess's own limit, above the harness's
PASS_LINE = "PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS"
FW_CFG = "opt/org.aero/selftest-args"
CONFIG_KEYS = ["http_url", "http_url_large", "udp_port", "dns_host", "blk_root", "expect_blk_msi",
               "require_net_msix", "require_input_msix", "require_snd_msix", "test_net_link_flap"]
# Every host action that QEMU can serve (the wheel's horizontal axis it cannot: see the wheel test);
# the tablet events bring their tablet.
HOST_ACTION_FLAGS = ("--with-input-events", "--with-input-media-keys", "--with-input-tablet-events",
                     "--with-input-led", "--with-input-leds", "--with-net-link-flap", "--with-blk-resize",
                     "--with-blk-reset")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ports_args(ports: tuple[int, int]) -> tuple[str, ...]:
    return "--http-port", str(ports[0]), "--udp-port", str(ports[1])


def guest_args(words: str) -> tuple[str, ...]:
    """QEMU arguments that hand the reference guest selftest flags at boot (as selfcheck does)."""
    return "-fw_cfg", f"name={FW_CFG},string={words}"


def passed(run: HarnessRun) -> None:
    assert (run.returncode, run.last_line) == (0, PASS_LINE), run.stdout[-2000:] + run.stderr[-4000:]


def transcript(run: HarnessRun) -> Transcript:
    return Transcript.read(run.out_dir / "serial.log")


def network_log(run: HarnessRun) -> str:
    return (run.out_dir / "http.log").read_text()


def pci_infos(t: Transcript) -> dict[str, list[dict[str, str]]]:
    """The guest's virtio-pci INFO markers by kind (blk, net, input)."""
    found: dict[str, list[dict[str, str]]] = {}
    for record in t.records:
        if record.name == "virtio-pci":
            found.setdefault(record["kind"], []).append(record.fields)
    return found


# -- the layouts ----------------------------------------------------------------------------------

def test_selfcheck_in_the_contract_layout_speaks_the_real_guests_vocabulary(guest: Built, run_harness: Run,
                                                                           ports: tuple[int, int]) -> None:
    before = sha256(guest.image)
    run = run_harness("selfcheck", "--disk-image", guest.image, *TCG, timeout=BOOT_S)
    passed(run)
    t = transcript(run)
    kinds = [r.kind for r in t.records]
    assert kinds[:2] == ["START", "CONFIG"] and kinds[-1] == "RESULT" and kinds.count("RESULT") == 1
    assert t.records[0].line == "AERO_VIRTIO_SELFTEST|START|version=1"
    config = t.records[1]
    assert list(config.fields)[:10] == CONFIG_KEYS
    doc = run.results()
    assert doc["guest"]["config"]["http_url"] == config["http_url"]  # type: ignore[index]
    # The run's own ports reached the guest through fw_cfg (the image was built for others).
    assert config["http_url"] == f"http://10.0.2.2:{ports[0]}{HTTP_PATH}" and config["udp_port"] == str(ports[1])
    assert config["fwcfg_args"] != "0" and config["dns_host"] == "host.lan", config.line

    # One INFO marker per virtio function, right after CONFIG: the contract's IDs, bound, MSI-X.
    pci = pci_infos(t)
    assert {kind: sorted({f["id"] for f in found}) for kind, found in pci.items()} == \
        {"blk": ["1af4:1042"], "net": ["1af4:1041"], "input": ["1af4:1052"]}
    assert len(pci["input"]) == 2  # the keyboard and the mouse
    for fields in (f for found in pci.values() for f in found):
        assert (fields["rev"], fields["bound"], fields["irq_mode"]) == ("01", "1", "msix"), fields

    # The real guest's order: blk, input, snd, net, then RESULT.
    t.assert_order("virtio-blk-msix", "virtio-blk|PASS", "virtio-input-bind|PASS", "virtio-input|PASS",
                   "virtio-input-msix", "virtio-snd|SKIP", "virtio-snd-capture", "virtio-snd-duplex",
                   "virtio-net-udp|PASS", "virtio-net|PASS", "virtio-net-link-flap|SKIP", "virtio-net-msix")
    blk = t.test("virtio-blk")
    assert list(blk.fields)[:9] == ["irq_mode", "irq_message_count", "write_ok", "write_bytes", "write_mbps",
                                    "flush_ok", "read_ok", "read_bytes", "read_mbps"]
    assert (blk["write_ok"], blk["flush_ok"], blk["read_ok"], blk["verify_ok"]) == ("1", "1", "1", "1")
    assert int(blk["write_bytes"]) == int(blk["read_bytes"]) >= 4 << 20 and float(blk["write_mbps"]) > 0
    inp = t.test("virtio-input")
    assert (inp["devices"], inp["keyboard_devices"], inp["mouse_devices"], inp["irq_mode"]) == ("2", "1", "1", "msix")
    assert t.test("virtio-input-bind")["pnp_id"].startswith("PCI\\VEN_1AF4&DEV_1052&SUBSYS_")
    for name in ("virtio-blk-resize", "virtio-input-events", "virtio-input-media-keys", "virtio-net-link-flap"):
        assert t.test(name).line.endswith(f"|{name}|SKIP|flag_not_set"), name
    snd = t.test("virtio-snd")
    assert snd.status == "SKIP"
    assert t.lines[t.lines.index(snd.line) - 1] == "virtio-snd: skipped (enable with --test-snd)"
    udp = t.test("virtio-net-udp")
    assert (udp["bytes"], udp["small_bytes"], udp["mtu_bytes"], udp["reason"]) == ("1400", "32", "1400", "-")
    net = t.test("virtio-net")
    assert (net["dhcp_ok"], net["ip"], net["large_ok"], net["large_bytes"]) == ("1", "10.0.2.15", "1", "1048576")
    assert net["large_fnv1a64"] == PATTERN_FNV1A64 and net["large_sha256"] == hashlib.sha256(PATTERN).hexdigest()
    assert (net["upload_ok"], net["upload_bytes"], net["upload_status"]) == ("1", "1048576", "200")
    assert (net["dns_name"], net["dns_ip"]) == ("host.lan", "10.0.2.2")  # the harness answered the guest's DNS

    # COM1 as the Windows guest writes it: CRLF only, protocol records and "virtio-..." free text.
    assert t.raw.count(b"\n") == t.raw.count(b"\r\n") and t.raw.endswith(b"\r\n")
    free_text = [line for line in t.lines if not line.startswith("AERO_VIRTIO_SELFTEST|") and line]
    assert free_text and all(line.startswith(("virtio-", "reference-guest:")) for line in free_text), free_text

    # The harness's services saw the guest's real traffic, DNS included, in the run's own network.
    log = network_log(run)
    for needle in ("host.lan. A -> A 10.0.2.2", f"GET {HTTP_PATH} 200", f"GET {HTTP_PATH}-large 200 in=0 out=1048576",
                   f"POST {HTTP_PATH}-large 200 in=1048576 out=3", "32 bytes echoed", "1400 bytes echoed"):
        assert needle in log, log
    assert doc["network_isolation"]["isolated"] is True  # type: ignore[index]
    assert {f["qdev_id"]: f["id"] for f in doc["pci"]} == {  # type: ignore[union-attr]
        "blk0": "1af4:1042", "nic0": "1af4:1041", "kbd0": "1af4:1052", "mouse0": "1af4:1052"}
    phases = doc["timeline"]["phases"]  # type: ignore[index]
    assert 0 < phases["guest_running"] < phases["start"] < phases["marker:virtio-blk"] < phases["result"]
    assert (run.out_dir / "report.html").stat().st_size > 10_000
    assert sha256(guest.image) == before  # selfcheck always runs with snapshot=on


def test_selfcheck_in_the_transitional_layout_passes_as_older_drivers_would(guest: Built, run_harness: Run) -> None:
    run = run_harness("selfcheck", "--disk-image", guest.image, "--virtio-transitional", *TCG, timeout=BOOT_S)
    passed(run)
    t = transcript(run)
    assert t.records[1]["allow_transitional"] == "1"  # selfcheck told the guest, through fw_cfg
    pci = pci_infos(t)
    assert {kind: [(f["id"], f["rev"], f["bound"]) for f in found] for kind, found in pci.items()} == \
        {"blk": [("1af4:1001", "00", "1")], "net": [("1af4:1000", "00", "1")]}
    inp = t.test("virtio-input")  # no input device in this layout: SKIP, never a fake PASS
    assert (inp.status, inp["reason"]) == ("SKIP", "pci_device_missing")
    assert {f["qdev_id"]: f["id"] for f in run.results()["pci"]} == {  # type: ignore[union-attr]
        "blk0": "1af4:1001", "nic0": "1af4:1000"}


def test_the_aero_drivers_do_not_bind_the_transitional_layout(guest: Built, guest_ports: tuple[int, int],
                                                              run_harness: Run) -> None:
    """A guest that binds only the contract IDs (as the Aero drivers do) on QEMU's transitional devices."""
    run = run_harness("--disk-image", guest.image, "--virtio-transitional", "--snapshot", *TCG,
                      *ports_args(guest_ports), ports_=False, timeout=BOOT_S)
    assert run.returncode == 1, run.stdout
    assert run.last_line.startswith("FAIL: VIRTIO_BLK_FAILED: virtio-blk FAIL"), run.last_line
    assert "driver_not_bound" in run.last_line and "1af4:1001" in run.last_line
    t = transcript(run)
    blk = t.test("virtio-blk")
    assert blk.line.split("|")[4:8] == ["reason=driver_not_bound", "pci_id=1af4:1001", "rev=00",
                                        "expected=1af4:1042@01"]
    net = t.test("virtio-net")
    assert (net["reason"], net["pci_id"], net["expected"]) == ("driver_not_bound", "1af4:1000", "1af4:1041@01")
    assert t.result == "FAIL"
    assert f"GET {HTTP_PATH}" not in network_log(run)  # an unbound NIC is not used


def test_intx_only_devices_are_reported_as_intx_by_the_guest(guest: Built, run_harness: Run) -> None:
    run = run_harness("selfcheck", "--disk-image", guest.image, "--virtio-disable-msix", "--require-intx", *TCG,
                      timeout=BOOT_S)
    passed(run)
    t = transcript(run)
    infos = [f for found in pci_infos(t).values() for f in found]
    assert len(infos) == 4 and all((f["irq_mode"], f["irq_message_count"]) == ("intx", "0") for f in infos)
    assert t.test("virtio-blk-msix").line.endswith("|virtio-blk-msix|PASS|mode=intx|messages=0")
    for name in ("virtio-blk", "virtio-input", "virtio-net"):
        assert t.test(name)["irq_mode"] == "intx", name
    for function in run.results()["pci"]:  # type: ignore[union-attr]
        assert 1 not in {bar["index"] for bar in function["bars"]}  # no MSI-X table BAR


# -- host-coordinated tests -----------------------------------------------------------------------

def test_host_coordinated_tests_pass_when_the_harness_acts_at_ready(guest: Built, run_harness: Run) -> None:
    run = run_harness("selfcheck", "--disk-image", guest.image, *HOST_ACTION_FLAGS, "--dns-host", "foo.lan", *TCG,
                      timeout=BOOT_S)
    passed(run)
    t = transcript(run)
    t.assert_order("virtio-blk|PASS", "virtio-blk-resize|READY", "virtio-blk-resize|PASS", "virtio-blk-reset|PASS",
                   "virtio-input|PASS", "virtio-input-led|PASS", "virtio-input-events|READY",
                   "virtio-input-events|PASS", "virtio-input-media-keys|READY", "virtio-input-media-keys|PASS",
                   "virtio-input-tablet-events|READY", "virtio-input-tablet-events|PASS",
                   "virtio-net-link-flap|READY", "virtio-net-link-flap|PASS", "virtio-net-udp|PASS", "virtio-net|PASS")
    resize = t.test("virtio-blk-resize")
    assert int(resize["new_bytes"]) == int(resize["old_bytes"]) + 64 * 1048576
    ev = t.test("virtio-input-events")
    assert all(ev[k] == "1" for k in ("kbd_a_down", "kbd_a_up", "mouse_move", "mouse_left_down", "mouse_left_up"))
    assert ev["kbd_bad_reports"] == ev["mouse_bad_reports"] == "0"
    assert t.test("virtio-input-wheel").line.endswith("|virtio-input-wheel|SKIP|not_observed|wheel_total=0|"
                                                      "hwheel_total=0")  # no wheel asked, none sent
    media = t.test("virtio-input-media-keys")
    assert (media["volume_up_down"], media["volume_up_up"]) == ("1", "1")
    tablet = t.test("virtio-input-tablet-events")
    assert (tablet["move_target"], tablet["left_down"], tablet["left_up"]) == ("1", "1", "1")
    assert abs(int(tablet["last_x"]) - 10000) <= 2 and abs(int(tablet["last_y"]) - 20000) <= 2
    flap = t.test("virtio-net-link-flap")
    assert int(flap["down_wait_ms"]) + int(flap["up_wait_ms"]) >= 2900  # the harness held the link down 3 s
    assert (t.test("virtio-net")["dns_name"], t.test("virtio-net")["dns_ip"]) == ("foo.lan", "10.0.2.2")
    assert network_log(run).count(f"GET {HTTP_PATH} 200") == 2  # before the flap and after it

    actions = {a["reaction"]: a for a in run.results()["actions"]}  # type: ignore[union-attr]
    assert set(actions) == {"blk-resize", "input-inject", "media-keys", "input-tablet-inject", "net-link-flap"}
    for action in actions.values():
        assert action["outcome"].startswith("done") and action["first_command_ms"] < 100, action
        assert all("error" not in c for c in action["commands"]), action
    assert [c["command"] for c in actions["net-link-flap"]["commands"]] == ["set_link", "set_link"]
    assert actions["blk-resize"]["commands"][0]["arguments"] == {
        "device": "disk0", "size": int(resize["old_bytes"]) + 64 * 1048576}
    tablet_events = actions["input-tablet-inject"]["commands"][1]["arguments"]
    assert tablet_events["device"] == "vga1" and {"type": "abs", "data": {"axis": "x", "value": 10000}} in \
        tablet_events["events"]


def test_the_wheel_tests_fail_for_want_of_a_horizontal_wheel_and_say_so(guest: Built, guest_ports: tuple[int, int],
                                                                          run_harness: Run) -> None:
    """--with-input-wheel and --with-input-events-extended on the host's QEMU 7.2: the guest counts as the
    real guest does (each report +1 / -2, both axes); QEMU's virtio mouse sends the notch up and drops
    the two to the left, so the wheel tests fail with missing_axis and the verdict says why. The other
    extended tests pass."""
    words = "--test-input-events --test-input-events-extended --host-wait-sec 8"
    run = run_harness("--disk-image", guest.image, "--snapshot", *TCG, *ports_args(guest_ports), "--with-input-wheel",
                      "--with-input-events-extended", "--", *guest_args(words), ports_=False, timeout=BOOT_S)
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-3000:]
    assert_wheel_fails_for_want_of_a_horizontal_wheel(run.last_line, run.stderr, transcript(run),
                                                      run.results())


def assert_wheel_fails_for_want_of_a_horizontal_wheel(last_line: str, stderr: str, t: Transcript,
                                                      results: dict[str, object]) -> None:
    """What a wheel run shows on a QEMU without a horizontal wheel (the host's 7.2, the image's 10.0)."""
    wheel = t.test("virtio-input-wheel")
    assert (wheel.status, wheel["reason"], wheel["hwheel_total"], wheel["saw_wheel"], wheel["saw_hwheel"]) == \
        ("FAIL", "missing_axis", "0", "1", "0"), wheel.line
    assert last_line == (f"FAIL: VIRTIO_INPUT_WHEEL_FAILED: virtio-input-wheel FAIL (reason=missing_axis, "
                         f"wheel_total={wheel['wheel_total']}, hwheel_total=0, saw_wheel=1, saw_hwheel=0); "
                         f"{NO_HWHEEL}")
    assert stderr.count(f"WARNING: --with-input-wheel: {NO_HWHEEL}") == 1  # said once, at the start
    for name in ("virtio-input-events", "virtio-input-events-modifiers", "virtio-input-events-buttons"):
        assert t.test(name).status == "PASS", t.test(name).line
    ext = t.test("virtio-input-events-wheel")
    assert (ext.status, ext["reason"], ext["expected_wheel"], ext["expected_hwheel"], ext["saw_wheel"],
            ext["saw_hwheel"]) == ("FAIL", "timeout", "1", "-2", "1", "0"), ext.line
    # One injection, one report: +1 each (the notch up of one input-send-event), no AC Pan at all.
    (text,) = [line for line in t.lines if line.startswith("virtio-input-events: kbd=")]
    counts = dict(word.split("=", 1) for word in text.split() if "=" in word)
    assert counts["wheel_reports"] == wheel["wheel_total"] != "0"
    assert (counts["hwheel_reports"], counts["wheel_unexpected"], counts["hwheel_unexpected"]) == ("0", "0", "0")
    (inject,) = [a for a in results["actions"] if a["reaction"] == "input-inject"]  # type: ignore[attr-defined]
    assert int(wheel["wheel_total"]) <= inject["attempts"]
    scrolls = [c["arguments"]["events"] for c in inject["commands"]
               if any("wheel" in e["data"].get("button", "") for e in c["arguments"]["events"])]
    assert scrolls and all(events == wheel_events() for events in scrolls)


def test_host_coordinated_tests_fail_at_the_guests_deadline_when_the_harness_does_not_act(
        guest: Built, guest_ports: tuple[int, int], run_harness: Run) -> None:
    """The image asks for them (fw_cfg here, the provisioning on Windows); the run has no --with flags."""
    words = "--test-input-events --test-input-media-keys --test-net-link-flap --test-blk-resize --host-wait-sec 4"
    run = run_harness("--disk-image", guest.image, "--snapshot", *TCG, *ports_args(guest_ports), "--",
                      *guest_args(words), ports_=False, timeout=BOOT_S)
    assert run.returncode == 1, run.stdout
    assert run.last_line.startswith("FAIL: SELFTEST_FAILED: guest reported AERO_VIRTIO_SELFTEST|RESULT|FAIL"), \
        run.last_line
    t = transcript(run)
    for name in ("virtio-blk-resize", "virtio-input-events", "virtio-input-media-keys"):
        assert t.ready(name) and (t.test(name).status, t.test(name)["reason"]) == ("FAIL", "timeout"), name
    assert (t.test("virtio-net-link-flap").status, t.test("virtio-net-link-flap")["reason"]) == \
        ("FAIL", "timeout_waiting_link_down")
    assert "actions" not in run.results()  # the harness did nothing, as asked
    assert "provisioned with --test-net-link-flap (CONFIG test_net_link_flap=1) but this run has no " \
           "--with-net-link-flap" in run.stderr


# -- the network ----------------------------------------------------------------------------------

def test_two_isolated_selfchecks_at_once_on_the_default_ports_both_pass(guest: Built, tmp_path: Path) -> None:
    def selfcheck(out: Path) -> subprocess.Popen[str]:
        return subprocess.Popen(harness_argv("selfcheck", "--disk-image", guest.image, *TCG, "--out-dir", out),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)

    runs = [selfcheck(tmp_path / name) for name in ("a", "b")]
    try:
        outputs = [proc.communicate(timeout=BOOT_S) for proc in runs]
    finally:
        for proc in runs:
            if proc.poll() is None:
                proc.kill()
    for proc, (stdout, stderr) in zip(runs, outputs, strict=True):
        assert (proc.returncode, stdout.splitlines()[-1]) == (0, PASS_LINE), stderr[-3000:]
    for name in ("a", "b"):
        assert "GET /aero-virtio-selftest 200" in (tmp_path / name / "http.log").read_text()  # 18080, in each


class HostEcho:
    """A UDP echo on the host's loopback, outside any run's network: what an isolated guest must not reach."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.seen: list[int] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            self.seen.append(len(data))
            self.sock.sendto(data, peer)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def host_echo() -> Iterator[HostEcho]:
    echo = HostEcho()
    yield echo
    echo.close()


@pytest.mark.attack
def test_an_isolated_guest_cannot_reach_a_service_on_the_hosts_loopback(guest: Built, run_harness: Run,
                                                                         host_echo: HostEcho) -> None:
    http = free_port()
    run = run_harness("selfcheck", "--disk-image", guest.image, "--disable-udp", "--http-port", str(http),
                      "--udp-port", str(host_echo.port), "--network-isolation", "on", *TCG, ports_=False,
                      timeout=BOOT_S)
    t = transcript(run)
    assert t.test("virtio-net-udp").status == "FAIL", t.test("virtio-net-udp").line
    assert host_echo.seen == []  # not one datagram left the run's network
    assert run.results()["network_isolation"]["isolated"] is True  # type: ignore[index]


@pytest.fixture
def unreachable_resolver(tmp_path: Path) -> Callable[[list[str]], list[str]]:
    """Wraps a command so it sees a resolv.conf naming a name server that never answers (TEST-NET-1),
    as on a host whose resolver the harness cannot stand in for."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        missing_prerequisite("a private resolv.conf needs root and unshare (util-linux)")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 192.0.2.1\n")
    return lambda argv: ["unshare", "-m", "--", "sh", "-c", 'mount --bind "$0" /etc/resolv.conf && exec "$@"',
                         str(resolv), *argv]


def test_without_isolation_the_guest_shares_the_hosts_network_and_resolver(
        guest: Built, tmp_path: Path, host_echo: HostEcho,
        unreachable_resolver: Callable[[list[str]], list[str]]) -> None:
    out = tmp_path / "out"
    argv = harness_argv("selfcheck", "--disk-image", guest.image, "--disable-udp", "--http-port", str(free_port()),
                        "--udp-port", str(host_echo.port), "--network-isolation", "off", *TCG, "--out-dir", out)
    proc = subprocess.run(unreachable_resolver(argv), capture_output=True, text=True, timeout=BOOT_S,
                          stdin=subprocess.DEVNULL)
    run = HarnessRun(proc.returncode, proc.stdout, proc.stderr, out)
    t = transcript(run)
    assert t.test("virtio-net-udp").status == "PASS" and host_echo.seen == [32, 1400]  # the host's own loopback
    net = t.test("virtio-net")  # every candidate name went to 192.0.2.1, which never answers
    assert (net.status, net["reason"]) == ("FAIL", "dns_failed"), net.line
    assert run.last_line.startswith("FAIL: VIRTIO_NET_FAILED: virtio-net FAIL (reason=dns_failed"), run.last_line
    assert "the guest's name lookups go to 192.0.2.1" in run.stderr and "not hermetic" in run.stderr
    assert run.results()["network_isolation"]["isolated"] is False  # type: ignore[index]


def test_serving_another_port_than_the_guest_was_built_for_fails_at_its_config_line(
        guest: Built, guest_ports: tuple[int, int], run_harness: Run) -> None:
    wrong = (free_port(), free_port(socket.SOCK_DGRAM))
    run = run_harness("--disk-image", guest.image, "--snapshot", *TCG, *ports_args(wrong), ports_=False,
                      timeout=BOOT_S)
    assert run.returncode == 1
    assert run.last_line.startswith("FAIL: HTTP_URL_MISMATCH: the guest was provisioned with http_url="), run.last_line
    assert run.last_line.endswith(f"pass --http-port {guest_ports[0]} to match the image")
    doc = run.results()
    assert "virtio-net" not in doc["tests"]  # type: ignore[operator]  # decided at CONFIG, not at the timeout
    assert (run.out_dir / "screenshot.png").read_bytes()[:4] == b"\x89PNG"


# -- the disk -------------------------------------------------------------------------------------

def test_a_run_with_the_default_overlay_keeps_the_guests_writes_out_of_the_image(
        guest: Built, guest_ports: tuple[int, int], run_harness: Run) -> None:
    before = sha256(guest.image)
    run = run_harness("--disk-image", guest.image, *TCG, *ports_args(guest_ports), ports_=False, timeout=BOOT_S)
    passed(run)
    overlay = run.out_dir / "disk-overlay.qcow2"
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(overlay)],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["backing-filename"] == str(guest.image)
    assert overlay.stat().st_size > 256 * 1024  # the guest's FAT writes landed in the overlay
    assert sha256(guest.image) == before


@pytest.mark.fault
def test_an_out_dir_that_fills_up_ends_the_run_at_once_naming_the_file_system(
        guest: Built, guest_ports: tuple[int, int], tmp_path: Path) -> None:
    """The overlay's file system (a 2 MiB tmpfs) fills up under the guest's 8 MiB disk test."""
    with small_tmpfs(tmp_path / "small", "2m") as out:
        started = time.monotonic()
        proc = subprocess.run(harness_argv("--disk-image", guest.image, *TCG, *ports_args(guest_ports),
                                           "--out-dir", out), capture_output=True, text=True, timeout=BOOT_S,
                              stdin=subprocess.DEVNULL)
        elapsed = time.monotonic() - started
    last = proc.stdout.splitlines()[-1]
    assert proc.returncode == 6, proc.stdout + proc.stderr[-3000:]
    assert re.match(r"FAIL: INFRA: .*(no space|full).*" + re.escape(str(out)), last, re.I), last
    assert elapsed < 200  # at once, not at the 240 s timeout
    assert "Traceback" not in proc.stderr


# -- sound ----------------------------------------------------------------------------------------

def test_sound_required_by_the_guest_without_the_device_fails_virtio_snd(guest_require_snd: Built,
                                                                          run_harness: Run) -> None:
    run = run_harness("selfcheck", "--disk-image", guest_require_snd.image, *TCG, timeout=BOOT_S)
    assert run.returncode == 1
    assert run.last_line.startswith("FAIL: VIRTIO_SND_FAILED: virtio-snd FAIL"), run.last_line
    tests = run.results()["tests"]
    assert isinstance(tests, dict)
    assert tests["virtio-snd"]["fields"]["reason"] == "device_missing"
    assert tests["virtio-net"]["status"] == "PASS"


# -- signals --------------------------------------------------------------------------------------

@pytest.mark.fault
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_run_killed_mid_way_leaves_no_qemu(guest: Built, tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(harness_argv("selfcheck", "--disk-image", guest.image, *TCG, "--out-dir", out),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        serial = out / "serial.log"
        while time.monotonic() < deadline and not (serial.exists() and b"START" in serial.read_bytes()):
            time.sleep(0.1)  # mid-way: the guest is up and testing
        qemu_pids = qemu_children_of(proc.pid)
        assert len(qemu_pids) == 1
        proc.send_signal(sig)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and stdout.splitlines()[-1].startswith("FAIL: INTERRUPTED")
    assert not Path(f"/proc/{qemu_pids[0]}").exists()
