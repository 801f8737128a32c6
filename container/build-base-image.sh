#!/usr/bin/env bash
# Make the base image the Dockerfile starts from (debian:trixie-slim by default) available to the
# local Docker engine, without a container registry if need be.
#
#   1. the image is already in the engine          -> nothing to do
#   2. `docker pull` works (skipped with --no-pull) -> done
#   3. otherwise build it from Debian's packages: debootstrap a minbase root file system, trim
#      documentation and caches, and `docker import` it under the same tag.
#
# Step 3 needs root (debootstrap), the `debootstrap` package, and a reachable Debian mirror (or a
# local one, see --mirror). It takes 20 to 60 seconds on a 2-core machine, depending on the mirror.
#
# Usage: container/build-base-image.sh [--tag NAME:TAG] [--suite SUITE] [--mirror URL]
#                                      [--security-mirror URL|none] [--no-pull] [--force]
# Air-gapped labs: --mirror and --security-mirror point at the lab's own Debian mirror (or
# "none" for no security source); the image's apt sources are written from them.
set -euo pipefail

tag="debian:trixie-slim"
suite="trixie"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
security_mirror="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
try_pull=1
force=0
docker_bin="${DOCKER:-docker}"

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "FAIL: INFRA: build-base-image: $*" >&2; exit 6; }
say() { echo "build-base-image: $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --tag) tag="$2"; shift 2 ;;
        --suite) suite="$2"; shift 2 ;;
        --mirror) mirror="$2"; shift 2 ;;
        --security-mirror) security_mirror="$2"; shift 2 ;;
        --no-pull) try_pull=0; shift ;;
        --force) force=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "FAIL: USAGE: build-base-image: unknown argument: $1" >&2; exit 2 ;;
    esac
done

"$docker_bin" info >/dev/null 2>&1 || die "the Docker engine does not answer (is dockerd running? DOCKER_HOST=${DOCKER_HOST:-unset})"

if [ "$force" -eq 0 ] && "$docker_bin" image inspect "$tag" >/dev/null 2>&1; then
    say "$tag is already present"
    exit 0
fi

if [ "$force" -eq 0 ] && [ "$try_pull" -eq 1 ]; then
    say "trying to pull $tag"
    if timeout 120 "$docker_bin" pull --quiet "$tag" >/dev/null 2>&1; then
        say "pulled $tag"
        exit 0
    fi
    say "cannot pull $tag; building it from Debian's packages instead"
fi

[ "$(id -u)" -eq 0 ] || die "building $tag with debootstrap needs root"
command -v debootstrap >/dev/null 2>&1 || die "debootstrap is not installed (apt-get install debootstrap)"

workdir="$(mktemp -d "${TMPDIR:-/tmp}/base-image.XXXXXX")"
cleanup() { rm -rf --one-file-system "$workdir"; }
trap cleanup EXIT
rootfs="$workdir/rootfs"

started=$(date +%s)
say "debootstrap --variant=minbase $suite from $mirror"
if ! debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$workdir/debootstrap.log" 2>&1; then
    tail -n 20 "$workdir/debootstrap.log" >&2
    die "debootstrap of $suite failed (log above)"
fi

# Keep later `apt-get install` runs in images built on this base small: no documentation,
# manual pages or translations, and no package lists or .deb files left behind.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/90-no-docs" <<'CFG'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
CFG
cat >"$rootfs/etc/apt/apt.conf.d/90-container" <<'CFG'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
CFG
find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$rootfs/usr/share/man"/* "$rootfs/usr/share/info"/* "$rootfs/usr/share/lintian"
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
rm -rf "$rootfs/var/lib/apt/lists"/* "$rootfs/var/cache/apt"/*.bin "$rootfs/var/cache/apt/archives"/*.deb \
       "$rootfs/var/log"/*.log "$rootfs/var/log/apt"/* "$rootfs/tmp"/* "$rootfs/var/tmp"/*
# The build host's identity must not leak into the image.
: >"$rootfs/etc/hostname"
rm -f "$rootfs/etc/resolv.conf"
printf 'deb %s %s main\n' "$mirror" "$suite" >"$rootfs/etc/apt/sources.list"
case "$suite" in
    sid|unstable) ;;
    *) printf 'deb %s %s-updates main\n' "$mirror" "$suite" >>"$rootfs/etc/apt/sources.list"
       if [ "$security_mirror" != none ]; then
           printf 'deb %s %s-security main\n' "$security_mirror" "$suite" >>"$rootfs/etc/apt/sources.list"
       fi ;;
esac

say "importing the root file system as $tag"
tar --numeric-owner --xattrs -C "$rootfs" -c . | "$docker_bin" import \
    --change 'CMD ["bash"]' \
    --change 'ENV LANG=C.UTF-8' \
    --message "debootstrap --variant=minbase $suite ($mirror)" \
    - "$tag" >/dev/null || die "docker import of $tag failed"

size=$("$docker_bin" image inspect --format '{{.Size}}' "$tag")
say "built $tag from Debian's packages in $(( $(date +%s) - started ))s ($(( size / 1000000 )) MB)"
