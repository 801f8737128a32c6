#!/usr/bin/env bash
# Start (up) and stop (down) a Docker engine for CI, where none runs.
#
#   container/ci-docker.sh up     start dockerd in the background (log: $AERO_CI_DOCKER_DIR/dockerd.log),
#                                 wait until it answers, then make sure the base image exists
#                                 (container/build-base-image.sh: pull, else debootstrap)
#   container/ci-docker.sh down   stop the dockerd that `up` started in the same session (one already
#                                 running, or one another session started, is left alone)
#
# Installs nothing: .ci/run installs the Debian packages docker.io and debootstrap first.
# Environment: AERO_CI_DOCKER_DIR (state and log folder, default ${TMPDIR:-/tmp}/aero-ci-docker),
# AERO_CI_DOCKER_WAIT (seconds to wait for the engine, default 60), BASE_IMAGE (debian:trixie-slim),
# AERO_CI_DOCKER_SESSION (who started it: .ci/run sets its pid, so a CI run in a second clone that
# found an engine answering never stops it; default "manual").
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
state="${AERO_CI_DOCKER_DIR:-${TMPDIR:-/tmp}/aero-ci-docker}"
pidfile="$state/dockerd.pid"
logfile="$state/dockerd.log"
wait_s="${AERO_CI_DOCKER_WAIT:-60}"

say() { echo "ci-docker: $*" >&2; }
die() { echo "FAIL: INFRA: ci-docker: $*" >&2; exit 6; }
answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
read_pid() { local pid _; read -r pid _ <"$pidfile"; echo "$pid"; }
session="${AERO_CI_DOCKER_SESSION:-manual}"

up() {
    mkdir -p "$state"
    command -v docker >/dev/null 2>&1 || die "no docker client (apt-get install docker.io)"
    if answers; then
        say "a Docker engine already answers ($(docker version --format '{{.Server.Version}}')); using it"
    else
        command -v dockerd >/dev/null 2>&1 || die "no dockerd (apt-get install docker.io)"
        [ "$(id -u)" -eq 0 ] || die "starting dockerd needs root"
        say "starting dockerd (log: $logfile)"
        setsid dockerd >"$logfile" 2>&1 </dev/null &
        echo "$! $session" >"$pidfile"
        local waited=0
        until answers; do
            if ! kill -0 "$(read_pid)" 2>/dev/null; then
                tail -n 20 "$logfile" >&2
                rm -f "$pidfile"
                die "dockerd exited at start (log above)"
            fi
            if [ "$waited" -ge "$wait_s" ]; then
                tail -n 20 "$logfile" >&2
                die "dockerd did not answer within ${wait_s}s (log above)"
            fi
            sleep 1
            waited=$((waited + 1))
        done
        say "dockerd $(docker version --format '{{.Server.Version}}') answers after ${waited}s"
    fi
    "$here/build-base-image.sh" --tag "${BASE_IMAGE:-debian:trixie-slim}"
}

down() {
    if [ ! -f "$pidfile" ]; then
        say "no dockerd was started by 'up'; nothing to stop"
        return 0
    fi
    local pid owner
    read -r pid owner <"$pidfile" || true
    if [ "${owner:-manual}" != "$session" ]; then
        say "the dockerd (pid $pid) was started by another session (${owner:-manual}); leaving it running"
        return 0
    fi
    if kill -0 "$pid" 2>/dev/null; then
        say "stopping dockerd (pid $pid)"
        kill -TERM "$pid"
        for _ in $(seq 1 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "dockerd did not stop within 30s; killing it"
            kill -KILL "$pid" || true
        fi
    fi
    rm -f "$pidfile"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
