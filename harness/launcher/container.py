"""One harness run in a container: create, attach, start, stream, wait, remove.

Every engine call goes through the retry policy; the container's exit code is the harness's
verdict and is returned as it is. Ctrl-C (or SIGTERM) interrupts the harness inside with SIGINT,
so that it cleans up, then stops and removes the container.

The container cannot outlive its launcher: the launcher holds the container's stdin open (the
harness runs with --stop-on-stdin-eof), so when the launcher dies, even by ``kill -9``, the
engine closes that stdin and the harness stops QEMU and exits. Every container is labelled with
its launcher's pid, host and boot, and each start removes those whose launcher is gone (one that
died before its container exited, or while the engine was down). The output folder's path is
checked against the folder the launcher holds just before the container is created and once it
has started (``outdir``). A container that ends with 130
though the launcher never interrupted it was stopped from outside (an engine restart, docker
stop): that is INFRA, not a user's interrupt.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
import requests.exceptions
import urllib3.exceptions
from docker.models.containers import Container
from docker.types import Mount
from docker.utils.socket import STDERR, frames_iter

from harness.errors import ExitCode, InfraError, InterruptedRun, UsageError
from harness.launcher.engine import unreachable
from harness.launcher.retry import NameConflict, RetryPolicy, call, is_transient, short_reason
from harness.logsetup import get_logger
from harness.qemu.accel import boot_id

CONTRACT_CODES = frozenset(int(code) for code in ExitCode)
STOP_GRACE_S = 20
WATCH_INTERVAL_S = 5.0  # how often the engine is asked whether it still answers, during a run
LABEL = "aero-win7-harness.launcher"
LABEL_PID, LABEL_HOST, LABEL_BOOT = f"{LABEL}.pid", f"{LABEL}.host", f"{LABEL}.boot"
log = get_logger("launcher.container")


def owner_labels() -> dict[str, str]:
    """Who launched a container: enough to tell, later, that its launcher is gone."""
    return {LABEL: "1", LABEL_PID: str(os.getpid()), LABEL_HOST: socket.gethostname(), LABEL_BOOT: boot_id()}


def _launcher_gone(labels: dict[str, str]) -> bool:
    if labels.get(LABEL_HOST) != socket.gethostname() or labels.get(LABEL_BOOT) != boot_id():
        return False  # another machine's, or from before a reboot of this one: not ours to judge
    try:
        pid = int(labels.get(LABEL_PID, ""))
    except ValueError:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False

_ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException, OSError)


@dataclass
class ContainerSpec:
    image: str
    command: list[str]
    user: str
    mounts: list[Mount]
    devices: list[str] = field(default_factory=list)
    group_add: list[str] = field(default_factory=list)
    network_mode: str = "none"
    environment: dict[str, str] = field(default_factory=dict)
    name: str = field(default_factory=lambda: f"aero-win7-harness-{secrets.token_hex(4)}")

    def create_kwargs(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "name": self.name,
            "user": self.user,
            "mounts": self.mounts,
            "devices": self.devices,
            "group_add": self.group_add,
            "network_mode": self.network_mode,
            # The guest's name lookups: QEMU sends them to the container's first nameserver, where the
            # harness answers them (127.0.0.1:53, a low port its non-root user may bind by this sysctl).
            "dns": ["127.0.0.1"],
            "sysctls": {"net.ipv4.ip_unprivileged_port_start": "53"},
            "environment": self.environment,
            "labels": owner_labels(),
            "init": True,  # a real PID 1 forwards SIGINT/SIGTERM to the harness
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "privileged": False,
            # stdin open and closed by the engine once its one attached client (the launcher) goes:
            # docker-py sets StdinOnce for a non-detached config. Nothing here blocks on it.
            "stdin_open": True,
            "detach": False,
        }


class _Runner:
    def __init__(self, client: docker.DockerClient, spec: ContainerSpec, policy: RetryPolicy,
                 verify: Callable[[str], None] | None = None) -> None:
        self.client = client
        self.spec = spec
        self.policy = policy
        self.verify = verify
        self.container: Container | None = None
        self.interrupted = False
        self._lifeline: Any = None  # the attached stdin: open for as long as this process lives

    def engine(self, what: str, fn: Any) -> Any:
        """An engine call with retries; a transient failure that outlived them is exit 6."""
        try:
            return call(self.policy, what, fn)
        except (docker.errors.NotFound, docker.errors.ImageNotFound):
            raise
        except _ENGINE_ERRORS as err:
            if is_transient(err):
                raise unreachable(err, self.policy, what) from err
            raise InfraError(f"Docker engine refused '{what}': {short_reason(err)}") from err

    def check_image(self) -> None:
        try:
            self.engine("image inspect", lambda: self.client.images.get(self.spec.image))
        except docker.errors.ImageNotFound as err:
            raise UsageError(f"image {self.spec.image} is not in the Docker engine (build it: make image)") from err

    def sweep(self) -> None:
        """Remove the containers of launchers that are gone (killed, or left while the engine was down)."""
        try:
            leftovers = self.client.containers.list(all=True, filters={"label": LABEL})
        except _ENGINE_ERRORS as err:
            log.debug("could not list leftover containers: %s", short_reason(err))
            return
        for leftover in leftovers:
            if _launcher_gone(dict(leftover.labels or {})):
                log.info("removing container %s, whose launcher is gone", leftover.name,
                         extra={"container": leftover.name})
                self._remove_quietly(str(leftover.name))

    def create(self) -> Container:
        def attempt() -> Container:
            try:
                return self.client.containers.create(self.spec.image, **self.spec.create_kwargs())
            except docker.errors.NotFound as err:  # e.g. a --network that does not exist
                raise UsageError(f"Docker engine cannot create the container: {short_reason(err)} "
                                 f"(--network {self.spec.network_mode}?)") from err
            except docker.errors.APIError as err:
                if err.status_code == 409:  # our earlier create went through but its answer was lost
                    self._remove_quietly(self.spec.name)
                    raise NameConflict(f"container name {self.spec.name} in use") from err
                raise

        container: Container = self.engine("create", attempt)
        log.info("created container %s", self.spec.name,
                 extra={"container": self.spec.name, "image": self.spec.image, "command": self.spec.command,
                        "user": self.spec.user, "devices": self.spec.devices, "group_add": self.spec.group_add,
                        "mounts": [f"{m['Source']} -> {m['Target']} ({'ro' if m.get('ReadOnly') else 'rw'})"
                                   for m in self.spec.mounts],
                        "network": self.spec.network_mode})
        return container

    def _remove_quietly(self, name: str) -> None:
        try:
            self.client.api.remove_container(name, force=True)
        except docker.errors.NotFound:
            pass
        except _ENGINE_ERRORS as err:
            log.debug("could not remove container %s: %s", name, short_reason(err))

    def stream(self, container: Container) -> None:
        """Attach (stdin held open as the lifeline; stdout and stderr copied to ours), start, and copy
        until the container ends; the engine is watched meanwhile, since a stream from an engine that
        stopped answering never ends by itself."""
        self._lifeline = self.engine("attach", lambda: self.client.api.attach_socket(
            container.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1, "logs": 1}))
        try:
            self.engine("start", container.start)
        except docker.errors.NotFound as err:  # e.g. a --network that does not exist
            raise UsageError(f"Docker engine cannot start the container: {short_reason(err)} "
                             f"(--network {self.spec.network_mode}?)") from err
        if self.verify is not None:  # the bind mounts are made at the start: of the folders checked?
            self.verify("when the container started")
        watchdog = EngineWatchdog(self.client, self.policy, on_lost=lambda: _hang_up(self._lifeline))
        watchdog.start()
        try:
            for kind, data in frames_iter(self._lifeline, tty=False):
                target = sys.stderr.buffer if kind == STDERR else sys.stdout.buffer
                target.write(data)
                target.flush()
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as err:
            if not watchdog.lost:
                log.warning("lost the container's output stream (%s); waiting for it to end", short_reason(err),
                            extra={"container": self.spec.name})
        finally:
            watchdog.stop()
        if watchdog.lost is not None:
            raise unreachable(watchdog.lost, self.policy, "watching the run") from watchdog.lost

    def wait(self, container: Container) -> int:
        try:
            result: dict[str, Any] = self.engine("wait", lambda: container.wait(timeout=None))
        except docker.errors.NotFound as err:
            raise InfraError(f"container {self.spec.name} disappeared before it reported an exit code") from err
        code = int(result.get("StatusCode", -1))
        if result.get("Error"):
            log.warning("engine reported an error on wait: %s", result["Error"], extra={"container": self.spec.name})
        return code

    def interrupt(self, container: Container) -> None:
        """SIGINT to the harness (it stops QEMU and writes its artifacts), then a stop."""
        self.interrupted = True
        log.warning("interrupted: stopping container %s", self.spec.name, extra={"container": self.spec.name})
        try:
            container.kill(signal="SIGINT")
            container.wait(timeout=STOP_GRACE_S)
        except (*_ENGINE_ERRORS, urllib3.exceptions.HTTPError) as err:
            log.warning("container did not end on SIGINT (%s); stopping it", short_reason(err))
            try:
                container.stop(timeout=5)
            except _ENGINE_ERRORS as stop_err:
                log.warning("stop failed: %s", short_reason(stop_err))

    def remove(self) -> None:
        def attempt() -> None:
            try:
                self.client.api.remove_container(self.spec.name, force=True)
            except docker.errors.NotFound:
                pass

        try:
            self.engine("remove", attempt)
        except InfraError as err:
            log.warning("could not remove container %s (%s); the next aero-win7-docker run removes it",
                        self.spec.name, err.detail, extra={"container": self.spec.name})

    def release(self) -> None:
        lifeline, self._lifeline = self._lifeline, None
        if lifeline is not None:
            try:
                lifeline.close()
            except OSError:
                pass

    def run(self) -> int:
        self.check_image()
        self.sweep()
        if self.verify is not None:
            self.verify("before the container was created")
        container = self.create()
        try:
            try:
                self.stream(container)
                code = self.wait(container)
            except KeyboardInterrupt as stop:
                self.interrupt(container)
                by = stop.args[0] if stop.args else "SIGINT"
                raise InterruptedRun(f"stopped by {by}; the container was stopped and removed") from None
        finally:
            self.release()
            self.remove()
        log.debug("container %s exited with %d", self.spec.name, code,
                 extra={"container": self.spec.name, "exit_code": code})
        if code == ExitCode.INTERRUPTED and not self.interrupted:
            raise InfraError("the container was stopped from outside (a Docker engine restart, docker stop or "
                             "docker kill) before the run ended")
        if code not in CONTRACT_CODES:
            raise InfraError(f"the container ended with exit code {code}, which is no harness verdict "
                             f"(killed, out of memory, or the image's entrypoint failed)")
        return code


def _hang_up(connection: Any) -> None:
    """End the attach connection (and with it the container's stdin) from another thread."""
    raw = getattr(connection, "_sock", connection)
    try:
        raw.shutdown(socket.SHUT_RDWR)
    except (OSError, AttributeError):
        pass


class EngineWatchdog:
    """Pings the engine while a run streams; after the retries fail, calls ``on_lost`` (once)."""

    def __init__(self, client: docker.DockerClient, policy: RetryPolicy, on_lost: Any) -> None:
        self.client = client
        self.policy = policy
        self.on_lost = on_lost
        self.lost: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="engine-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_INTERVAL_S):
            try:
                call(self.policy, "ping", self.client.ping)
            except _ENGINE_ERRORS as err:
                if self._stop.is_set():
                    return
                self.lost = err
                self.on_lost()
                return


def run_container(client: docker.DockerClient, spec: ContainerSpec, policy: RetryPolicy,
                  verify: Callable[[str], None] | None = None) -> int:
    """Run the harness in a container and return its exit code (the verdict). ``verify(when)`` (raises
    to refuse) is called just before the container is created and once it has started: the engine
    mounts host paths, which must still be the folders the launcher checked."""
    return _Runner(client, spec, policy, verify).run()
