"""The verdict names the cause the run's flags or the guest's own words give, beyond the marker's token."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import ExitCode
from tests.rulesets import verdict_of
from tests.transcripts import P, transcript

FORCE_NULL = {
    "snd-text": "virtio-snd: ForceNullBackend=1 set (pnp_id=PCI\\VEN_1AF4&DEV_1059&SUBSYS_11001AF4&REV_01\\3&1 "
                "source=device_parameters); virtio transport disabled (host wav capture will be silent)",
    "virtio-snd": P + "TEST|virtio-snd|FAIL|force_null_backend|irq_mode=intx",
    "virtio-snd-capture": P + "TEST|virtio-snd-capture|FAIL|force_null_backend",
    "virtio-snd-duplex": P + "TEST|virtio-snd-duplex|FAIL|force_null_backend",
    "result": P + "RESULT|FAIL",
}


def test_sound_turned_off_by_the_drivers_switch_is_named_with_the_registry_value() -> None:
    for flags in ((), ("--enable-virtio-snd",)):
        verdict = verdict_of(transcript(FORCE_NULL), *flags)
        assert verdict.token == "VIRTIO_SND_FORCE_NULL_BACKEND", verdict.line()
        assert verdict.exit_code == ExitCode.FAIL
        assert "pnp_id=PCI\\VEN_1AF4&DEV_1059&SUBSYS_11001AF4&REV_01\\3&1 source=device_parameters" in verdict.detail
        assert "ForceNullBackend" in verdict.detail and "to 0" in verdict.detail


def test_a_network_failure_under_disable_udp_says_the_echo_is_off() -> None:
    lines = transcript({"virtio-net-udp": P + "TEST|virtio-net-udp|FAIL|bytes=32|reason=timeout|wsa=10060",
                        "virtio-net": P + "TEST|virtio-net|FAIL|large_ok=0|large_bytes=0|upload_ok=0",
                        "result": P + "RESULT|FAIL"})
    verdict = verdict_of(lines, "--disable-udp")
    assert verdict.token == "VIRTIO_NET_FAILED"
    assert "the UDP echo is off (--disable-udp)" in verdict.detail and "without --disable-udp" in verdict.detail
    assert "--disable-udp" not in verdict_of(lines).detail  # with the echo on, the UDP test itself is named


def test_a_field_named_by_the_rule_and_always_shown_appears_once() -> None:
    verdict = verdict_of(transcript({
        "virtio-input-bind": P + "TEST|virtio-input-bind|FAIL|reason=driver_not_bound|expected=aero_virtio_input|"
                                 "actual=<missing>|pnp_id=-|devices=2", "result": P + "RESULT|FAIL"}))
    assert verdict.token == "VIRTIO_INPUT_BIND_FAILED"
    assert verdict.detail.count("expected=") == 1, verdict.detail


FAILURES = {  # one failing marker of the real guest, and the token it must give wherever it stands
    "virtio-blk": (P + "TEST|virtio-blk|FAIL|write_ok=0|flush_ok=0|read_ok=0", "VIRTIO_BLK_FAILED"),
    "virtio-input": (P + "TEST|virtio-input|FAIL|devices=0|reason=pci_device_missing", "VIRTIO_INPUT_FAILED"),
    "virtio-net": (P + "TEST|virtio-net|FAIL|large_ok=0|large_bytes=0|upload_ok=1", "VIRTIO_NET_FAILED"),
    "virtio-snd": (P + "TEST|virtio-snd|FAIL|reason=device_error", "VIRTIO_SND_FAILED"),
}


@settings(max_examples=200, deadline=None)
@given(failing=st.sampled_from(sorted(FAILURES)), seed=st.randoms(use_true_random=False),
       noise=st.lists(st.sampled_from([
           P + "TEST|virtio-unknown-thing|PASS|x=1", P + "TEST|virtio-net-diag|INFO|x=1", "virtio-blk: free text",
           "virtio-foo-irq|INFO|mode=msi", P + "TEST|virtio-snd-eventq|INFO|completions=3"]), max_size=8))
def test_a_failing_run_keeps_its_token_whatever_the_order_of_the_other_markers(failing: str, seed, noise) -> None:  # type: ignore[no-untyped-def]
    line, token = FAILURES[failing]
    lines = transcript({failing: line, "result": P + "RESULT|FAIL"})
    head, markers = lines[:2], [x for x in lines[2:] if x.startswith(P + "TEST|")]
    seed.shuffle(markers)
    verdict = verdict_of(head + markers + noise + [P + "RESULT|FAIL"])
    assert verdict.token == token, verdict.line()
