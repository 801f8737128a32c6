"""Connecting to the Docker engine (``DOCKER_HOST`` or the default socket), with retries."""

from __future__ import annotations

import os

import docker
import docker.errors
import requests.exceptions

from harness.errors import InfraError
from harness.launcher.retry import RetryPolicy, call, is_transient, short_reason
from harness.logsetup import get_logger

DEFAULT_ENGINE = "unix:///var/run/docker.sock"
log = get_logger("launcher.engine")


def engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_ENGINE


class EngineUnreachable(InfraError):
    """The engine did not answer, even after the retries (exit 6)."""


def unreachable(err: BaseException, policy: RetryPolicy, what: str) -> EngineUnreachable:
    return EngineUnreachable(f"Docker engine at {engine_address()} unreachable after {policy.attempts} "
                             f"attempts ({what}): {short_reason(err)}")


def connect(policy: RetryPolicy, timeout_s: float) -> docker.DockerClient:
    """A client that has answered a ping; EngineUnreachable when it never does."""

    def attempt() -> docker.DockerClient:
        client = docker.from_env(timeout=int(max(1, timeout_s)))
        client.ping()
        return client

    try:
        client = call(policy, "connect", attempt)
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as err:
        if is_transient(err) or "fetching server API version" in str(err):
            raise unreachable(err, policy, "connect") from err
        raise InfraError(f"Docker engine at {engine_address()}: {short_reason(err)}") from err
    log.info("connected to the docker engine at %s", engine_address(),
             extra={"engine": engine_address(), "api_version": client.api.api_version})
    return client
