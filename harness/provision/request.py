"""What a ``provision`` run is asked for: the inputs, the selftest's options and the provisioning steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.provision.flags import SelftestOptions


@dataclass(frozen=True)
class Steps:
    """The options that are not the selftest's: what provision.cmd does, and which INFs it installs."""

    enable_test_signing: bool = False
    auto_reboot: bool = False
    enable_virtio_input_compat_id_name: bool = False
    inf_allow_list: tuple[str, ...] | None = None  # None: the default list
    install_all_infs: bool = False


@dataclass(frozen=True)
class ProvisionRequest:
    selftest_exe: Path
    drivers_dir: Path
    options: SelftestOptions = field(default_factory=SelftestOptions)
    steps: Steps = field(default_factory=Steps)
