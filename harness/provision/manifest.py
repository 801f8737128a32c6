"""``AERO/provision/manifest.json``: what the media was made with, for programs (the run side).

Format 1, one JSON object::

    format           "aero-win7-provisioning-manifest"
    format_version   1
    harness_version  harness.__version__ of the harness that made the media
    options          every provision option by its flag name without dashes: the selftest's
                     ("http-url", "dns-host", "udp-port", "blk-root", then the switches, implied ones
                     on), then "enable-test-signing", "auto-reboot", "enable-virtio-input-compat-id-name",
                     "inf-allow-list" (the entries as given, or null) and "install-all-infs"
    implied          switch name -> why it is on although not given
    selftest         "media_path", "guest_path", "sha256" (of the file on the media)
    infs             "source" (default | allow-list | all), "root" (AERO/drivers), "installed" (paths
                     relative to root, "/"-separated, in install order), "not_installed",
                     "missing_from_default_list"
    task             "name", "created_with" ("schtasks /TR" or "schtasks /XML"), "xml" (its media
                     path, or null), "command_line" (exactly what the task runs) and "argv" (how the
                     selftest reads it)

``guest_flags`` gives the selftest's flags for a set of options, and ``selftest_options`` reads the
options back from a manifest, so ``guest_flags(selftest_options(m)) == m["task"]["argv"][1:]``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from harness.provision import layout
from harness.provision.flags import SWITCHES, SelftestOptions, guest_flags, implied, option_values
from harness.provision.infs import InfSelection
from harness.provision.request import Steps
from harness.provision.task import TaskDefinition

__all__ = ["FORMAT", "FORMAT_VERSION", "guest_flags", "manifest", "render", "selftest_options"]

FORMAT = "aero-win7-provisioning-manifest"
FORMAT_VERSION = 1


def manifest(*, options: SelftestOptions, steps: Steps, infs: InfSelection, selftest_sha256: str,
             task: TaskDefinition, version: str) -> dict[str, Any]:
    effective, reasons = implied(options)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "harness_version": version,
        "options": {
            **option_values(effective),
            "enable-test-signing": steps.enable_test_signing,
            "auto-reboot": steps.auto_reboot,
            "enable-virtio-input-compat-id-name": steps.enable_virtio_input_compat_id_name,
            "inf-allow-list": None if steps.inf_allow_list is None else list(steps.inf_allow_list),
            "install-all-infs": steps.install_all_infs,
        },
        "implied": reasons,
        "selftest": {
            "media_path": str(layout.SELFTEST),
            "guest_path": str(layout.GUEST_SELFTEST),
            "sha256": selftest_sha256,
        },
        "infs": {
            "source": infs.mode,
            "root": str(layout.DRIVERS),
            "installed": [str(p) for p in infs.selected],
            "not_installed": [str(p) for p in infs.not_selected],
            "missing_from_default_list": list(infs.missing_defaults),
        },
        "task": {
            "name": layout.TASK_NAME,
            "created_with": "schtasks /TR" if task.route == "tr" else "schtasks /XML",
            "xml": str(layout.TASK_XML) if task.route == "xml" else None,
            "command_line": task.command_line,
            "argv": list(task.argv),
        },
    }


def render(data: Mapping[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=True) + "\n").encode("ascii")


def selftest_options(data: Mapping[str, Any]) -> SelftestOptions:
    """The selftest options a manifest records (its "options"; other keys are ignored)."""
    options: Mapping[str, Any] = data["options"]
    names = {"http-url": "http_url", "dns-host": "dns_host", "udp-port": "udp_port", "blk-root": "blk_root"}
    names.update({s.key: s.field for s in SWITCHES})
    known = {f.name for f in dataclasses.fields(SelftestOptions)}
    values = {field: options[key] for key, field in names.items() if key in options and field in known}
    return SelftestOptions(**values)

