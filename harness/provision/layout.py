"""Where things are: on the provisioning media and inside the guest (one source for all modules)."""

from __future__ import annotations

from pathlib import PurePosixPath, PureWindowsPath

# On the media (POSIX form, relative to the media root).
MARKER = PurePosixPath("AERO_WIN7_PROVISIONING.TXT")
MEDIA_ROOT = PurePosixPath("AERO")
SELFTEST = MEDIA_ROOT / "selftest" / "aero-virtio-selftest.exe"
DRIVERS = MEDIA_ROOT / "drivers"
SCRIPT = MEDIA_ROOT / "provision" / "provision.cmd"

# Inside the guest.
GUEST_TEST_DIR = PureWindowsPath(r"C:\AeroTests")
GUEST_SELFTEST = GUEST_TEST_DIR / SELFTEST.name
GUEST_LOG = PureWindowsPath(r"C:\aero-win7-provision.log")
TASK_NAME = "AeroVirtioSelftest"

DEFAULT_HTTP_URL = "http://10.0.2.2:18080/aero-virtio-selftest"
DEFAULT_ISO_NAME = "aero-win7-provisioning.iso"
VOLUME_ID = "AERO_WIN7_PROV"


def on_media(path: PurePosixPath) -> str:
    """A media path in the guest's form, without the drive: ``AERO\\provision\\provision.cmd``."""
    return str(PureWindowsPath(*path.parts))
