"""Where things are: on the provisioning media and inside the guest (one source for all modules)."""

from __future__ import annotations

from pathlib import PurePosixPath, PureWindowsPath

# On the media (POSIX form, relative to the media root).
# The file a guest looks for to find the media (upstream's name, so its guest-side tools find ours).
MARKER = PurePosixPath("AERO_PROVISIONING_MEDIA.TXT")
# What the media installs and bakes, for a person reading the CD.
DESCRIPTION = PurePosixPath("AERO_WIN7_PROVISIONING.TXT")
MEDIA_ROOT = PurePosixPath("AERO")
SELFTEST = MEDIA_ROOT / "selftest" / "aero-virtio-selftest.exe"
DRIVERS = MEDIA_ROOT / "drivers"
PROVISION = MEDIA_ROOT / "provision"
SCRIPT = PROVISION / "provision.cmd"
MANIFEST = PROVISION / "manifest.json"
TASK_XML = PROVISION / "AeroVirtioSelftest.xml"  # only when the task's command line is too long for /TR

# Inside the guest.
GUEST_TEST_DIR = PureWindowsPath(r"C:\AeroTests")
GUEST_SELFTEST = GUEST_TEST_DIR / SELFTEST.name
GUEST_LOG = PureWindowsPath(r"C:\aero-win7-provision.log")
TASK_NAME = "AeroVirtioSelftest"
# The registry key whose CompatIdName value relaxes the virtio-input driver's device-name checks.
VIRTIO_INPUT_PARAMETERS = r"HKLM\System\CurrentControlSet\Services\aero_virtio_input\Parameters"

DEFAULT_HTTP_URL = "http://10.0.2.2:18080/aero-virtio-selftest"
DEFAULT_DNS_HOST = "host.lan"
DEFAULT_ISO_NAME = "aero-win7-provisioning.iso"
VOLUME_ID = "AERO_WIN7_PROV"


def on_media(path: PurePosixPath) -> str:
    """A media path in the guest's form, without the drive: ``AERO\\provision\\provision.cmd``."""
    return str(PureWindowsPath(*path.parts))
