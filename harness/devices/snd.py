"""virtio-snd: QEMU's virtio-sound-pci (8.2 and later; modern-only, 1AF4:1059), attached with
--enable-virtio-snd, and the capture check of its WAV output.

The device's audio backend is always QEMU's ``none`` driver, which has both directions: the guest
can play and record (silence), as its capture and duplex tests need. QEMU's ``wav`` driver has no
input at all (the guest's capture fails on it), so ``--virtio-snd-audio-backend wav`` records the
guest's output with QEMU's capture instead (HMP ``wavcapture`` on that audiodev, started before the
guest runs); QEMU completes the WAV header when it quits.

Without the flag the real guest still reports its sound tests (SKIP with no device); in the
contract layout they must then be PASS or SKIP, and a FAIL fails the run. With the flag, playback,
capture and duplex must each PASS, and a SKIP names its cause from the guest's own text lines.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.audio import WavError, analyze, is_silent
from harness.devices.base import (
    Board,
    ConfigHint,
    Device,
    ExpectedFunction,
    Output,
    add_vectors_argument,
    flag,
    msix_rule,
    requires_msix_but_intx,
)
from harness.errors import UsageError
from harness.logsetup import get_logger
from harness.outputs import WAV, output_path
from harness.protocol import Status
from harness.qemu.cmdline import opts
from harness.rules import CheckRule, MarkerRule
from harness.verdict import Failure, GuestReport, Rule, TestOutcome, Verdict, audio_silent_verdict

QEMU_DEVICE = "virtio-sound-pci"
CAPTURE_FORMAT = (48000, 16, 2)  # what the capture records: Hz, bits, channels (the guest plays 48 kHz)
AUDIODEV_ID = "audio0"
DEVICE_ID = "snd0"
SND_ID = 0x1059
TESTS = ("virtio-snd", "virtio-snd-capture", "virtio-snd-duplex")
# What the guest's text lines say when a sound test is skipped, most telling first.
_CAUSES = ("disabled by --disable-snd", "device not detected", "ForceNullBackend", "--require-snd-capture",
           "no capture endpoint", "duplex endpoint missing", "skipped (enable with --test-snd)")
log = get_logger("devices.snd")


def skip_cause(report: GuestReport, outcome: TestOutcome) -> str | None:
    """The guest's own words for why it skipped a sound test (``virtio-snd: disabled by --disable-snd``)."""
    lines = report.text_lines("virtio-snd")
    for needle in _CAUSES:
        for line in reversed(lines):
            if needle in line:
                reason = f"{outcome.why}; " if outcome.why else ""
                return f"{reason}the guest said: virtio-snd: {line}"
    return None


@dataclass
class _Capture:
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Snd(Device):
    family = "virtio-snd"
    short = "snd"
    vectors: int | None = None
    enabled: bool = False
    backend: Literal["none", "wav"] = "none"
    wav_path: Path | None = None
    peak_threshold: int = 200
    rms_threshold: float = 50.0
    with_buffer_limits: bool = False
    require_msix: bool = False
    capture: _Capture = field(default_factory=_Capture, compare=False)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("virtio-snd")
        g.add_argument("--enable-virtio-snd", "--with-virtio-snd", "--require-virtio-snd", dest="enable_virtio_snd",
                       action="store_true",
                       help=f"attach {QEMU_DEVICE} (QEMU 8.2+); the guest's virtio-snd, -capture and -duplex tests "
                            "must then PASS")
        g.add_argument("--virtio-snd-audio-backend", choices=("none", "wav"), default="none",
                       help="QEMU audio backend of the sound device (default: %(default)s)")
        g.add_argument("--virtio-snd-wav-path", type=output_path, default=None, metavar="PATH",
                       help=f"where the wav backend writes (default: OUT_DIR/{WAV})")
        g.add_argument("--audio-peak-threshold", "--virtio-snd-wav-peak-threshold", dest="audio_peak_threshold",
                       type=int, default=200, metavar="N",
                       help="the capture is not silent when its peak exceeds this (16-bit scale; default: %(default)s)")
        g.add_argument("--audio-rms-threshold", "--virtio-snd-wav-rms-threshold", dest="audio_rms_threshold",
                       type=float, default=50.0, metavar="N",
                       help="... or when its RMS exceeds this (16-bit scale; default: %(default)s)")
        flag(g, "--virtio-snd-verify-wav",
             help="accepted for the upstream harness's scripts: a wav capture is always checked for sound")
        flag(g, "--with-snd-buffer-limits", "--with-virtio-snd-buffer-limits", "--require-virtio-snd-buffer-limits",
             "--enable-snd-buffer-limits", "--enable-virtio-snd-buffer-limits",
             help="the guest's virtio-snd-buffer-limits test must PASS (provision with --test-snd-buffer-limits)")
        flag(g, "--require-virtio-snd-msix", "--require-snd-msix",
             help="the guest's virtio-snd-msix marker must report mode=msix (provision with --require-snd-msix)")
        add_vectors_argument(g, "snd", "virtio-snd device")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Snd:
        return cls(vectors=args.virtio_snd_vectors, enabled=args.enable_virtio_snd,
                   backend=args.virtio_snd_audio_backend, wav_path=args.virtio_snd_wav_path,
                   peak_threshold=args.audio_peak_threshold, rms_threshold=args.audio_rms_threshold,
                   with_buffer_limits=args.with_snd_buffer_limits, require_msix=args.require_virtio_snd_msix)

    def check(self, board: Board) -> None:
        super().check(board)
        needs_device = [name for name, on in (
            ("--virtio-snd-audio-backend wav", self.backend == "wav"), ("--virtio-snd-wav-path", self.wav_path),
            ("--with-snd-buffer-limits", self.with_buffer_limits), ("--require-virtio-snd-msix", self.require_msix),
            ("--virtio-snd-vectors", self.vectors is not None)) if on]
        if needs_device and not self.enabled:
            raise UsageError(f"{needs_device[0]} needs --enable-virtio-snd")
        if self.wav_path is not None and self.backend != "wav":
            raise UsageError("--virtio-snd-wav-path needs --virtio-snd-audio-backend wav")
        if self.peak_threshold < 0 or not self.rms_threshold >= 0:
            raise UsageError("--audio-peak-threshold and --audio-rms-threshold must be 0 or more")
        if self.enabled and not board.caps.has_device(QEMU_DEVICE):
            raise UsageError(f"this QEMU has no {QEMU_DEVICE} device, needed by --enable-virtio-snd (QEMU 8.2 or "
                             "later has it; the Docker image ships one)")
        if self.require_msix and board.disable_msix:
            raise UsageError("--virtio-disable-msix and --require-virtio-snd-msix exclude each other")

    def attached(self, board: Board) -> bool:
        return self.enabled

    def capture_path(self, out_dir: Path) -> Path | None:
        if not self.enabled or self.backend != "wav":
            return None
        return self.wav_path if self.wav_path is not None else out_dir / WAV

    def outputs(self, out_dir: Path) -> list[Output]:
        path = self.capture_path(out_dir)
        return [] if path is None else [Output("wav", "--virtio-snd-wav-path" if self.wav_path else "--out-dir", path)]

    # -- QEMU -----------------------------------------------------------------------------------------
    def qemu_outputs(self, board: Board) -> list[Path]:
        path = self.capture_path(board.out_dir)
        return [] if path is None else [path]

    def qemu_args(self, board: Board, written: Mapping[Path, Path]) -> list[str]:
        return ["-audiodev", opts("none", id=AUDIODEV_ID),
                *self.device_arg(board, QEMU_DEVICE, {"audiodev": AUDIODEV_ID, "id": DEVICE_ID})]

    def startup_commands(self, board: Board, written: Mapping[Path, Path]) -> list[tuple[str, dict[str, Any]]]:
        path = self.capture_path(board.out_dir)
        if path is None:
            return []
        target = str(written.get(path, path).absolute()).replace("\\", "\\\\").replace('"', '\\"')
        rate, bits, channels = CAPTURE_FORMAT
        return [("human-monitor-command",
                 {"command-line": f'wavcapture "{target}" {AUDIODEV_ID} {rate} {bits} {channels}'})]

    def pci(self, board: Board) -> list[ExpectedFunction]:
        return [ExpectedFunction(DEVICE_ID, self.family, (SND_ID,))] if self.enabled else []

    def provisioning(self) -> list[str]:
        return [name for name, on in (("--test-snd-buffer-limits", self.with_buffer_limits),
                                      ("--require-snd-msix", self.require_msix)) if on]

    def config_hints(self, board: Board) -> Sequence[ConfigHint]:
        if not (board.disable_msix and self.attached(board)):
            return []
        return [requires_msix_but_intx("require_snd_msix", self.family)]

    # -- the verdict ----------------------------------------------------------------------------------
    def rules(self, board: Board) -> Sequence[Rule]:
        # First: at the same marker it names the cause better than the marker's own FAILED token.
        rules: list[Rule] = [CheckRule("virtio-snd force_null_backend", _force_null_backend)]
        if self.enabled:
            tests = TESTS if board.contract else TESTS[:1]
            rules += [MarkerRule(test, "--enable-virtio-snd", skip_cause=skip_cause, keys=("irq_mode",))
                      for test in tests]
        elif board.contract:
            rules += [MarkerRule(test, f"{board.because()} (PASS or SKIP without --enable-virtio-snd)",
                                 accept_skip=True) for test in TESTS]
        if self.with_buffer_limits:
            rules.append(MarkerRule("virtio-snd-buffer-limits", "--with-snd-buffer-limits",
                                    provision="--test-snd-buffer-limits"))
        if self.require_msix:
            rules.append(msix_rule(self.family, "--require-virtio-snd-msix"))
        return rules

    # -- after QEMU ended -------------------------------------------------------------------------------
    def changes_a_pass_after_exit(self, board: Board) -> bool:
        return self.capture_path(board.out_dir) is not None

    def after_exit(self, board: Board, verdict: Verdict, should_stop: Callable[[], bool]) -> Verdict:
        wav = self.capture_path(board.out_dir)
        if wav is None or not verdict.passed:
            return verdict
        try:
            stats = analyze(wav, should_stop)
        except (OSError, WavError) as err:
            return audio_silent_verdict(f"no usable capture at {wav}: {err}")
        self.capture.stats = stats.to_json()
        if not stats.header_complete:
            log.warning("WAV header incomplete (QEMU did not quit cleanly): %s", wav)
        if is_silent(stats, self.peak_threshold, self.rms_threshold):
            return audio_silent_verdict(
                f"guest passed but the capture is silent: peak {stats.peak} (> {self.peak_threshold} needed) and "
                f"RMS {stats.rms:.1f} (> {self.rms_threshold:g} needed) over {stats.seconds:.2f} s in {wav}")
        log.info("audio capture: peak %d, RMS %.1f, %.2f s", stats.peak, stats.rms, stats.seconds)
        return verdict

    def results(self) -> dict[str, Any]:
        return {"audio": self.capture.stats} if self.capture.stats else {}


FORCE_NULL_BACKEND = "force_null_backend"
FORCE_NULL_REGISTRY = (r"HKLM\SYSTEM\CurrentControlSet\Enum\<device instance>\Device Parameters\Parameters"
                       r"\ForceNullBackend")


def _force_null_backend(report: GuestReport) -> Failure | None:
    """The driver's bring-up switch ForceNullBackend=1 turns the virtio transport off: the guest's
    sound tests FAIL with that word, and the registry value is what to change (upstream's token)."""
    failed = [(o.seq, name) for name, o in report.tests.items()
              if name in TESTS and o.status is Status.FAIL and o.why == FORCE_NULL_BACKEND]
    if not failed:
        return None
    seq, name = min(failed)
    said = next((line for line in report.text_lines("virtio-snd") if "ForceNullBackend=1" in line), None)
    where = f" ({said.split('(', 1)[1].split(')', 1)[0]})" if said and "(" in said and ")" in said else ""
    return Failure("VIRTIO_SND_FORCE_NULL_BACKEND",
                   f"{name} FAIL (force_null_backend){where}: the Aero sound driver's ForceNullBackend=1 turns its "
                   f"virtio transport off (a capture would be silent); set {FORCE_NULL_REGISTRY} to 0 in the image",
                   seq)
