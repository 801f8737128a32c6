#!/usr/bin/env bash
# List the qemu-system-x86 versions the base image's apt sources offer, to choose QEMU_VERSION.
# The query runs in a throw-away container of the base image, so it uses the image's own apt
# configuration and changes nothing on the host.
#   container/qemu-versions.sh [BASE_IMAGE]     (default: debian:trixie-slim)
set -euo pipefail
base="${1:-debian:trixie-slim}"
exec "${DOCKER:-docker}" run --rm --network host "$base" \
    sh -c 'apt-get update -qq >/dev/null && apt-cache madison qemu-system-x86 qemu-utils'
