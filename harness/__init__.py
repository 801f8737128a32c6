"""aero-win7-harness: host side of the Aero Windows 7 virtio selftests."""

__version__ = "0.1.0"
