"""One harness run in a container: create, attach, start, stream, wait, remove.

Every engine call goes through the retry policy; the container's exit code is the harness's
verdict and is returned as it is. Ctrl-C (or SIGTERM) interrupts the harness inside with SIGINT,
so that it cleans up, then stops and removes the container.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
import requests.exceptions
import urllib3.exceptions
from docker.models.containers import Container

from harness.errors import ExitCode, InfraError, InterruptedRun, UsageError
from harness.launcher.engine import unreachable
from harness.launcher.retry import NameConflict, RetryPolicy, call, is_transient, short_reason
from harness.logsetup import get_logger

CONTRACT_CODES = frozenset(int(code) for code in ExitCode)
STOP_GRACE_S = 20
LABEL = "aero-win7-harness.launcher"
log = get_logger("launcher.container")

_ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException, OSError)


@dataclass
class ContainerSpec:
    image: str
    command: list[str]
    user: str
    volumes: list[str]
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
            "volumes": self.volumes,
            "devices": self.devices,
            "group_add": self.group_add,
            "network_mode": self.network_mode,
            "environment": self.environment,
            "labels": {LABEL: "1"},
            "init": True,  # a real PID 1 forwards SIGINT/SIGTERM to the harness
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "privileged": False,
            "detach": True,
        }


class _Runner:
    def __init__(self, client: docker.DockerClient, spec: ContainerSpec, policy: RetryPolicy) -> None:
        self.client = client
        self.spec = spec
        self.policy = policy
        self.container: Container | None = None

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

    def create(self) -> Container:
        def attempt() -> Container:
            try:
                return self.client.containers.create(self.spec.image, **self.spec.create_kwargs())
            except docker.errors.NotFound as err:  # e.g. a --network that does not exist
                raise UsageError(f"Docker engine cannot create the container: {short_reason(err)}") from err
            except docker.errors.APIError as err:
                if err.status_code == 409:  # our earlier create went through but its answer was lost
                    self._remove_quietly(self.spec.name)
                    raise NameConflict(f"container name {self.spec.name} in use") from err
                raise

        container: Container = self.engine("create", attempt)
        log.info("created container %s", self.spec.name,
                 extra={"container": self.spec.name, "image": self.spec.image, "command": self.spec.command,
                        "user": self.spec.user, "devices": self.spec.devices, "group_add": self.spec.group_add,
                        "volumes": self.spec.volumes, "network": self.spec.network_mode})
        return container

    def _remove_quietly(self, name: str) -> None:
        try:
            self.client.api.remove_container(name, force=True)
        except docker.errors.NotFound:
            pass

    def stream(self, container: Container) -> None:
        """Copy the container's stdout and stderr to ours until it ends."""
        frames: Iterator[tuple[bytes | None, bytes | None]] = self.engine(
            "attach", lambda: container.attach(stdout=True, stderr=True, stream=True, logs=True, demux=True))
        self.engine("start", container.start)
        try:
            for out, err in frames:
                if out:
                    sys.stdout.buffer.write(out)
                    sys.stdout.buffer.flush()
                if err:
                    sys.stderr.buffer.write(err)
                    sys.stderr.buffer.flush()
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as err:
            log.warning("lost the container's output stream (%s); waiting for it to end", short_reason(err),
                        extra={"container": self.spec.name})

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
            log.error("could not remove container %s: %s", self.spec.name, err.detail,
                      extra={"container": self.spec.name})

    def run(self) -> int:
        self.check_image()
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
            self.remove()
        log.info("container %s exited with %d", self.spec.name, code,
                 extra={"container": self.spec.name, "exit_code": code})
        if code not in CONTRACT_CODES:
            raise InfraError(f"the container ended with exit code {code}, which is no harness verdict "
                             f"(killed, out of memory, or the image's entrypoint failed)")
        return code


def run_container(client: docker.DockerClient, spec: ContainerSpec, policy: RetryPolicy) -> int:
    """Run the harness in a container and return its exit code (the verdict)."""
    return _Runner(client, spec, policy).run()
