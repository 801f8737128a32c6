"""The one error hierarchy of the harness; every class maps to an exit code and a token.

The contract (``shared/spec/harness-contract.md``) fixes the codes:

====  ===================================================================
code  meaning
====  ===================================================================
0     PASS
1     the guest reported a failure, or a required test did not pass
2     bad arguments or unusable input; nothing was booted
3     QEMU ended before a RESULT line
4     the guest passed but the captured WAV is silent
5     no RESULT line within the timeout
6     the machinery failed (engine unreachable, KVM unusable, port taken)
130   interrupted by SIGINT/SIGTERM
====  ===================================================================
"""

from __future__ import annotations

from enum import IntEnum

from harness.textsafe import visible


class ExitCode(IntEnum):
    PASS = 0
    FAIL = 1
    USAGE = 2
    QEMU_EXITED = 3
    AUDIO_SILENT = 4
    TIMEOUT = 5
    INFRA = 6
    INTERRUPTED = 130


class HarnessError(Exception):
    """Base of every error the harness reports to the user as one line."""

    exit_code: ExitCode = ExitCode.INFRA
    token: str = "INFRA"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = visible(" ".join(detail.split()))  # always one line, control bytes shown, not obeyed

    def verdict_line(self) -> str:
        return f"FAIL: {self.token}: {self.detail}"


class UsageError(HarnessError):
    """Bad arguments or unusable input, found before anything was booted."""

    exit_code = ExitCode.USAGE
    token = "USAGE"


class InfraError(HarnessError):
    """The machinery failed: engine unreachable, KVM unusable, port taken, QEMU would not start."""

    exit_code = ExitCode.INFRA
    token = "INFRA"


class InterruptedRun(HarnessError):
    """SIGINT or SIGTERM arrived; the run was cleaned up."""

    exit_code = ExitCode.INTERRUPTED
    token = "INTERRUPTED"


class PciPreflightFailed(HarnessError):
    """A virtio function is not what the layout wants (found by query-pci before the guest ran)."""

    exit_code = ExitCode.INFRA
    token = "QEMU_PCI_PREFLIGHT_FAILED"


class QmpActionFailed(HarnessError):
    """QEMU refused a host action's QMP command; the token names the action (QMP_<ACTION>_FAILED)."""

    exit_code = ExitCode.INFRA

    def __init__(self, action: str, detail: str) -> None:
        super().__init__(detail)
        self.token = f"QMP_{action.upper().replace('-', '_')}_FAILED"
