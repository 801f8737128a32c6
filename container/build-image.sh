#!/usr/bin/env bash
# Build the product image aero-win7-harness (tags `latest` and the harness version): `make image`.
#
#   1. the base image: container/build-base-image.sh (pull, or debootstrap when it cannot be pulled)
#   2. the wheelhouse build/docker-wheels/: the Python dependencies, downloaded by the host's pip
#   3. docker build with the version arguments (harness version, QEMU version, source revision)
#
# Environment: IMAGE (aero-win7-harness), BASE_IMAGE (debian:trixie-slim), QEMU_VERSION (the
# Dockerfile's pin when empty), PYTHON (the host Python with pip: .venv/bin/python, else python3),
# PYTHON_SERIES (the base image's Python, 3.13 for trixie), REFERENCE_GUEST (required|auto|skip),
# DOCKER (docker). Extra arguments go to `docker build`.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
image="${IMAGE:-aero-win7-harness}"
base="${BASE_IMAGE:-debian:trixie-slim}"
docker_bin="${DOCKER:-docker}"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$root/.venv/bin/python" ]; then PYTHON="$root/.venv/bin/python"; else PYTHON=python3; fi
fi

"$root/container/build-base-image.sh" --tag "$base"
"$PYTHON" "$root/container/wheelhouse.py" --python-version "${PYTHON_SERIES:-3.13}"

version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$root/harness/__init__.py")"
[ -n "$version" ] || { echo "FAIL: USAGE: build-image: no __version__ in harness/__init__.py" >&2; exit 2; }
revision="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
if [ "$revision" != unknown ] && [ -n "$(git -C "$root" status --porcelain -- Dockerfile harness pyproject.toml reference-guest container 2>/dev/null)" ]; then
    revision="$revision-dirty"
fi

args=(--build-arg "BASE_IMAGE=$base" --build-arg "HARNESS_VERSION=$version" --build-arg "VCS_REF=$revision"
      --build-arg "REFERENCE_GUEST=${REFERENCE_GUEST:-required}" --build-arg "PYTHON_SERIES=${PYTHON_SERIES:-3.13}")
if [ -n "${QEMU_VERSION:-}" ]; then args+=(--build-arg "QEMU_VERSION=$QEMU_VERSION"); fi

started=$(date +%s)
"$docker_bin" build --force-rm "${args[@]}" --tag "$image:latest" --tag "$image:$version" "$@" "$root"
size=$("$docker_bin" image inspect --format '{{.Size}}' "$image:latest")
echo "build-image: $image:$version ($revision), $(( size / 1000000 )) MB, built in $(( $(date +%s) - started ))s" >&2
