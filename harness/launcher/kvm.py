"""Whether the container gets ``/dev/kvm``, and the group that lets its non-root user open it."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import DockerException

from harness.logsetup import get_logger
from harness.qemu.accel import KvmProbe, cached_probe, kvm_usable
from harness.qemu.binary import DEFAULT_QEMU_SYSTEM

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


def decide(accel: str, device: Path = KVM_DEVICE,
           probe_in_image: Callable[[Path], tuple[bool, str]] | None = None) -> KvmPassthrough:
    """``tcg``: never; ``kvm``: whenever the device exists (the harness inside then probes it and
    fails with INFRA if it is unusable); ``auto``: only when a probe guest really ran under KVM,
    booted by the host's QEMU if it has one, else by the image's (``probe_in_image``)."""
    if accel == "tcg":
        return _none("--accel tcg")
    if not device.exists():
        return _none(f"{device} does not exist")
    if accel == "kvm":
        return _pass(device, "--accel kvm")
    if shutil.which(DEFAULT_QEMU_SYSTEM) is not None or probe_in_image is None:
        usable, reason = kvm_usable()
    else:
        usable, reason = probe_in_image(device)
    return _pass(device, reason) if usable else _none(reason)


def image_prober(client: docker.DockerClient, image: str) -> Callable[[Path], tuple[bool, str]]:
    """A probe that boots the harness's probe guest with the image's own QEMU, the device passed
    as it would be for the run; remembered per boot and image like the host probe."""

    def probe(device: Path) -> tuple[bool, str]:
        try:
            image_id = str(client.images.get(image).id)
        except DockerException as err:
            return False, f"cannot probe KVM in {image}: {err}"

        def compute() -> KvmProbe:
            try:
                output = client.containers.run(
                    image, entrypoint=["python3", "-m", "harness.qemu.accel"], remove=True,
                    devices=[f"{device}:{device}:rwm"], group_add=[str(device.stat().st_gid)],
                    user=f"{os.getuid()}:{os.getgid()}", network_mode="none", cap_drop=["ALL"],
                    environment={"AERO_KVM_PROBE_CACHE": "0", "HOME": "/tmp"}, stdout=True, stderr=False)
                answer = json.loads(bytes(output).decode().strip().splitlines()[-1])
                return KvmProbe(bool(answer["usable"]), f"in the image: {answer['reason']}",
                                float(answer["seconds"]))
            except (DockerException, OSError, ValueError, KeyError, IndexError) as err:
                return KvmProbe(False, f"the KVM probe in {image} failed: {err}")

        result = cached_probe({"image": image_id, "device": str(device)}, compute)
        return result.usable, result.reason

    return probe


def log_decision(decision: KvmPassthrough) -> None:
    log.info("kvm passthrough %s: %s", "on" if decision.enabled else "off", decision.reason,
             extra={"kvm": decision.enabled, "kvm_reason": decision.reason, "groups": decision.group_add,
                    "uid": os.getuid()})
