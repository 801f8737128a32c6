"""The contract layout and the real guest's vocabulary against a real QEMU.

A boot-sector guest replays the real Windows guest's COM1 output (several KB, tests/transcripts.py)
over a real UART, in the contract layout the Aero drivers bind; the PCI preflight reads the
machine QEMU built.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from harness.qemu.bootsector import Ending
from tests.conftest import HarnessRun
from tests.transcripts import P, as_bytes, transcript

pytestmark = [pytest.mark.qemu, pytest.mark.usefixtures("qemu", "no_stray_qemu")]
Run = Callable[..., HarnessRun]
TCG = ("--accel", "tcg", "--timeout-seconds", "40")


@pytest.fixture
def config(ports: tuple[int, int]) -> dict[str, str]:
    """The CONFIG fields of a guest provisioned for this test's services (run_harness's ports)."""
    return {"http_url": f"http://10.0.2.2:{ports[0]}/aero-virtio-selftest", "udp_port": str(ports[1])}


def replay(make_guest, run_harness: Run, lines: list[str], *flags: str) -> HarnessRun:  # type: ignore[no-untyped-def]
    message = as_bytes(lines)
    assert len(message) > 4000  # long, realistic output over a real COM1
    return run_harness("--disk-image", make_guest(message), *TCG, *flags)


def pci_by_id(run: HarnessRun) -> dict[str, dict[str, Any]]:
    return {f["qdev_id"]: f for f in run.results()["pci"]}  # type: ignore[union-attr, index]


def test_a_real_guests_passing_run_passes_and_the_pci_table_is_recorded(make_guest, run_harness: Run,
                                                                        config: dict[str, str]) -> None:
    run = replay(make_guest, run_harness, transcript(config=config), "--with-virtio-tablet")
    assert (run.returncode, run.last_line) == (0, "PASS: AERO_VIRTIO_SELFTEST|RESULT|PASS"), run.stdout
    pci = pci_by_id(run)
    assert {q: f["id"] for q, f in pci.items()} == {"blk0": "1af4:1042", "nic0": "1af4:1041", "kbd0": "1af4:1052",
                                                    "mouse0": "1af4:1052", "tablet0": "1af4:1052"}
    blk = pci["blk0"]
    assert blk["subsystem"] == "1af4:1100" and blk["irq"] is not None
    bars = {bar["index"]: bar for bar in blk["bars"]}
    assert bars[4]["type"] == "memory64 prefetchable" and bars[4]["size"] == 16384  # the virtio capabilities
    assert bars[1]["size"] == 4096  # the MSI-X table
    results = run.results()
    assert results["layout"] == "contract"
    assert results["timing"]["preflight_ms"] < 1000  # type: ignore[index]
    # What QEMU cannot give the Aero drivers is recorded, and a passing verdict says nothing of it.
    notes = {(n["qdev_id"], n["problem"]) for n in results["pci_notes"]}  # type: ignore[union-attr]
    assert {("blk0", "registers_not_in_bar0"), ("nic0", "registers_not_in_bar0"), ("kbd0", "subsystem_not_bound"),
            ("mouse0", "subsystem_not_bound"), ("tablet0", "subsystem_not_bound")} == notes


def test_a_guest_that_never_speaks_is_told_why_the_aero_boot_driver_cannot_start(make_guest, run_harness: Run
                                                                                ) -> None:
    run = run_harness("--disk-image", make_guest(b"", Ending.RESET), *TCG)  # a bugcheck under -no-reboot
    assert run.returncode == 3 and run.last_line.startswith("FAIL: QEMU_EXITED: "), run.stdout
    assert ("hint, if the guest runs the Aero drivers: virtio-blk has no memory BAR0: QEMU puts the virtio "
            "registers in BAR4") in run.last_line
    assert "bugcheck 0x7B" in run.last_line


def test_a_network_test_without_an_adapter_is_told_why_and_one_with_results_is_not(make_guest, run_harness: Run,
                                                                                  config: dict[str, str]) -> None:
    no_adapter = {"net-up-text": "virtio-net: no virtio net adapters detected",
                  "virtio-net-udp": P + "TEST|virtio-net-udp|FAIL|reason=no_adapter",
                  "virtio-net": P + "TEST|virtio-net|FAIL|irq_mode=none", "result": P + "RESULT|FAIL"}
    run = replay(make_guest, run_harness, transcript(no_adapter, config))
    assert run.returncode == 1 and run.last_line.startswith("FAIL: VIRTIO_NET_UDP_FAILED: "), run.stdout
    assert "virtio-net has no memory BAR0" in run.last_line
    broken = {"virtio-net": P + "TEST|virtio-net|FAIL|large_ok=0|large_bytes=1048576|upload_ok=1",
              "result": P + "RESULT|FAIL"}
    run = replay(make_guest, run_harness, transcript(broken, config))
    assert run.last_line.startswith("FAIL: VIRTIO_NET_FAILED: ") and "BAR0" not in run.last_line, run.last_line


def test_intx_only_takes_away_the_msix_table(make_guest, run_harness: Run, config: dict[str, str]) -> None:
    run = replay(make_guest, run_harness, transcript(config=config), "--virtio-disable-msix")
    assert run.returncode == 0, run.stdout
    for function in pci_by_id(run).values():
        assert 1 not in {bar["index"] for bar in function["bars"]}, function


def test_a_device_replaced_through_the_extra_arguments_stops_the_run_before_the_guest(make_guest,
                                                                                      run_harness: Run) -> None:
    run = replay(make_guest, run_harness, transcript(), "--", "-set", "device.blk0.disable-legacy=off")
    assert run.returncode == 6, run.stdout
    assert run.last_line.startswith("FAIL: QEMU_PCI_PREFLIGHT_FAILED: virtio-blk (blk0, 00:")
    assert "is 1af4:1001 but the layout wants 1af4:1042" in run.last_line
    assert (run.out_dir / "serial.log").read_bytes() == b""  # the guest never ran
    assert run.results()["token"] == "QEMU_PCI_PREFLIGHT_FAILED"


@pytest.mark.parametrize(("replace", "token", "detail"), [
    ({"virtio-blk": P + "TEST|virtio-blk|FAIL|irq_mode=msix|irq_message_count=2|write_ok=1|write_bytes=33554432|"
                        "flush_ok=0|read_ok=0|read_bytes=0", "result": P + "RESULT|FAIL"},
     "VIRTIO_BLK_FAILED", "virtio-blk FAIL (write_ok=1, flush_ok=0, read_ok=0"),
    ({"virtio-net": P + "TEST|virtio-net|FAIL|large_ok=0|large_bytes=1048576|large_fnv1a64=0x1234567890abcdef|"
                        "large_mbps=10.00|upload_ok=1|upload_bytes=1048576", "result": P + "RESULT|FAIL"},
     "VIRTIO_NET_FAILED", "large_fnv1a64=0x1234567890abcdef"),
    ({"udp-text": "virtio-net: UDP echo failed port=18081 bytes=32 reason=timeout wsa=10060",
      "virtio-net-udp": P + "TEST|virtio-net-udp|FAIL|bytes=32|small_bytes=32|mtu_bytes=1400|reason=timeout|wsa=10060",
      "virtio-net": P + "TEST|virtio-net|FAIL|large_ok=0|large_bytes=0|upload_ok=0", "result": P + "RESULT|FAIL"},
     "VIRTIO_NET_UDP_FAILED", "virtio-net-udp FAIL (reason=timeout"),
    ({"virtio-input-bind": P + "TEST|virtio-input-bind|FAIL|reason=driver_not_bound|expected=aero_virtio_input|"
                               "actual=<missing>|pnp_id=-|devices=0",
      "virtio-input": P + "TEST|virtio-input|FAIL|devices=0|reason=pci_device_missing",
      "result": P + "RESULT|FAIL"},
     "VIRTIO_INPUT_BIND_FAILED", "reason=driver_not_bound, expected=aero_virtio_input, actual=<missing>"),
])
def test_real_failures_are_named_by_their_own_token(make_guest, run_harness: Run, config: dict[str, str],
                                                    replace: dict[str, str], token: str, detail: str) -> None:
    run = replay(make_guest, run_harness, transcript(replace, config))
    assert run.returncode == 1, run.stdout
    assert run.last_line.startswith(f"FAIL: {token}: ") and detail in run.last_line, run.last_line
    if token == "VIRTIO_INPUT_BIND_FAILED":  # said once for keyboard and mouse, with what to do
        hint = ("virtio-input has subsystem 1af4:1100; the Aero INF binds only SUBSYS_00101AF4 or SUBSYS_00111AF4: "
                "install the INF alias with the generic ID")
        assert run.last_line.count(hint) == 1 and "CompatIdName" in run.last_line, run.last_line
    else:
        assert "hint, if the guest runs the Aero drivers" not in run.last_line, run.last_line


def test_a_guest_provisioned_for_another_udp_port_ends_the_run_at_config(make_guest, run_harness: Run,
                                                                         config: dict[str, str]) -> None:
    lines = transcript(config={**config, "udp_port": "28081"})[:2]  # START, CONFIG, then it "works" for minutes
    started = time.monotonic()
    run = run_harness("--disk-image", make_guest(as_bytes(lines + ["virtio-blk: working " + "." * 4000])),
                      "--accel", "tcg", "--timeout-seconds", "120")
    assert time.monotonic() - started < 30  # at the CONFIG line, not at the timeout
    assert run.returncode == 1
    assert run.last_line.startswith("FAIL: UDP_PORT_MISMATCH: the guest was provisioned for UDP port 28081")
    assert "pass --udp-port 28081" in run.last_line
    assert run.results()["guest"]["config"]["udp_port"] == "28081"  # type: ignore[index]


def test_a_second_function_of_a_tested_family_from_the_extra_arguments_is_a_warning(make_guest, run_harness: Run,
                                                                                    config: dict[str, str]) -> None:
    run = replay(make_guest, run_harness, transcript(config=config), "--", "-netdev", "user,id=extra",
                 "-device", "virtio-net-pci,netdev=extra,disable-legacy=on", "-device", "virtio-rng-pci")
    assert run.returncode == 0, run.stdout
    warned = [line for line in run.stderr.splitlines() if "a virtio function the layout did not add" in line]
    assert len(warned) == 2 and warned[0].startswith("WARNING: ") and "1af4:1041" in warned[0], warned
    assert warned[1].startswith("INFO: ") and "1af4:1005" in warned[1]  # an RNG is no tested family
    assert len(run.results()["pci"]) == 6  # type: ignore[arg-type]  # layout 4 + both extras
