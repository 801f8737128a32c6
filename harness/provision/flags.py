"""What the boot-time task tells the guest selftest: the options, their checks and the guest's argv.

Every switch here is also a ``provision`` flag of the same name (the guest's own spelling), so
``provision --test-blk-reset`` bakes ``--test-blk-reset``. ``SWITCHES`` is the one table: the
command line, the media's text file and the manifest are all made from it.

Two switches imply others, as upstream's generator does:

- ``--test-input-events-extended`` also bakes ``--test-input-events``;
- ``--test-snd-capture`` is turned on when a virtio-snd requirement is given (``AUTO_SND_CAPTURE``)
  and capture is not disabled: older selftests test capture only when told to, and a run with
  virtio-snd required expects the capture results.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from harness.errors import UsageError
from harness.hostnames import is_host_name
from harness.provision import layout
from harness.provision.quoting import check_text


@dataclass(frozen=True)
class Switch:
    """A selftest flag without a value, and the ``provision`` flag that bakes it."""

    field: str  # the SelftestOptions attribute
    flag: str  # the guest's flag, and ours
    upstream: tuple[str, ...]  # upstream's names for it (kebab-case) where they differ from ours
    help: str

    @property
    def key(self) -> str:
        """The name without dashes, as the manifest writes it."""
        return self.flag.removeprefix("--")


SWITCHES: tuple[Switch, ...] = (
    Switch("require_net_msix", "--require-net-msix", ("--require-virtio-net-msix",),
           "fail unless virtio-net runs with MSI-X"),
    Switch("require_input_msix", "--require-input-msix", ("--require-virtio-input-msix",),
           "fail unless virtio-input runs with MSI-X"),
    Switch("require_snd_msix", "--require-snd-msix", ("--require-virtio-snd-msix",),
           "fail unless virtio-snd is present and runs with MSI-X"),
    Switch("expect_blk_msi", "--expect-blk-msi", (), "fail the disk test when virtio-blk still uses INTx"),
    Switch("test_blk_resize", "--test-blk-resize", ("--test-virtio-blk-resize",),
           "run the virtio-blk runtime resize test (the host grows the disk)"),
    Switch("test_blk_reset", "--test-blk-reset", ("--test-virtio-blk-reset",),
           "run the virtio-blk miniport reset and recovery test"),
    Switch("test_input_events", "--test-input-events", (),
           "run the keyboard and mouse event test (the host injects the events)"),
    Switch("test_input_events_extended", "--test-input-events-extended", ("--test-input-events-extra",),
           "also test modifiers, buttons and the wheel; bakes --test-input-events too"),
    Switch("test_input_media_keys", "--test-input-media-keys", ("--test-media-keys",),
           "run the media keys (Consumer Control) test"),
    Switch("test_input_leds", "--test-input-leds", (), "run the keyboard LED test (the selftest's older name)"),
    Switch("test_input_led", "--test-input-led", (), "run the keyboard LED test (the selftest's newer name)"),
    Switch("test_input_tablet_events", "--test-input-tablet-events", ("--test-tablet-events",),
           "run the tablet (absolute pointer) event test"),
    Switch("test_net_link_flap", "--test-net-link-flap", (),
           "run the link down/up test (the host flaps the link)"),
    Switch("require_snd", "--require-snd", (), "fail when virtio-snd is missing or does not pass"),
    Switch("disable_snd", "--disable-snd", (), "skip the virtio-snd tests, even when a device is present"),
    Switch("disable_snd_capture", "--disable-snd-capture", (), "skip the capture and duplex tests (playback runs)"),
    Switch("test_snd_capture", "--test-snd-capture", (),
           "run the capture smoke test; turned on without asking by --require-snd, --require-snd-msix, "
           "--require-snd-capture, --require-non-silence or --test-snd-buffer-limits unless --disable-snd or "
           "--disable-snd-capture is given (as upstream: older selftests test capture only when told)"),
    Switch("require_snd_capture", "--require-snd-capture", (), "fail when there is no capture endpoint"),
    Switch("require_non_silence", "--require-non-silence", (), "fail the capture test when it records only silence"),
    Switch("test_snd_buffer_limits", "--test-snd-buffer-limits", (), "run the large-buffer stress test"),
    Switch("allow_virtio_snd_transitional", "--allow-virtio-snd-transitional", (),
           "accept the transitional virtio-snd device (PCI\\VEN_1AF4&DEV_1018); also installs "
           "aero-virtio-snd-legacy.inf with the default INF list"),
)

# Any of these turns --test-snd-capture on (unless capture is disabled).
AUTO_SND_CAPTURE = ("require_snd", "require_snd_msix", "require_snd_capture", "require_non_silence",
                    "test_snd_buffer_limits")

# (switch, the switches it contradicts). The selftest itself refuses each pair but the last (exit 2 before
# it tests anything); upstream's generator refuses that one too (a disabled device has no transitional ID).
CONFLICTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("disable_snd", ("require_snd", "require_snd_msix", "require_snd_capture", "test_snd_capture",
                     "test_snd_buffer_limits", "require_non_silence", "allow_virtio_snd_transitional")),
    ("disable_snd_capture", ("require_snd_capture", "test_snd_capture", "require_non_silence")),
)



@dataclass(frozen=True)
class SelftestOptions:
    """The options baked into the boot-time task (valued ones first, then the ``SWITCHES``)."""

    http_url: str = layout.DEFAULT_HTTP_URL
    dns_host: str = layout.DEFAULT_DNS_HOST
    udp_port: int | None = None  # None: not passed (older selftests do not know --udp-port)
    blk_root: str | None = None  # None: the selftest picks a folder itself
    require_net_msix: bool = False
    require_input_msix: bool = False
    require_snd_msix: bool = False
    expect_blk_msi: bool = False
    test_blk_resize: bool = False
    test_blk_reset: bool = False
    test_input_events: bool = False
    test_input_events_extended: bool = False
    test_input_media_keys: bool = False
    test_input_leds: bool = False
    test_input_led: bool = False
    test_input_tablet_events: bool = False
    test_net_link_flap: bool = False
    require_snd: bool = False
    disable_snd: bool = False
    disable_snd_capture: bool = False
    test_snd_capture: bool = False
    require_snd_capture: bool = False
    require_non_silence: bool = False
    test_snd_buffer_limits: bool = False
    allow_virtio_snd_transitional: bool = False

    def on(self, field: str) -> bool:
        value = getattr(self, field)
        assert isinstance(value, bool), field
        return value


def switch(field: str) -> Switch:
    return next(s for s in SWITCHES if s.field == field)


def _check_url(text: str) -> None:
    try:
        url = urlsplit(text)
        ok = url.scheme in ("http", "https") and bool(url.hostname) and (url.port is None or url.port > 0)
    except ValueError:  # an unclosed [, or a port that is not a port number
        ok = False
    if not ok or any(ch.isspace() for ch in text):
        raise UsageError(f"--http-url is not an http:// URL: {text!r}")


def check(options: SelftestOptions) -> None:
    """Refuse values the guest cannot take and pairs it refuses; UsageError names the flags."""
    _check_url(options.http_url)
    if not is_host_name(options.dns_host):
        raise UsageError(f"--dns-host is not a host name (letters, digits, '-' and dots): {options.dns_host!r}")
    blk_root = options.blk_root
    if blk_root is not None and (not blk_root.strip() or '"' in blk_root):
        raise UsageError(f"--blk-root is not a Windows path: {blk_root!r}")
    if options.udp_port is not None and not 1 <= options.udp_port <= 65535:
        raise UsageError(f"--udp-port is not a port number (1-65535): {options.udp_port}")
    for option, value in (("--http-url", options.http_url), ("--blk-root", blk_root or "")):
        try:
            check_text(value, option)
        except ValueError as err:
            raise UsageError(str(err)) from err
    for field, contradicted in CONFLICTS:
        if not options.on(field):
            continue
        for other in contradicted:
            if options.on(other):
                raise UsageError(f"{switch(field).flag} contradicts {switch(other).flag}; give one or the other")


def implied(options: SelftestOptions) -> tuple[SelftestOptions, dict[str, str]]:
    """``options`` with the implied switches turned on, and why each was (flag name without dashes -> reason)."""
    changes: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    if options.test_input_events_extended and not options.test_input_events:
        changes["test_input_events"] = True
        reasons[switch("test_input_events").key] = "implied by --test-input-events-extended"
    given = [field for field in AUTO_SND_CAPTURE if options.on(field)]
    if given and not (options.test_snd_capture or options.disable_snd or options.disable_snd_capture):
        changes["test_snd_capture"] = True
        reasons[switch("test_snd_capture").key] = "turned on by " + ", ".join(switch(f).flag for f in given)
    return dataclasses.replace(options, **changes), reasons


def guest_flags(options: SelftestOptions) -> list[str]:
    """The selftest's arguments (after its path) for ``options``, implied switches included."""
    effective, _ = implied(options)
    args = ["--http-url", effective.http_url, "--dns-host", effective.dns_host]
    if effective.udp_port is not None:
        args += ["--udp-port", str(effective.udp_port)]
    if effective.blk_root is not None:
        args += ["--blk-root", effective.blk_root]
    args += [s.flag for s in SWITCHES if effective.on(s.field)]
    return args


def option_values(options: SelftestOptions) -> dict[str, str | int | bool | None]:
    """Every option by its flag name without dashes (``http-url``, ``test-blk-reset``...), in table order."""
    values: dict[str, str | int | bool | None] = {
        "http-url": options.http_url, "dns-host": options.dns_host,
        "udp-port": options.udp_port, "blk-root": options.blk_root,
    }
    values.update({s.key: options.on(s.field) for s in SWITCHES})
    return values
