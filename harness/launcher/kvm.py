"""Whether the container gets ``/dev/kvm``, and the group that lets its non-root user open it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harness.logsetup import get_logger

KVM_DEVICE = Path("/dev/kvm")
log = get_logger("launcher.kvm")


@dataclass(frozen=True)
class KvmPassthrough:
    devices: list[str]
    group_add: list[str]
    reason: str

    @property
    def enabled(self) -> bool:
        return bool(self.devices)


def _pass(device: Path, reason: str) -> KvmPassthrough:
    gid = device.stat().st_gid
    return KvmPassthrough([f"{device}:{device}:rwm"], [str(gid)], reason)


def _none(reason: str) -> KvmPassthrough:
    return KvmPassthrough([], [], reason)


def decide(accel: str, device: Path = KVM_DEVICE) -> KvmPassthrough:
    """``tcg``: never; ``kvm``: whenever the device exists (the harness inside then probes it and
    fails with INFRA if it is unusable); ``auto``: only when the KVM probe ran a guest."""
    if accel == "tcg":
        return _none("--accel tcg")
    if not device.exists():
        return _none(f"{device} does not exist")
    if accel == "kvm":
        return _pass(device, "--accel kvm")
    from harness.qemu.accel import kvm_usable

    usable, reason = kvm_usable()
    return _pass(device, reason) if usable else _none(reason)


def log_decision(decision: KvmPassthrough) -> None:
    log.info("kvm passthrough %s: %s", "on" if decision.enabled else "off", decision.reason,
             extra={"kvm": decision.enabled, "kvm_reason": decision.reason, "groups": decision.group_add,
                    "uid": os.getuid()})
