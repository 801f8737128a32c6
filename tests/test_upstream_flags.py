"""Every flag name of the upstream Aero Python harness at HEAD is accepted, so a user's scripts keep working.

UPSTREAM_FLAGS is the option list of drivers/windows7/tests/host-harness/invoke_aero_virtio_win7_tests.py
(wilsonzlin/aero, HEAD 98dafdd3): 57 options, 107 spellings.
"""

from __future__ import annotations

import pytest

from harness.cli import build_parser
from tests.rulesets import device_set

UPSTREAM_FLAGS = (
    "--blk-resize-delta-mib",
    "--disable-udp",
    "--disk-image",
    "--dry-run",
    "--enable-snd-buffer-limits",
    "--enable-virtio-blk-reset",
    "--enable-virtio-blk-resize",
    "--enable-virtio-input-events",
    "--enable-virtio-input-led",
    "--enable-virtio-input-leds",
    "--enable-virtio-input-media-keys",
    "--enable-virtio-input-tablet-events",
    "--enable-virtio-input-wheel",
    "--enable-virtio-net-link-flap",
    "--enable-virtio-snd",
    "--enable-virtio-snd-buffer-limits",
    "--fail-on-blk-miniport-flags",
    "--fail-on-blk-recovery",
    "--fail-on-blk-reset-recovery",
    "--follow-serial",
    "--force-intx",
    "--http-log",
    "--http-path",
    "--http-port",
    "--intx-only",
    "--memory-mb",
    "--print-qemu",
    "--print-qemu-cmd",
    "--qemu-preflight-pci",
    "--qemu-system",
    "--qmp-preflight-pci",
    "--require-blk-msix",
    "--require-expect-blk-msi",
    "--require-input-msix",
    "--require-intx",
    "--require-msi",
    "--require-net-csum-offload",
    "--require-net-msix",
    "--require-net-udp-csum-offload",
    "--require-no-blk-miniport-flags",
    "--require-no-blk-recovery",
    "--require-no-blk-reset-recovery",
    "--require-snd-msix",
    "--require-virtio-blk-msix",
    "--require-virtio-blk-reset",
    "--require-virtio-blk-resize",
    "--require-virtio-input-binding",
    "--require-virtio-input-events",
    "--require-virtio-input-led",
    "--require-virtio-input-leds",
    "--require-virtio-input-media-keys",
    "--require-virtio-input-msix",
    "--require-virtio-input-tablet-events",
    "--require-virtio-input-wheel",
    "--require-virtio-net-csum-offload",
    "--require-virtio-net-link-flap",
    "--require-virtio-net-msix",
    "--require-virtio-net-udp-csum-offload",
    "--require-virtio-snd",
    "--require-virtio-snd-buffer-limits",
    "--require-virtio-snd-msix",
    "--serial-log",
    "--smp",
    "--snapshot",
    "--timeout-seconds",
    "--udp-port",
    "--virtio-blk-msix-vectors",
    "--virtio-blk-vectors",
    "--virtio-disable-msix",
    "--virtio-input-msix-vectors",
    "--virtio-input-vectors",
    "--virtio-msix-vectors",
    "--virtio-net-msix-vectors",
    "--virtio-net-vectors",
    "--virtio-snd-audio-backend",
    "--virtio-snd-msix-vectors",
    "--virtio-snd-vectors",
    "--virtio-snd-verify-wav",
    "--virtio-snd-wav-path",
    "--virtio-snd-wav-peak-threshold",
    "--virtio-snd-wav-rms-threshold",
    "--virtio-transitional",
    "--with-blk-reset",
    "--with-blk-resize",
    "--with-input-events",
    "--with-input-events-extended",
    "--with-input-events-extra",
    "--with-input-led",
    "--with-input-leds",
    "--with-input-media-keys",
    "--with-input-tablet-events",
    "--with-input-wheel",
    "--with-net-link-flap",
    "--with-snd-buffer-limits",
    "--with-tablet-events",
    "--with-virtio-blk-reset",
    "--with-virtio-blk-resize",
    "--with-virtio-input-events",
    "--with-virtio-input-led",
    "--with-virtio-input-leds",
    "--with-virtio-input-media-keys",
    "--with-virtio-input-tablet-events",
    "--with-virtio-input-wheel",
    "--with-virtio-net-link-flap",
    "--with-virtio-snd",
    "--with-virtio-snd-buffer-limits",
    "--with-virtio-tablet",
)
VALUES = {"--qemu-system": "qemu-system-x86_64", "--disk-image": "x.qcow2", "--serial-log": "com1.log",
          "--http-port": "18080", "--http-path": "/aero-virtio-selftest", "--http-log": "http.log", "--udp-port": "18081",
          "--blk-resize-delta-mib": "64", "--virtio-snd-audio-backend": "wav", "--virtio-snd-wav-path": "out.wav",
          "--virtio-snd-wav-peak-threshold": "200", "--virtio-snd-wav-rms-threshold": "50", "--memory-mb": "2048",
          "--smp": "2", "--timeout-seconds": "600"}
# What upstream also requires next to a sound flag. The tablet-events flags need nothing: they attach
# the tablet themselves, as upstream's do (attach_virtio_tablet = with_virtio_tablet or need_input_tablet_events).
SND_NEEDS = ("--enable-virtio-snd", "--virtio-snd-audio-backend", "wav")


def _companions(flag: str) -> tuple[str, ...]:
    if ("snd" in flag and flag not in ("--with-virtio-snd", "--require-virtio-snd", "--enable-virtio-snd")) or \
            flag == "--virtio-snd-wav-path":
        return SND_NEEDS
    return ()


def test_the_list_is_upstreams() -> None:
    assert len(UPSTREAM_FLAGS) == 107 and len(set(UPSTREAM_FLAGS)) == 107


@pytest.mark.parametrize("flag", UPSTREAM_FLAGS)
def test_each_upstream_flag_is_accepted(flag: str) -> None:
    parser = build_parser()
    run = parser._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    action = next(a for a in run._actions if flag in a.option_strings)
    value = VALUES.get(flag, "4")  # the vectors flags take a count
    argv = [] if flag == "--disk-image" else [flag, *([value] if action.nargs != 0 else [])]
    device_set(*argv, *_companions(flag))  # parsed and checked as a run's flags: no UsageError


@pytest.mark.parametrize("flag", [f for f in UPSTREAM_FLAGS if "tablet-events" in f])
def test_tablet_events_attach_the_tablet_they_move(flag: str) -> None:
    devices = device_set(flag)
    assert [f.qdev_id for f in devices.pci() if f.what == "virtio-input"] == ["kbd0", "mouse0", "tablet0"]
    args = devices.qemu_args({})
    assert "virtio-tablet-pci,id=tablet0,display=vga1" in args and "secondary-vga,id=vga1" in args
    assert [r.action for r in devices.reactions()] == ["input-tablet-inject"]
