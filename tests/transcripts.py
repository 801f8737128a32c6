"""What the real Windows guest selftest writes on COM1, as tests replay it.

The lines follow the real guest's vocabulary and order (upstream Aero, guest-selftest main.cpp):
protocol records, the diagnostic lines without the prefix (``virtio-blk-irq|INFO|...``) and the
free text that explains a skip (``virtio-snd: disabled by --disable-snd``). ``transcript`` returns
a passing run in the contract layout; a test swaps lines to make the case it wants.
"""

from __future__ import annotations

from collections.abc import Mapping

P = "AERO_VIRTIO_SELFTEST|"
CONFIG_FIELDS = {
    "http_url": "http://10.0.2.2:18080/aero-virtio-selftest",
    "http_url_large": "http://10.0.2.2:18080/aero-virtio-selftest-large",
    "udp_port": "18081", "dns_host": "host.lan", "blk_root": "", "expect_blk_msi": "0", "require_net_msix": "0",
    "require_input_msix": "0", "require_snd_msix": "0", "test_net_link_flap": "0",
}

# Each entry: a key a test can replace or drop, and the line(s).
PASSING_RUN: tuple[tuple[str, str], ...] = (
    ("start", P + "START|version=1"),
    ("config", ""),  # filled from CONFIG_FIELDS
    ("blk-text", "virtio-blk: miniport query PASS queue_size=128"),
    ("blk-flags", "virtio-blk-miniport-flags|INFO|raw=0x00000000|removed=0|surprise_removed=0|reset_in_progress=0|"
                  "reset_pending=0"),
    ("blk-miniport-reset", "virtio-blk-miniport-reset-recovery|INFO|reset_detected=0|hw_reset_bus=0"),
    ("blk-miniport-irq", "virtio-blk-miniport-irq|INFO|mode=msi|messages=2|message_count=2|"
                         "msix_config_vector=0x0000|msix_queue0_vector=0x0001"),
    ("virtio-blk-msix", P + "TEST|virtio-blk-msix|PASS|mode=msix|messages=2|config_vector=0|queue_vector=1"),
    ("virtio-blk-counters", P + "TEST|virtio-blk-counters|INFO|abort=0|reset_device=0|reset_bus=0|pnp=0|"
                                "ioctl_reset=0|capacity_change_events=0"),
    ("virtio-blk-reset-recovery", P + "TEST|virtio-blk-reset-recovery|INFO|reset_detected=0|hw_reset_bus=0"),
    ("blk-io-text", "virtio-blk: write ok bytes=33554432 mbps=123.45"),
    ("virtio-blk", P + "TEST|virtio-blk|PASS|irq_mode=msix|irq_message_count=2|msix_config_vector=0x0000|"
                       "msix_queue_vector=0x0001|write_ok=1|write_bytes=33554432|write_mbps=123.45|flush_ok=1|"
                       "read_ok=1|read_bytes=33554432|read_mbps=234.56"),
    ("virtio-blk-irq", "virtio-blk-irq|INFO|mode=msi|messages=2"),
    ("virtio-blk-resize", P + "TEST|virtio-blk-resize|SKIP|flag_not_set"),
    ("virtio-blk-reset", P + "TEST|virtio-blk-reset|SKIP|reason=flag_not_set"),
    ("virtio-input-bind", P + "TEST|virtio-input-bind|PASS|service=aero_virtio_input|"
                              "pnp_id=PCI\\VEN_1AF4&DEV_1052&SUBSYS_11001AF4&REV_01\\3&267A616A&0&20|devices=2|"
                              "wrong_service=0|missing_service=0|problem=0"),
    ("virtio-input-binding", P + "TEST|virtio-input-binding|PASS|service=aero_virtio_input|"
                                 "pnp_id=PCI\\VEN_1AF4&DEV_1052&SUBSYS_11001AF4&REV_01\\3&267A616A&0&20"),
    ("virtio-input", P + "TEST|virtio-input|PASS|devices=2|keyboard_devices=1|consumer_devices=0|mouse_devices=1|"
                         "ambiguous_devices=0|unknown_devices=0|keyboard_collections=1|consumer_collections=1|"
                         "mouse_collections=1|tablet_devices=0|tablet_collections=0|reason=-|irq_mode=msi|"
                         "irq_message_count=2"),
    ("virtio-input-tablet", P + "TEST|virtio-input-tablet|SKIP|not_present|tablet_devices=0|tablet_collections=0"),
    ("virtio-input-irq", "virtio-input-irq|INFO|mode=msi|messages=2"),
    ("virtio-input-msix", P + "TEST|virtio-input-msix|PASS|mode=msix|messages=3|mapping=per-queue|used_vectors=3|"
                              "config_vector=0|queue0_vector=1|queue1_vector=2|msix_devices=2|intx_devices=0|"
                              "unknown_devices=0"),
    ("virtio-input-led", P + "TEST|virtio-input-led|SKIP|flag_not_set"),
    ("virtio-input-leds", P + "TEST|virtio-input-leds|SKIP|flag_not_set"),
    ("virtio-input-events", P + "TEST|virtio-input-events|SKIP|flag_not_set"),
    ("virtio-input-wheel", P + "TEST|virtio-input-wheel|SKIP|flag_not_set"),
    ("virtio-input-events-modifiers", P + "TEST|virtio-input-events-modifiers|SKIP|flag_not_set"),
    ("virtio-input-events-buttons", P + "TEST|virtio-input-events-buttons|SKIP|flag_not_set"),
    ("virtio-input-events-wheel", P + "TEST|virtio-input-events-wheel|SKIP|flag_not_set"),
    ("virtio-input-media-keys", P + "TEST|virtio-input-media-keys|SKIP|flag_not_set"),
    ("virtio-input-tablet-events", P + "TEST|virtio-input-tablet-events|SKIP|flag_not_set"),
    ("snd-text", "virtio-snd: skipped (enable with --test-snd)"),
    ("virtio-snd", P + "TEST|virtio-snd|SKIP|irq_mode=none|irq_message_count=0|irq_reason=device_missing"),
    ("virtio-snd-capture", P + "TEST|virtio-snd-capture|SKIP|flag_not_set"),
    ("virtio-snd-duplex", P + "TEST|virtio-snd-duplex|SKIP|flag_not_set"),
    ("virtio-snd-eventq", P + "TEST|virtio-snd-eventq|SKIP|device_missing"),
    ("virtio-snd-msix", P + "TEST|virtio-snd-msix|SKIP|reason=device_missing"),
    ("virtio-snd-irq", "virtio-snd-irq|WARN|reason=device_missing"),
    ("net-wait-text", "virtio-net: waiting for link+dhcp timeout_sec=120"),
    ("net-up-text", "virtio-net: adapter up name=Local Area Connection guid={6C1A2B3C-0000-4D5E-8F90-ABCDEF012345} "
                    "ipv4=10.0.2.15"),
    ("udp-text", "virtio-net: UDP echo ok port=18081 bytes_small=32 bytes_mtu=1400"),
    ("dns-text", "virtio-net: DNS resolve ok host=host.lan"),
    ("virtio-net-udp-dns", P + "TEST|virtio-net-udp-dns|PASS|server=10.0.2.3|query=host.lan|sent=1|recv=1|rcode=0"),
    ("http-text", "virtio-net: HTTP GET ok url=http://10.0.2.2:18080/aero-virtio-selftest status=200 bytes_read=3"),
    ("virtio-net-udp", P + "TEST|virtio-net-udp|PASS|bytes=1400|small_bytes=32|mtu_bytes=1400|reason=-|wsa=0"),
    ("virtio-net", P + "TEST|virtio-net|PASS|large_ok=1|large_bytes=1048576|large_fnv1a64=0x8505ae4435522325|"
                       "large_mbps=12.34|upload_ok=1|upload_bytes=1048576|upload_mbps=5.67|msi=1|msi_messages=3|"
                       "irq_mode=msi|irq_message_count=3"),
    ("csum-text", "virtio-net: csum_offload tx=10 rx=12 fallback=0 features=0x3"),
    ("virtio-net-offload-csum", P + "TEST|virtio-net-offload-csum|PASS|tx_csum=10|rx_csum=12|fallback=0|tx_tcp=8|"
                                    "tx_udp=2|rx_tcp=10|rx_udp=2|tx_tcp4=8|tx_tcp6=0|tx_udp4=2|tx_udp6=0|rx_tcp4=10|"
                                    "rx_tcp6=0|rx_udp4=2|rx_udp6=0"),
    ("virtio-net-link-flap", P + "TEST|virtio-net-link-flap|SKIP|flag_not_set"),
    ("virtio-net-msix", P + "TEST|virtio-net-msix|PASS|mode=msix|messages=3|config_vector=0|rx_vector=1|"
                            "tx_vector=2"),
    ("virtio-net-diag", "virtio-net-diag|INFO|irq_mode=msix|irq_message_count=3|msix_config_vector=0x0000|"
                        "msix_rx_vector=0x0001|msix_tx_vector=0x0002"),
    ("virtio-net-irq", "virtio-net-irq|INFO|mode=msi|messages=3"),
    ("result", P + "RESULT|PASS"),
)


def transcript(replace: Mapping[str, str | None] | None = None, config: Mapping[str, str] | None = None,
               insert: Mapping[str, str] | None = None) -> list[str]:
    """The real guest's lines for a passing contract run; ``replace`` swaps (None: drops) entries by
    key, ``insert`` adds a line after the entry of its key, ``config`` changes CONFIG fields."""
    fields = {**CONFIG_FIELDS, **(config or {})}
    lines = []
    for key, line in PASSING_RUN:
        if key == "config":
            line = P + "CONFIG|" + "|".join(f"{k}={v}" for k, v in fields.items())
        line = (replace or {}).get(key, line) if key in (replace or {}) else line
        if line is not None:
            lines.append(line)
        if key in (insert or {}):
            lines.append((insert or {})[key])
    return lines


def as_bytes(lines: list[str]) -> bytes:
    """CRLF-terminated, as the guest writes COM1."""
    return "".join(f"{line}\r\n" for line in lines).encode()
