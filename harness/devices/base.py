"""What every virtio device family module provides, and what the modules of a run share.

A family module (blk, net, input, snd) owns, for its device: its flags, its QEMU arguments in each
layout, its ids, the PCI functions the preflight expects, the guest markers it is responsible for
and which of them a run requires (its verdict rules), its CONFIG checks, its host services and
actions, and its checks after QEMU ended. The runner, the command line builder and the verdict
only iterate over the families of a run.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from harness.errors import UsageError
from harness.qemu.cmdline import opts
from harness.rules import MarkerRule
from harness.verdict import GuestReport, Rule, Verdict

if TYPE_CHECKING:
    from harness.actions import Reaction
    from harness.disk import GuestDisk
    from harness.qemu.capabilities import Capabilities

VIRTIO_VENDOR = 0x1AF4
MAX_VECTORS = 2048  # QEMU's virtio-pci limit for the MSI-X table
DISPLAY = "vga0"  # the primary display: screenshots, and the console keyboard and mouse are bound to


class Layout(str, Enum):
    CONTRACT = "contract"  # modern-only virtio, the IDs the Aero drivers bind (contract v1)
    TRANSITIONAL = "transitional"  # QEMU's default transitional virtio, for older drivers and guests


@dataclass(frozen=True)
class DriverNeeds:
    """What the family's Aero driver requires of its PCI function beyond the IDs, where QEMU may
    not give it (contract v1 fixes more than QEMU builds). The harness cannot change QEMU's device
    model: a mismatch becomes a note in results.json and, when the run fails in a way it explains,
    a hint in the verdict line."""

    registers_in_bar0: bool = False  # the driver accepts its virtio capabilities only in BAR0
    subsystems: tuple[int, ...] = ()  # the subsystem IDs (vendor 1AF4) its INF binds; empty: any
    remedy: str = ""  # what the user can do about a subsystem the INF does not bind
    consequence: str = ""  # what a driver that does not start leads to ("Windows cannot read its boot disk")
    explains: tuple[str, ...] = ()  # the verdict tokens such a mismatch leads to
    # What the guest says when it found no working device (its free text): a failure with detailed
    # results came from a driver that did start, and is not explained by the note.
    absent_words: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExpectedFunction:
    """A PCI function the layout puts in the machine: its ``-device`` id and the device IDs it may have."""

    qdev_id: str
    what: str  # "virtio-blk"
    device_ids: tuple[int, ...]
    vendor: int = VIRTIO_VENDOR
    needs: DriverNeeds | None = None

    def describe_wanted(self) -> str:
        return " or ".join(f"{self.vendor:04x}:{d:04x}" for d in self.device_ids)


@dataclass(frozen=True)
class Board:
    """What the families of one run share."""

    layout: Layout
    caps: Capabilities
    disk: GuestDisk
    out_dir: Path
    msix_vectors: int | None = None  # --virtio-msix-vectors
    disable_msix: bool = False  # --virtio-disable-msix

    @property
    def contract(self) -> bool:
        return self.layout is Layout.CONTRACT

    def because(self) -> str:
        return f"the {self.layout.value} layout"


ConfigCheck = Callable[[dict[str, str]], "Verdict | None"]
ConfigHint = Callable[[dict[str, str]], "str | None"]  # a warning: what the run asks and the image cannot do


class Output(NamedTuple):
    """A file a family writes: what it is (results.json's ``artifacts`` key), the flag naming it, where."""

    role: str
    flag: str
    path: Path


class Device:
    """Base of a family module's device. Subclasses are frozen dataclasses built from the flags."""

    family: ClassVar[str]  # "virtio-blk": the guest's marker for the device, and the verdict's name
    short: ClassVar[str]  # "blk": --virtio-blk-vectors, --require-virtio-blk-msix
    vectors: int | None  # --virtio-<short>-vectors

    # -- flags ----------------------------------------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        raise NotImplementedError

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Device:
        raise NotImplementedError

    def check(self, board: Board) -> None:
        """UsageError when the flags do not fit the board (layout, QEMU)."""
        if self.vectors is not None and not 0 <= self.vectors <= MAX_VECTORS:
            raise UsageError(f"--virtio-{self.short}-vectors must be between 0 and {MAX_VECTORS}, not {self.vectors}")
        if self.vectors is not None and board.disable_msix:
            raise UsageError(f"--virtio-disable-msix and --virtio-{self.short}-vectors exclude each other "
                             "(INTx only means vectors=0)")

    def attached(self, board: Board) -> bool:
        return True

    # -- QEMU ----------------------------------------------------------------------------------------
    def qemu_outputs(self, board: Board) -> list[Path]:
        """Files QEMU itself writes for this family (a WAV capture): QEMU writes each under a fresh
        name, renamed onto the real one once QEMU ended, so nothing planted there is written through."""
        return []

    def startup_commands(self, board: Board, written: Mapping[Path, Path]) -> list[tuple[str, dict[str, Any]]]:
        """QMP commands (name, arguments) to send once QEMU is up and before the guest runs."""
        return []

    def qemu_args(self, board: Board, written: Mapping[Path, Path]) -> list[str]:
        """The family's QEMU arguments; ``written`` maps each of ``qemu_outputs`` to where QEMU writes it."""
        raise NotImplementedError

    def pci(self, board: Board) -> list[ExpectedFunction]:
        return []

    def resolved_vectors(self, board: Board) -> int | None:
        if board.disable_msix:
            return 0
        return self.vectors if self.vectors is not None else board.msix_vectors

    def device_arg(self, board: Board, driver: str, props: dict[str, object]) -> list[str]:
        """``-device driver,props...`` with this family's interrupt vectors."""
        return ["-device", opts(driver, {**props, "vectors": self.resolved_vectors(board)})]

    # -- the guest ------------------------------------------------------------------------------------
    def rules(self, board: Board) -> Sequence[Rule]:
        return []

    def config_checks(self, board: Board) -> Sequence[ConfigCheck]:
        return []

    def reactions(self, board: Board) -> Sequence[Reaction]:
        return []

    def config_hints(self, board: Board) -> Sequence[ConfigHint]:
        """Warnings, when the CONFIG line arrives, about what the image was provisioned with and this
        run's flags contradict (the guest will then SKIP or FAIL a test for a reason the flags explain)."""
        return []

    def irq_markers(self) -> tuple[str, str]:
        """(test marker, diagnostic line) the guest reports this device's interrupt mode in."""
        return self.family, f"{self.family}-irq"

    def provisioning(self) -> list[str]:
        """The guest flags this run's flags need baked into the image (or passed to the reference
        guest at run time)."""
        return []

    # -- the host -----------------------------------------------------------------------------------
    def outputs(self, out_dir: Path) -> list[Output]:
        """Files this family writes (checked before anything boots)."""
        return []

    def services(self, board: Board) -> AbstractContextManager[Any]:
        """What runs on the host for the life of the guest (the network family's services)."""
        return nullcontext()

    def changes_a_pass_after_exit(self, board: Board) -> bool:
        """True when ``after_exit`` may turn a PASS into a failure (the verdict line then waits)."""
        return False

    def after_exit(self, board: Board, verdict: Verdict, should_stop: Callable[[], bool]) -> Verdict:
        """A check once QEMU ended and its files are in place (a WAV capture); runs in a thread and
        gives up when ``should_stop()`` says so."""
        return verdict

    def results(self) -> dict[str, Any]:
        """What this family adds to results.json after the run (its own section)."""
        return {}


def required(marker: str, board: Board, **kwargs: Any) -> MarkerRule:
    """A marker the layout requires to PASS."""
    return MarkerRule(marker, board.because(), **kwargs)


def add_vectors_argument(group: argparse._ArgumentGroup, short: str, what: str) -> None:
    group.add_argument(f"--virtio-{short}-vectors", f"--virtio-{short}-msix-vectors", dest=f"virtio_{short}_vectors",
                       type=int, default=None, metavar="N",
                       help=f"MSI-X vectors of the {what} (QEMU's vectors=N; 0 = INTx only); overrides "
                            "--virtio-msix-vectors")


def flag(group: argparse._ArgumentGroup, *names: str, help: str) -> None:  # noqa: A002 - argparse's word
    """A store_true flag whose dest is its first name's."""
    group.add_argument(*names, dest=names[0].lstrip("-").replace("-", "_"), action="store_true", help=help)


def msix_rule(family: str, flag_names: str) -> Rule:
    """``--require-virtio-<dev>-msix``: the guest's ``<family>-msix`` marker must say mode=msix."""
    from harness.rules import CheckRule, token_base  # late: the rules import the verdict types only
    from harness.verdict import NOT_REPORTED, Failure

    marker = f"{family}-msix"

    def check(report: GuestReport) -> Failure | None:
        outcome = report.tests.get(marker)
        required_by = f"(while {flag_names} was given)"
        if outcome is None or not outcome.status.is_final:
            return Failure(f"MISSING_{token_base(marker)}", f"no {marker} marker {required_by}; the guest selftest "
                                                            "may be too old", NOT_REPORTED)
        mode = outcome.fields.get("mode")
        if outcome.status.value in ("FAIL", "SKIP"):
            why = f"reported {outcome.status.value}" + (f" (reason={outcome.why})" if outcome.why else "")
        elif mode is None:
            why = "has no mode= field"
        elif mode != "msix":
            why = f"says mode={mode} (expected msix), messages={outcome.fields.get('messages', '?')}"
        else:
            return None
        return Failure(f"{token_base(family)}_MSIX_REQUIRED", f"{marker} {why} {required_by}", outcome.seq)

    return CheckRule(f"{marker} mode=msix", check)


def provisioned_without(key: str, guest_flag: str, run_flag: str, marker: str) -> ConfigHint:
    """The run asks for a host-coordinated test the image was not provisioned for (CONFIG key=0)."""

    def hint(config: dict[str, str]) -> str | None:
        if config.get(key) == "0":
            return (f"the image was provisioned without {guest_flag} (CONFIG {key}=0) but this run has {run_flag}: "
                    f"the guest will SKIP {marker}; re-provision the image with {guest_flag}")
        return None

    return hint


def provisioned_for(key: str, guest_flag: str, run_flag: str, marker: str) -> ConfigHint:
    """The image runs a host-coordinated test (CONFIG key=1) that this run will not do the host's part of."""

    def hint(config: dict[str, str]) -> str | None:
        if config.get(key) == "1":
            return (f"the image was provisioned with {guest_flag} (CONFIG {key}=1) but this run has no {run_flag}: "
                    f"nothing answers the guest's {marker}|READY, so the guest fails it at its deadline; "
                    f"pass {run_flag}")
        return None

    return hint


def requires_msix_but_intx(key: str, family: str) -> ConfigHint:
    """The image requires MSI-X for a device this run gives INTx only."""

    def hint(config: dict[str, str]) -> str | None:
        if config.get(key) == "1":
            return (f"the image requires MSI-X for {family} (CONFIG {key}=1) but this run has --virtio-disable-msix: "
                    f"the guest will fail its {family}-msix test")
        return None

    return hint
