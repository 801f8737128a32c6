"""What a QEMU binary offers, asked once over QMP: its device types, their properties, and the CPU
limit of each machine type.

One short-lived QEMU (``-machine none``, paused, no display) answers ``query-machines``,
``qom-list-types`` and ``device-list-properties`` for the devices a run may use. The answer is
remembered for the process: it only changes with another binary.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient, QMPError

from harness.errors import UsageError
from harness.qemu.binary import die_with_parent
from harness.qemu.cmdline import opts
from harness.runtime import make_runtime_dir

ANSWER_TIMEOUT_S = 30.0
# The devices whose properties a run may depend on (layouts, interrupt modes, display binding).
PROBED_DEVICES = ("virtio-blk-pci", "virtio-net-pci", "virtio-sound-pci", "virtio-keyboard-pci", "virtio-mouse-pci",
                  "virtio-tablet-pci", "VGA", "secondary-vga")


@dataclass(frozen=True)
class Capabilities:
    devices: frozenset[str]
    cpu_max: dict[str, int]  # machine name or alias -> most CPUs it takes
    properties: dict[str, frozenset[str]] = field(default_factory=dict)  # device -> its property names

    def has_device(self, name: str) -> bool:
        return name in self.devices

    def max_cpus(self, machine: str) -> int | None:
        return self.cpu_max.get(machine)

    def device_properties(self, device: str) -> frozenset[str]:
        return self.properties.get(device, frozenset())


async def _ask(qemu: str, socket_path: Path, devices: tuple[str, ...]) -> Capabilities:
    client = QMPClient("aero-win7-harness-capabilities")
    await client.start_server(str(socket_path))
    argv = [qemu, "-machine", "none", "-nodefaults", "-display", "none", "-S",
            "-chardev", opts("socket", id="qmp", path=socket_path, server=False), "-mon", "chardev=qmp,mode=control"]
    proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
    try:
        await asyncio.wait_for(client.accept(), ANSWER_TIMEOUT_S)
        machines: list[dict[str, Any]] = await client.execute("query-machines")  # type: ignore[assignment]
        types: list[dict[str, Any]] = await client.execute(  # type: ignore[assignment]
            "qom-list-types", {"implements": "device", "abstract": False})
        names = frozenset(str(t["name"]) for t in types)
        properties: dict[str, frozenset[str]] = {}
        for device in devices:
            if device in names:
                props: list[dict[str, Any]] = await client.execute(  # type: ignore[assignment]
                    "device-list-properties", {"typename": device})
                properties[device] = frozenset(str(p["name"]) for p in props)
        cpu_max: dict[str, int] = {}
        for machine in machines:
            for key in ("name", "alias"):
                if machine.get(key):
                    cpu_max[str(machine[key])] = int(machine.get("cpu-max", 0))
        try:
            await client.execute("quit")
        except (QMPError, EOFError, OSError):
            pass  # QEMU closing the connection as it quits
        return Capabilities(names, cpu_max, properties)
    finally:
        try:
            await client.disconnect()
        except (QMPError, EOFError, OSError):
            pass  # QEMU closed the connection first, as it does when it quits
        if proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@functools.cache
def capabilities(qemu: str) -> Capabilities:
    """The capabilities of the QEMU at ``qemu`` (an absolute path); UsageError when it cannot answer."""
    folder = make_runtime_dir()
    try:
        return asyncio.run(_ask(qemu, folder / "qmp.sock", PROBED_DEVICES))
    except (TimeoutError, QMPError, OSError, EOFError, KeyError, TypeError, ValueError) as err:
        raise UsageError(f"{qemu} did not answer what it supports over QMP: {err}") from err
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def missing_devices(caps: Capabilities, wanted: Iterable[str]) -> list[str]:
    return [name for name in wanted if not caps.has_device(name)]
