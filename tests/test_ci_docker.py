"""container/ci-docker.sh: a CI run that found an engine answering leaves it running when it ends."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import docker
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "container" / "ci-docker.sh"
pytestmark = pytest.mark.docker


def ci_docker(command: str, session: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AERO_CI_DOCKER_SESSION": session, "AERO_CI_DOCKER_DIR": str(state)}
    return subprocess.run(["bash", str(SCRIPT), command], capture_output=True, text=True, timeout=300, env=env)


def test_a_second_session_never_stops_the_engine_another_one_started(engine: docker.DockerClient,
                                                                    tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    # As if a developer's `up` had started an engine: a stand-in process (not our child, so nothing
    # keeps it as a zombie) recorded as that session's.
    pid = int(subprocess.run(["sh", "-c", "sleep 120 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True,
                             check=True).stdout)
    try:
        (state / "dockerd.pid").write_text(f"{pid} manual\n")
        up = ci_docker("up", "ci-12345", state)
        assert up.returncode == 0 and "already answers" in up.stderr, up.stderr
        down = ci_docker("down", "ci-12345", state)
        assert down.returncode == 0 and "started by another session (manual); leaving it running" in down.stderr
        assert alive(pid) and engine.ping()
        assert (state / "dockerd.pid").exists()  # still the other session's to stop
        mine = ci_docker("down", "manual", state)  # the session that started it stops it
        assert mine.returncode == 0 and not alive(pid) and not (state / "dockerd.pid").exists()
    finally:
        if alive(pid):
            os.kill(pid, 9)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
