"""virtio-input: a keyboard and a mouse (and, with --with-virtio-tablet or --with-input-tablet-events,
a tablet), contract layout only.

The Aero input driver binds 1AF4:1052 (modern-only, as QEMU's virtio input devices always are).
QMP ``input-send-event`` addresses a display, not an input device, so the keyboard and mouse are
bound to the primary display (``display=vga0``) and the tablet to a display of its own
(``secondary-vga,id=vga1``): otherwise button and wheel events would go to the tablet.

The wheel tests cannot pass on QEMU as released: the real guest wants a horizontal wheel (AC Pan)
in every scroll report, and QEMU's virtio mouse has none (``NO_HWHEEL``). The run says so when it
starts and in the failing verdict.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.devices.base import (
    DISPLAY,
    Board,
    ConfigHint,
    Device,
    DriverNeeds,
    ExpectedFunction,
    add_vectors_argument,
    flag,
    msix_rule,
    required,
    requires_msix_but_intx,
)
from harness.errors import UsageError
from harness.logsetup import get_logger
from harness.qemu.cmdline import opts
from harness.rules import CheckRule, MarkerRule, token_base
from harness.verdict import Failure, GuestReport, Rule

if TYPE_CHECKING:
    from harness.actions import Reaction

INPUT_ID = 0x1052
KEYBOARD_ID, MOUSE_ID, TABLET_ID = "kbd0", "mouse0", "tablet0"
# aero_virtio_input.inf binds only these subsystems (keyboard, mouse), aero_virtio_tablet.inf only the
# tablet's; QEMU's input functions all report 1AF4:1100, so only the INF alias with the generic ID
# (upstream's virtio-input.inf.disabled) binds them, and the driver wants CompatIdName for QEMU's names.
_INPUT_REMEDY = ("install the INF alias with the generic ID instead (upstream's virtio-input.inf.disabled, renamed "
                 "virtio-input.inf) and enable the driver's CompatIdName mode for QEMU's device names "
                 "(provision --enable-virtio-input-compat-id-name)")
_EXPLAINS = ("VIRTIO_INPUT_BIND_FAILED", "VIRTIO_INPUT_FAILED")
AERO_DRIVER_NEEDS = {
    KEYBOARD_ID: DriverNeeds(subsystems=(0x0010, 0x0011), remedy=_INPUT_REMEDY, explains=_EXPLAINS),
    MOUSE_ID: DriverNeeds(subsystems=(0x0010, 0x0011), remedy=_INPUT_REMEDY, explains=_EXPLAINS),
    TABLET_ID: DriverNeeds(subsystems=(0x0012,), remedy=_INPUT_REMEDY, explains=_EXPLAINS),
}
TABLET_DISPLAY = "vga1"
EXTENDED = ("virtio-input-events-modifiers", "virtio-input-events-buttons", "virtio-input-events-wheel")
WHEEL_MARKERS = ("virtio-input-wheel", "virtio-input-events-wheel")
# QEMU's virtio mouse (hw/input/virtio-input-hid.c) turns the wheel-up/-down buttons into REL_WHEEL
# and drops wheel-left/-right ("unmapped button" on its stderr); it does not advertise REL_HWHEEL.
# Measured on 7.2.22 (the host's) and 10.0.13 (the image's); the source has no REL_HWHEEL through
# the 10.1 development cycle either. QMP's rel axes are only x and y.
NO_HWHEEL = ("QEMU's virtio-mouse-pci has no horizontal wheel: QEMU 7.2 and 10.0 drop the wheel-left presses "
             "the harness sends (no QEMU release through 10.0 sends REL_HWHEEL), so the guest sees no AC Pan and "
             "the wheel tests fail; they need a QEMU whose virtio mouse sends REL_HWHEEL")
log = get_logger("devices.input")


@dataclass(frozen=True)
class Input(Device):
    family = "virtio-input"
    short = "input"
    vectors: int | None = None
    with_tablet: bool = False
    with_events: bool = False
    with_wheel: bool = False
    with_extended: bool = False
    with_media_keys: bool = False
    with_tablet_events: bool = False
    with_led: bool = False
    with_leds: bool = False
    require_msix: bool = False
    require_binding: bool = False

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("virtio-input (contract layout)")
        add_vectors_argument(g, "input", "virtio-input devices")
        flag(g, "--with-virtio-tablet", help="attach a virtio tablet too (on a display of its own)")
        flag(g, "--with-input-events", "--with-virtio-input-events", "--require-virtio-input-events",
             "--enable-virtio-input-events",
             help="inject key 'a', a mouse move and a left click over QMP when the guest says "
                  "virtio-input-events|READY; the guest's test must PASS (provision with --test-input-events)")
        flag(g, "--with-input-wheel", "--with-virtio-input-wheel", "--require-virtio-input-wheel",
             "--enable-virtio-input-wheel",
             help="... and mouse wheel events; the guest's virtio-input-wheel test must PASS")
        flag(g, "--with-input-events-extended", "--with-input-events-extra",
             help="... and modifiers (shift+b, ctrl, alt, F1), the side and extra buttons and the wheel; the guest's "
                  "virtio-input-events-modifiers/-buttons/-wheel tests must PASS (provision with "
                  "--test-input-events-extended)")
        flag(g, "--with-input-media-keys", "--with-virtio-input-media-keys", "--require-virtio-input-media-keys",
             "--enable-virtio-input-media-keys",
             help="press volume-up over QMP when the guest says virtio-input-media-keys|READY (provision with "
                  "--test-input-media-keys)")
        flag(g, "--with-input-tablet-events", "--with-tablet-events", "--with-virtio-input-tablet-events",
             "--require-virtio-input-tablet-events", "--enable-virtio-input-tablet-events",
             help="move the tablet to (10000, 20000) and click when the guest says virtio-input-tablet-events|READY "
                  "(attaches the tablet, as --with-virtio-tablet does; provision with --test-input-tablet-events)")
        flag(g, "--with-input-led", "--with-virtio-input-led", "--require-virtio-input-led",
             "--enable-virtio-input-led",
             help="the guest's virtio-input-led test must PASS (provision with --test-input-led)")
        flag(g, "--with-input-leds", "--with-virtio-input-leds", "--require-virtio-input-leds",
             "--enable-virtio-input-leds",
             help="the guest's virtio-input-leds test must PASS (provision with --test-input-leds)")
        flag(g, "--require-virtio-input-msix", "--require-input-msix",
             help="the guest's virtio-input-msix marker must report mode=msix")
        flag(g, "--require-virtio-input-binding",
             help="the guest's virtio-input-binding marker must PASS (the driver bound to the device)")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Input:
        return cls(vectors=args.virtio_input_vectors, with_tablet=args.with_virtio_tablet,
                   with_events=args.with_input_events, with_wheel=args.with_input_wheel,
                   with_extended=args.with_input_events_extended, with_media_keys=args.with_input_media_keys,
                   with_tablet_events=args.with_input_tablet_events, with_led=args.with_input_led,
                   with_leds=args.with_input_leds, require_msix=args.require_virtio_input_msix,
                   require_binding=args.require_virtio_input_binding)

    @property
    def injects_events(self) -> bool:
        return self.with_events or self.with_wheel or self.with_extended

    @property
    def wants_wheel(self) -> bool:
        return self.with_wheel or self.with_extended

    @property
    def attaches_tablet(self) -> bool:
        """Tablet events imply the tablet they move (upstream: with_virtio_tablet or need_input_tablet_events)."""
        return self.with_tablet or self.with_tablet_events

    def _asked(self) -> list[str]:
        return [name for name, on in (
            ("--with-virtio-tablet", self.with_tablet), ("--with-input-events", self.with_events),
            ("--with-input-wheel", self.with_wheel), ("--with-input-events-extended", self.with_extended),
            ("--with-input-media-keys", self.with_media_keys), ("--with-input-tablet-events", self.with_tablet_events),
            ("--with-input-led", self.with_led), ("--with-input-leds", self.with_leds),
            ("--require-virtio-input-msix", self.require_msix),
            ("--require-virtio-input-binding", self.require_binding),
            ("--virtio-input-vectors", self.vectors is not None)) if on]

    def check(self, board: Board) -> None:
        super().check(board)
        if not board.contract and self._asked():
            raise UsageError(f"{self._asked()[0]} needs virtio-input, which the {board.layout.value} layout does "
                             "not attach (use --virtio-layout contract)")
        if self.require_msix and board.disable_msix:
            raise UsageError("--virtio-disable-msix and --require-virtio-input-msix exclude each other")

    def attached(self, board: Board) -> bool:
        return board.contract

    # -- QEMU -----------------------------------------------------------------------------------------
    def qemu_args(self, board: Board, written: Mapping[Path, Path]) -> list[str]:
        args = [*self.device_arg(board, "virtio-keyboard-pci", {"id": KEYBOARD_ID, "display": DISPLAY}),
                *self.device_arg(board, "virtio-mouse-pci", {"id": MOUSE_ID, "display": DISPLAY})]
        if self.attaches_tablet:
            args += ["-device", opts("secondary-vga", id=TABLET_DISPLAY),
                     *self.device_arg(board, "virtio-tablet-pci", {"id": TABLET_ID, "display": TABLET_DISPLAY})]
        return args

    def pci(self, board: Board) -> list[ExpectedFunction]:
        ids = [KEYBOARD_ID, MOUSE_ID] + ([TABLET_ID] if self.attaches_tablet else [])
        return [ExpectedFunction(qdev, self.family, (INPUT_ID,), needs=AERO_DRIVER_NEEDS[qdev]) for qdev in ids]

    def provisioning(self) -> list[str]:
        wanted = [("--test-input-events", self.injects_events), ("--test-input-events-extended", self.with_extended),
                  ("--test-input-media-keys", self.with_media_keys),
                  ("--test-input-tablet-events", self.with_tablet_events), ("--test-input-led", self.with_led),
                  ("--test-input-leds", self.with_leds), ("--require-input-msix", self.require_msix)]
        return [name for name, on in wanted if on]

    def reactions(self, board: Board) -> Sequence[Reaction]:
        from harness.actions import input_events_reaction, media_keys_reaction, tablet_reaction

        reactions: list[Reaction] = []
        if self.injects_events:
            if self.wants_wheel:  # here: once per run, as the guest boots
                wheel_flag = "--with-input-wheel" if self.with_wheel else "--with-input-events-extended"
                log.warning("%s: %s", wheel_flag, NO_HWHEEL)
            reactions.append(input_events_reaction(DISPLAY, wheel=self.wants_wheel, extended=self.with_extended))
        if self.with_media_keys:
            reactions.append(media_keys_reaction(DISPLAY))
        if self.with_tablet_events:
            reactions.append(tablet_reaction(TABLET_DISPLAY))
        return reactions

    def config_hints(self, board: Board) -> Sequence[ConfigHint]:
        if not (board.disable_msix and self.attached(board)):
            return []
        return [requires_msix_but_intx("require_input_msix", self.family)]

    # -- the verdict ----------------------------------------------------------------------------------
    def rules(self, board: Board) -> Sequence[Rule]:
        if not self.attached(board):
            return []
        rules: list[Rule] = [
            required("virtio-input-bind", board, keys=("reason", "expected", "actual", "pnp_id", "devices")),
            required(self.family, board, keys=("devices", "keyboard_devices", "mouse_devices", "tablet_devices",
                                               "irq_mode")),
        ]
        flagged = (
            (self.require_binding, "virtio-input-binding", "--require-virtio-input-binding", None),
            (self.injects_events, "virtio-input-events", "--with-input-events", "--test-input-events"),
            (self.with_wheel, "virtio-input-wheel", "--with-input-wheel", "--test-input-events"),
            (self.with_media_keys, "virtio-input-media-keys", "--with-input-media-keys", "--test-input-media-keys"),
            (self.with_tablet_events, "virtio-input-tablet-events", "--with-input-tablet-events",
             "--test-input-tablet-events"),
            (self.with_led, "virtio-input-led", "--with-input-led", "--test-input-led"),
            (self.with_leds, "virtio-input-leds", "--with-input-leds", "--test-input-leds"),
        )
        rules += [_marker_rule(marker, because, hint) for on, marker, because, hint in flagged if on]
        if self.with_extended:
            rules.append(CheckRule("virtio-input-events-extended", _extended))
        if self.require_msix:
            rules.append(msix_rule(self.family, "--require-virtio-input-msix"))
        return rules


@dataclass(frozen=True)
class WheelRule(MarkerRule):
    """A wheel marker: its failure, when the guest saw no horizontal wheel, says why (``NO_HWHEEL``)."""

    def evaluate(self, report: GuestReport) -> Failure | None:
        failure = super().evaluate(report)
        outcome = report.tests.get(self.marker)
        if failure is None or outcome is None or not _no_hwheel(outcome.fields):
            return failure
        return Failure(failure.token, f"{failure.detail}; {NO_HWHEEL}", failure.order)


def _no_hwheel(fields: Mapping[str, str]) -> bool:
    """The guest saw the vertical wheel and no horizontal one (either wheel marker's saw_wheel / saw_hwheel)."""
    return fields.get("saw_wheel") == "1" and fields.get("saw_hwheel") == "0"


def _marker_rule(marker: str, because: str, provision: str | None) -> MarkerRule:
    kind = WheelRule if marker in WHEEL_MARKERS else MarkerRule
    return kind(marker, because, provision=provision)


def _extended(report: GuestReport) -> Failure | None:
    """The three extended sub-tests, under upstream's one token family."""
    base = "VIRTIO_INPUT_EVENTS_EXTENDED"
    failures = []
    for marker in EXTENDED:
        failure = _marker_rule(marker, "--with-input-events-extended", "--test-input-events-extended").evaluate(report)
        if failure is not None:
            token = failure.token.replace(token_base(marker), base) if "MISSING" not in failure.token \
                else f"MISSING_{base}"
            failures.append(Failure(token, failure.detail, failure.order))
    return min(failures, key=lambda f: f.order) if failures else None

