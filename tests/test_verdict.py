"""The verdict rules of the protocol page, row by row: markers in, token and exit code out.

Rules come from the device modules for a run's flags and layout, exactly as a run gets them; the
guest's lines are the real guest's vocabulary (tests/transcripts.py).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import ExitCode, UsageError
from harness.verdict import GuestReport, qemu_exited_verdict, timeout_verdict
from tests.rulesets import device_set, report_of, verdict_of
from tests.transcripts import P, transcript

SND_PLAYED = {
    "snd-text": "virtio-snd: render ok frames=48000",
    "virtio-snd": P + "TEST|virtio-snd|PASS|irq_mode=msi|irq_message_count=2",
    "virtio-snd-capture": P + "TEST|virtio-snd-capture|PASS|method=wasapi|frames=9600|non_silence=0|silence_only=1",
    "virtio-snd-duplex": P + "TEST|virtio-snd-duplex|PASS|frames=9600|non_silence=0",
}
EVENTS_PASSED = {"virtio-input-events": P + "TEST|virtio-input-events|PASS|kbd_reports=4|mouse_reports=6|"
                                             "kbd_bad_reports=0|mouse_bad_reports=0|kbd_a_down=1|kbd_a_up=1|"
                                             "mouse_move=1|mouse_left_down=1|mouse_left_up=1"}
# The real guest's wheel markers on a QEMU whose virtio mouse has no horizontal wheel (7.2, 10.0).
NO_HWHEEL_WHEEL = P + ("TEST|virtio-input-wheel|FAIL|reason=missing_axis|wheel_total=3|hwheel_total=0|saw_wheel=1|"
                       "saw_hwheel=0")
NO_HWHEEL_EXTENDED = {
    **EVENTS_PASSED,
    "virtio-input-wheel": NO_HWHEEL_WHEEL,
    "virtio-input-events-modifiers": P + "TEST|virtio-input-events-modifiers|PASS|kbd_reports=12|kbd_bad_reports=0|"
                                         "shift_b=1|ctrl=1|alt=1|f1=1",
    "virtio-input-events-buttons": P + "TEST|virtio-input-events-buttons|PASS|mouse_reports=9|mouse_bad_reports=0|"
                                       "side_down=1|side_up=1|extra_down=1|extra_up=1",
    "virtio-input-events-wheel": P + "TEST|virtio-input-events-wheel|FAIL|reason=timeout|err=1460|mouse_reports=9|"
                                     "mouse_bad_reports=0|wheel_total=3|hwheel_total=0|expected_wheel=1|"
                                     "expected_hwheel=-2|saw_wheel=1|saw_hwheel=0",
    "result": P + "RESULT|FAIL",
}
NEEDS_HWHEEL = "they need a QEMU whose virtio mouse sends REL_HWHEEL"
TRANSITIONAL_GUEST = {key: None for key in ("virtio-input-bind", "virtio-input-binding", "virtio-input",
                                            "virtio-net-udp")}

ROWS = [
    # (flags, replaced lines, CONFIG fields, token, detail fragment)
    ((), {}, {}, "PASS", "RESULT|PASS"),
    ((), {"virtio-blk": P + "TEST|virtio-blk|FAIL|irq_mode=msix|write_ok=0|write_bytes=0|flush_ok=0|read_ok=0",
          "result": P + "RESULT|FAIL"}, {}, "VIRTIO_BLK_FAILED", "virtio-blk FAIL (write_ok=0"),
    ((), {"virtio-blk": None}, {}, "MISSING_VIRTIO_BLK", "without a final virtio-blk marker"),
    ((), {"virtio-input-bind": P + "TEST|virtio-input-bind|FAIL|reason=wrong_service|expected=aero_virtio_input|"
                                   "actual=HidUsb|pnp_id=-|devices=1",
          "result": P + "RESULT|FAIL"}, {}, "VIRTIO_INPUT_BIND_FAILED", "reason=wrong_service, expected=aero_virtio_input"),
    ((), {"virtio-input": P + "TEST|virtio-input|FAIL|devices=0|reason=pci_device_missing|irq_mode=none"},
     {}, "VIRTIO_INPUT_FAILED", "reason=pci_device_missing"),
    ((), {"virtio-net-udp": P + "TEST|virtio-net-udp|FAIL|bytes=32|small_bytes=32|mtu_bytes=1400|reason=timeout|"
                                "wsa=10060",
          "virtio-net": P + "TEST|virtio-net|FAIL|large_ok=0|large_bytes=0|upload_ok=0",
          "result": P + "RESULT|FAIL"}, {}, "VIRTIO_NET_UDP_FAILED", "reason=timeout"),
    (("--disable-udp",), {"virtio-net-udp": None}, {}, "PASS", ""),
    ((), {"virtio-net-udp": P + "TEST|virtio-net-udp|SKIP|disabled"}, {}, "VIRTIO_NET_UDP_SKIPPED", "SKIP (disabled)"),
    ((), {"virtio-net": P + "TEST|virtio-net|FAIL|large_ok=0|large_bytes=1048576|large_fnv1a64=0x0000000000000001|"
                            "upload_ok=1", "result": P + "RESULT|FAIL"}, {}, "VIRTIO_NET_FAILED",
     "large_fnv1a64=0x0000000000000001"),
    # Sound without the flag: PASS or SKIP, a FAIL fails, absence fails.
    ((), {"virtio-snd": P + "TEST|virtio-snd|FAIL|reason=device_error"}, {}, "VIRTIO_SND_FAILED", "device_error"),
    ((), {"virtio-snd-duplex": None}, {}, "MISSING_VIRTIO_SND_DUPLEX", "virtio-snd-duplex"),
    # With the flag: each must PASS, and a SKIP names its cause from the guest's text.
    (("--enable-virtio-snd",), SND_PLAYED, {}, "PASS", ""),
    (("--enable-virtio-snd",), {"snd-text": "virtio-snd: disabled by --disable-snd",
                                "virtio-snd-capture": P + "TEST|virtio-snd-capture|SKIP|disabled",
                                "virtio-snd-duplex": P + "TEST|virtio-snd-duplex|SKIP|disabled"}, {},
     "VIRTIO_SND_SKIPPED", "the guest said: virtio-snd: disabled by --disable-snd"),
    (("--enable-virtio-snd",), {"snd-text": "virtio-snd: PCI\\VEN_1AF4&DEV_1059 device not detected (contract v1 "
                                            "modern-only)",
                                "virtio-snd": P + "TEST|virtio-snd|FAIL|irq_mode=none"}, {}, "VIRTIO_SND_FAILED", ""),
    (("--enable-virtio-snd",), {**SND_PLAYED, "virtio-snd-capture": P + "TEST|virtio-snd-capture|SKIP|endpoint_missing"},
     {}, "VIRTIO_SND_CAPTURE_SKIPPED", "endpoint_missing"),
    # The transitional layout: virtio-blk and virtio-net only.
    (("--virtio-transitional",), TRANSITIONAL_GUEST, {}, "PASS", ""),
    (("--virtio-transitional",), {**TRANSITIONAL_GUEST, "virtio-net": None}, {}, "MISSING_VIRTIO_NET", ""),
    (("--virtio-transitional", "--enable-virtio-snd"), {**TRANSITIONAL_GUEST, "virtio-snd": SND_PLAYED["virtio-snd"]},
     {}, "PASS", ""),
    # Several failures: the first the guest reported is named.
    ((), {"virtio-blk": P + "TEST|virtio-blk|FAIL|write_ok=0", "virtio-net": P + "TEST|virtio-net|FAIL|large_ok=0",
          "result": P + "RESULT|FAIL"}, {}, "VIRTIO_BLK_FAILED", ""),
    ((), {"virtio-net": P + "TEST|virtio-net|FAIL|large_ok=0", "virtio-blk": None, "result": P + "RESULT|FAIL"},
     {}, "VIRTIO_NET_FAILED", ""),
    # The guest failed, but no required test did.
    ((), {"virtio-input-led": P + "TEST|virtio-input-led|FAIL|reason=write_not_processed",
          "result": P + "RESULT|FAIL"}, {}, "SELFTEST_FAILED", "virtio-input-led FAIL"),
    # Flag-gated markers.
    (("--with-blk-reset",), {}, {}, "VIRTIO_BLK_RESET_SKIPPED", "provision the guest with --test-blk-reset"),
    (("--with-input-led",), {"virtio-input-led": P + "TEST|virtio-input-led|PASS|sent=32|format=with_report_id"},
     {}, "PASS", ""),
    (("--with-input-leds",), {}, {}, "VIRTIO_INPUT_LEDS_SKIPPED", "flag_not_set"),
    (("--with-snd-buffer-limits", "--enable-virtio-snd"),
     {**SND_PLAYED}, {}, "MISSING_VIRTIO_SND_BUFFER_LIMITS", ""),
    (("--require-virtio-input-binding",), {"virtio-input-binding": None}, {}, "MISSING_VIRTIO_INPUT_BINDING", ""),
    (("--with-input-events-extended",), {}, {}, "VIRTIO_INPUT_EVENTS_SKIPPED", ""),
    # The wheel: +1 and -2 in each report, both axes; without a horizontal wheel the detail says why.
    (("--with-input-wheel",), {**EVENTS_PASSED, "virtio-input-wheel": P + "TEST|virtio-input-wheel|PASS|wheel_total=2|"
                                                                        "hwheel_total=-4|expected_wheel=1|"
                                                                        "expected_hwheel=-2|wheel_events=2|"
                                                                        "hwheel_events=2"}, {}, "PASS", ""),
    (("--with-input-wheel",), {**EVENTS_PASSED, "virtio-input-wheel": NO_HWHEEL_WHEEL, "result": P + "RESULT|FAIL"},
     {}, "VIRTIO_INPUT_WHEEL_FAILED", "reason=missing_axis, wheel_total=3, hwheel_total=0, saw_wheel=1, saw_hwheel=0); "
                                      "QEMU's virtio-mouse-pci has no horizontal wheel"),
    (("--with-input-wheel",), {**EVENTS_PASSED, "virtio-input-wheel": P + "TEST|virtio-input-wheel|SKIP|not_observed|"
                                                                        "wheel_total=0|hwheel_total=0"},
     {}, "VIRTIO_INPUT_WHEEL_SKIPPED", "SKIP (not_observed)"),
    (("--with-input-events-extended",), NO_HWHEEL_EXTENDED, {}, "VIRTIO_INPUT_EVENTS_EXTENDED_FAILED",
     "virtio-input-events-wheel FAIL (reason=timeout"),
    (("--with-input-events-extended",), NO_HWHEEL_EXTENDED, {}, "VIRTIO_INPUT_EVENTS_EXTENDED_FAILED", NEEDS_HWHEEL),
    (("--with-input-wheel", "--with-input-events-extended"), NO_HWHEEL_EXTENDED, {}, "VIRTIO_INPUT_WHEEL_FAILED",
     NEEDS_HWHEEL),
    # Tablet events attach the tablet and need no other flag.
    (("--with-input-tablet-events",), {"virtio-input-tablet-events": P + "TEST|virtio-input-tablet-events|PASS|"
                                                                         "tablet_reports=3|move_target=1|left_down=1|"
                                                                         "left_up=1|last_x=10000|last_y=20000|"
                                                                         "last_left=0"}, {}, "PASS", ""),
    (("--with-input-tablet-events",), {}, {}, "VIRTIO_INPUT_TABLET_EVENTS_SKIPPED",
     "provision the guest with --test-input-tablet-events"),
    # Interrupt modes.
    (("--require-intx",), {}, {}, "IRQ_MODE_MISMATCH", "virtio-blk expected=intx got=msi"),
    (("--require-msi",), {}, {}, "PASS", ""),
    (("--require-msi",), {"virtio-net-irq": "virtio-net-irq|INFO|mode=intx"}, {}, "IRQ_MODE_MISMATCH",
     "virtio-net expected=msi got=intx"),
    (("--require-virtio-net-msix",), {}, {}, "PASS", ""),
    (("--require-virtio-net-msix",), {"virtio-net-msix": P + "TEST|virtio-net-msix|PASS|mode=intx|messages=0"}, {},
     "VIRTIO_NET_MSIX_REQUIRED", "mode=intx (expected msix)"),
    (("--require-virtio-blk-msix",), {"virtio-blk-msix": None}, {}, "MISSING_VIRTIO_BLK_MSIX", ""),
    (("--require-virtio-input-msix",), {"virtio-input-msix": P + "TEST|virtio-input-msix|SKIP|reason=ioctl_not_supported"},
     {}, "VIRTIO_INPUT_MSIX_REQUIRED", "reported SKIP (reason=ioctl_not_supported)"),
    (("--enable-virtio-snd", "--require-virtio-snd-msix"), SND_PLAYED, {}, "VIRTIO_SND_MSIX_REQUIRED",
     "reported SKIP (reason=device_missing)"),
    (("--enable-virtio-snd", "--require-virtio-snd-msix"), {**SND_PLAYED, "virtio-snd-msix": None}, {},
     "MISSING_VIRTIO_SND_MSIX", ""),
    # CONFIG and the blk gates.
    (("--require-expect-blk-msi",), {}, {}, "EXPECT_BLK_MSI_NOT_SET", "expect_blk_msi=0"),
    (("--require-expect-blk-msi",), {}, {"expect_blk_msi": "1"}, "PASS", ""),
    (("--require-no-blk-recovery",), {"virtio-blk-counters": P + "TEST|virtio-blk-counters|INFO|abort=0|"
                                                                 "reset_device=0|reset_bus=0|pnp=1|ioctl_reset=0"},
     {}, "VIRTIO_BLK_RECOVERY_NONZERO", "pnp_srb=1"),
    (("--fail-on-blk-recovery",), {"virtio-blk-counters": P + "TEST|virtio-blk-counters|INFO|abort=0|"
                                                              "reset_device=0|reset_bus=0|pnp=1|ioctl_reset=0"},
     {}, "PASS", ""),
    (("--fail-on-blk-recovery",), {"virtio-blk-counters": P + "TEST|virtio-blk-counters|INFO|abort=2|"
                                                              "reset_device=0|reset_bus=0|pnp=0|ioctl_reset=0"},
     {}, "VIRTIO_BLK_RECOVERY_DETECTED", "abort=2"),
    (("--require-no-blk-reset-recovery",), {"virtio-blk-reset-recovery": P + "TEST|virtio-blk-reset-recovery|INFO|"
                                                                             "reset_detected=1|hw_reset_bus=0"},
     {}, "VIRTIO_BLK_RESET_RECOVERY_NONZERO", "reset_detected=1"),
    (("--fail-on-blk-reset-recovery",), {"virtio-blk-reset-recovery": None,
                                         "blk-miniport-reset": "virtio-blk-miniport-reset-recovery|INFO|"
                                                               "reset_detected=1|hw_reset_bus=3"},
     {}, "VIRTIO_BLK_RESET_RECOVERY_DETECTED", "hw_reset_bus=3"),
    (("--require-no-blk-miniport-flags",), {"blk-flags": "virtio-blk-miniport-flags|INFO|raw=0x00000004|removed=0|"
                                                         "surprise_removed=0|reset_in_progress=1|reset_pending=0"},
     {}, "VIRTIO_BLK_MINIPORT_FLAGS_NONZERO", "raw=0x00000004"),
    (("--fail-on-blk-miniport-flags",), {"blk-flags": "virtio-blk-miniport-flags|INFO|raw=0x00000004|removed=0|"
                                                      "surprise_removed=0|reset_in_progress=1|reset_pending=0"},
     {}, "PASS", ""),
    (("--fail-on-blk-miniport-flags",), {"blk-flags": "virtio-blk-miniport-flags|INFO|raw=0x00000002|removed=0|"
                                                      "surprise_removed=1|reset_in_progress=0|reset_pending=0"},
     {}, "VIRTIO_BLK_MINIPORT_FLAGS_REMOVED", "surprise_removed=1"),
    (("--require-net-csum-offload",), {}, {}, "PASS", ""),
    (("--require-net-csum-offload",), {"virtio-net-offload-csum": P + "TEST|virtio-net-offload-csum|PASS|tx_csum=0|"
                                                                      "rx_csum=4|fallback=9"},
     {}, "VIRTIO_NET_CSUM_OFFLOAD_ZERO", "tx_csum=0"),
    (("--require-net-udp-csum-offload",), {"virtio-net-offload-csum": P + "TEST|virtio-net-offload-csum|PASS|"
                                                                          "tx_csum=5|tx_udp4=0|tx_udp6=0"},
     {}, "VIRTIO_NET_UDP_CSUM_OFFLOAD_ZERO", "tx_udp=0"),
    (("--require-net-csum-offload",), {"virtio-net-offload-csum": P + "TEST|virtio-net-offload-csum|FAIL"},
     {}, "VIRTIO_NET_CSUM_OFFLOAD_FAILED", "status=FAIL"),
]


@pytest.mark.parametrize(("flags", "replace", "config", "token", "detail"), ROWS,
                         ids=[f"{' '.join(r[0]) or 'default'}->{r[3]}" for r in ROWS])
def test_the_rules_table(flags: tuple[str, ...], replace: dict[str, str | None], config: dict[str, str], token: str,
                         detail: str) -> None:
    verdict = verdict_of(transcript(replace, config), *flags)
    assert verdict.token == token, verdict.line()
    assert verdict.exit_code == (ExitCode.PASS if token == "PASS" else ExitCode.FAIL)
    assert detail in verdict.detail
    assert "\n" not in verdict.line()


MARKER_LINES = [line for line in transcript() if line.startswith(P + "TEST|")]


@settings(max_examples=200, deadline=None)
@given(order=st.permutations(range(len(MARKER_LINES))), noise=st.lists(st.sampled_from([
    P + "TEST|virtio-unknown-thing|PASS|x=1", P + "TEST|virtio-net-diag|INFO|x=1", "virtio-blk: free text",
    "virtio-foo-irq|INFO|mode=msi", P + "TEST|virtio-snd-eventq|INFO|completions=3"]), max_size=8))
def test_any_order_of_the_markers_and_unrelated_lines_gives_the_same_verdict(order: list[int],
                                                                              noise: list[str]) -> None:
    head = transcript()[:2]
    shuffled = head + [MARKER_LINES[i] for i in order] + noise + [P + "RESULT|PASS"]
    assert verdict_of(shuffled).token == "PASS"


@pytest.mark.bad_input
def test_usage_errors_of_the_device_flags() -> None:
    for flags, needle in [
        (("--virtio-transitional", "--with-virtio-tablet"), "needs virtio-input"),
        (("--virtio-transitional", "--with-input-tablet-events"), "--with-input-tablet-events needs virtio-input"),
        (("--virtio-blk-vectors", "-1"), "--virtio-blk-vectors must be between 0 and 2048"),
        (("--virtio-net-vectors", "4096"), "must be between 0 and 2048"),
        (("--virtio-disable-msix", "--virtio-net-vectors", "2"), "exclude each other"),
        (("--virtio-disable-msix", "--require-virtio-net-msix"), "exclude each other"),
        (("--virtio-snd-audio-backend", "wav"), "needs --enable-virtio-snd"),
        (("--with-blk-resize", "--blk-resize-delta-mib", "0"), "--blk-resize-delta-mib must be between 1"),
        (("--with-net-link-flap", "--net-link-flap-down-seconds", "0"), "must be more than 0"),
    ]:
        with pytest.raises(UsageError, match=needle):
            device_set(*flags)


def test_a_wheel_failure_for_another_reason_has_no_qemu_hint() -> None:
    """The hint is for a guest that saw the vertical wheel and no horizontal one, nothing else."""
    unexpected = P + ("TEST|virtio-input-wheel|FAIL|reason=unexpected_delta|wheel_total=2|hwheel_total=-1|"
                      "expected_wheel=1|expected_hwheel=-2|wheel_events=2|hwheel_events=1|wheel_unexpected_last=0|"
                      "hwheel_unexpected_last=-1")
    verdict = verdict_of(transcript({**EVENTS_PASSED, "virtio-input-wheel": unexpected, "result": P + "RESULT|FAIL"}),
                         "--with-input-wheel")
    assert verdict.token == "VIRTIO_INPUT_WHEEL_FAILED" and "reason=unexpected_delta" in verdict.detail
    assert "REL_HWHEEL" not in verdict.detail


def test_the_wheel_marker_stays_a_required_marker() -> None:
    devices = device_set("--with-input-wheel", "--with-input-events-extended")
    assert {"virtio-input-events", "virtio-input-wheel"} <= set(devices.required_markers())


def test_only_the_first_result_counts() -> None:
    report = report_of([P + "RESULT|PASS", P + "RESULT|FAIL"])
    assert report.result == "PASS"


def test_a_later_final_status_replaces_an_earlier_one_and_notes_are_kept() -> None:
    report = report_of([P + "TEST|virtio-snd|READY", P + "TEST|virtio-snd|INFO|x=1", P + "TEST|virtio-snd|PASS|frames=9"])
    outcome = report.tests["virtio-snd"]
    assert outcome.status.value == "PASS" and outcome.fields == {"frames": "9"}
    assert len(outcome.notes) == 2


def test_timeout_and_qemu_exit_verdicts() -> None:
    progress = report_of([P + "START|version=1", P + "TEST|virtio-blk|PASS"])
    timeout = timeout_verdict(progress, 30)
    assert (timeout.token, timeout.exit_code) == ("TIMEOUT", ExitCode.TIMEOUT)
    assert "30 s" in timeout.detail and "virtio-blk=PASS" in timeout.detail
    assert "no selftest output" in timeout_verdict(GuestReport(), 5).detail
    exited = qemu_exited_verdict(progress, 1, "qemu: could not load PC BIOS")
    assert (exited.token, exited.exit_code) == ("QEMU_EXITED", ExitCode.QEMU_EXITED)
    assert "exit code 1" in exited.detail and "PC BIOS" in exited.detail


def test_the_verdict_line_is_one_line_whatever_the_guest_sent() -> None:
    verdict = verdict_of(transcript({"virtio-blk": P + "TEST|virtio-blk|FAIL|err=a\rb\x0bc\x85d",
                                     "result": P + "RESULT|FAIL"}))
    assert verdict.line() == "FAIL: VIRTIO_BLK_FAILED: virtio-blk FAIL (err=a b c d)"


def test_config_checks_name_the_flag_that_matches_the_image() -> None:
    devices = device_set()
    config = dict(transcript_config(udp_port="28081"))
    verdicts = [check(config) for check in devices.config_checks()]
    udp = next(v for v in verdicts if v is not None)
    assert udp.token == "UDP_PORT_MISMATCH" and "pass --udp-port 28081" in udp.detail
    http = [check(dict(transcript_config(http_url="http://10.0.2.2:18090/other"))) for check in devices.config_checks()]
    mismatch = next(v for v in http if v is not None)
    assert mismatch.token == "HTTP_URL_MISMATCH" and "pass --http-port 18090 --http-path /other" in mismatch.detail
    lan = [check(dict(transcript_config(http_url="http://192.168.1.9:18080/aero-virtio-selftest")))
           for check in devices.config_checks()]
    assert "only at 10.0.2.2" in next(v for v in lan if v is not None).detail
    assert all(check(dict(transcript_config())) is None for check in devices.config_checks())
    assert all(check(dict(transcript_config(udp_port="1"))) is None for check in device_set("--disable-udp").config_checks())


def transcript_config(**fields: str) -> dict[str, str]:
    report = report_of(transcript(config=fields))
    return report.config


def test_a_config_the_run_contradicts_is_a_warning_naming_the_provisioning_flag() -> None:
    config = transcript_config()  # test_net_link_flap=0, require_*_msix=0
    hints = device_set("--with-net-link-flap").config_hints()
    warnings = [w for hint in hints if (w := hint(config)) is not None]
    assert warnings == ["the image was provisioned without --test-net-link-flap (CONFIG test_net_link_flap=0) but "
                        "this run has --with-net-link-flap: the guest will SKIP virtio-net-link-flap; re-provision the "
                        "image with --test-net-link-flap"]
    strict = transcript_config(require_input_msix="1")
    msix = [w for hint in device_set("--virtio-disable-msix").config_hints() if (w := hint(strict)) is not None]
    assert len(msix) == 1 and "requires MSI-X for virtio-input" in msix[0]
    assert not [h for h in device_set().config_hints() if h(strict)]
