# aero-win7-harness: QEMU + the harness, ready to boot a Windows 7 virtio test image.
#
# Build it with `make image` (container/build-image.sh): that script makes sure the base image
# exists (building it from Debian's packages when no registry can be reached), fills the
# wheelhouse build/docker-wheels/ with the Python dependencies, and passes the version arguments.
#
# Run it:  docker run --rm -v "$PWD/images:/images:ro" -v "$PWD/out:/out" \
#              aero-win7-harness --disk-image /images/win7.qcow2
# or with the host-side launcher: aero-win7-docker --disk-image ./images/win7.qcow2

# The base image and the exact Debian version of QEMU; the build fails when that version is not
# in the base image's apt sources. Find the current one with container/qemu-versions.sh.
ARG BASE_IMAGE=debian:trixie-slim
ARG QEMU_VERSION=1:10.0.13+ds-0+deb13u1


# --- stage: the harness in a virtual environment ------------------------------------------------
FROM ${BASE_IMAGE} AS python-build
ARG PYTHON_SERIES=3.13
ARG HARNESS_VERSION=
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-pip python3-setuptools \
 && rm -rf /var/lib/apt/lists/*
RUN series="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
 && if [ "$series" != "$PYTHON_SERIES" ]; then \
        echo "ERROR: the base image has Python $series but the wheelhouse is for $PYTHON_SERIES" >&2; exit 1; \
    fi
COPY build/docker-wheels/ /wheels/
COPY pyproject.toml README.m[d] /src/
COPY harness/ /src/harness/
RUN python3 -m pip wheel --quiet --no-deps --no-index --no-build-isolation --wheel-dir /wheels /src \
 && python3 -m venv --without-pip /opt/aero-win7-harness \
 && python3 -m pip --python /opt/aero-win7-harness/bin/python install --quiet --no-index \
        --find-links /wheels --no-compile aero-win7-harness \
 && /opt/aero-win7-harness/bin/python -m compileall -q /opt/aero-win7-harness/lib \
 && version="$(/opt/aero-win7-harness/bin/python -c 'import harness; print(harness.__version__)')" \
 && if [ -n "$HARNESS_VERSION" ] && [ "$version" != "$HARNESS_VERSION" ]; then \
        echo "ERROR: the source is harness $version but HARNESS_VERSION=$HARNESS_VERSION" >&2; exit 1; \
    fi


# --- stage: the reference guest for `selfcheck` -------------------------------------------------
# A small Linux guest built by reference-guest/build.py (owned by the reference-guest work).
# REFERENCE_GUEST: "required" (default) builds it and fails when it cannot; "skip" bakes none (a
# quicker build for work on the harness; `selfcheck` then does not work); "auto" builds it when
# reference-guest/build.py exists.
# (qemu-utils here is a build tool only, so it is not pinned; the product's QEMU is below.)
FROM ${BASE_IMAGE} AS reference-guest
ARG REFERENCE_GUEST=required
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 apt mtools syslinux syslinux-common dosfstools \
        cpio zstd xz-utils ca-certificates qemu-utils
COPY container/reference-guest-stage.sh /src/
COPY reference-guest/ /src/reference-guest/
RUN sh /src/reference-guest-stage.sh "$REFERENCE_GUEST" /src/reference-guest /guest


# --- the product image --------------------------------------------------------------------------
FROM ${BASE_IMAGE}
ARG BASE_IMAGE
ARG QEMU_VERSION
ARG HARNESS_VERSION=unknown
ARG VCS_REF=unknown

# dpkg leaves out what the harness never runs: the i386 and microvm emulators, the block tools
# other than qemu-img and qemu-nbd, and the firmware of other architectures (about 50 MB).
COPY container/dpkg-exclude-qemu /etc/dpkg/dpkg.cfg.d/90-aero-win7-harness

# QEMU at exactly QEMU_VERSION, without recommends (no qemu-system-gui, spice, opengl, ovmf) and
# with a loud failure when the pinned version is gone from the mirror; then Python.
RUN set -eu; \
    apt-get update; \
    if ! apt-cache madison qemu-system-x86 | awk -F'|' '{gsub(/ /, "", $2); print $2}' \
         | grep -qxF "$QEMU_VERSION"; then \
        echo "ERROR: qemu-system-x86 $QEMU_VERSION is not available from the base image's apt sources;" >&2; \
        echo "ERROR: available: $(apt-cache madison qemu-system-x86 | awk -F'|' '{print $2}' | tr -d ' ' | tr '\n' ' ')" >&2; \
        echo "ERROR: update QEMU_VERSION (container/qemu-versions.sh lists them)" >&2; \
        exit 1; \
    fi; \
    apt-get install -y --no-install-recommends \
        "qemu-system-x86=${QEMU_VERSION}" "qemu-system-common=${QEMU_VERSION}" \
        "qemu-system-data=${QEMU_VERSION}" "qemu-utils=${QEMU_VERSION}" \
        python3; \
    gui="$(dpkg-query -W -f '${Package}\n' | grep -E '^(qemu-system-gui|qemu-system-modules-|libgtk|libsdl|libspice|libvirglrenderer|libx11-6$)' || true)"; \
    if [ -n "$gui" ]; then echo "ERROR: GUI packages were installed: $gui" >&2; exit 1; fi; \
    installed="$(dpkg-query -W -f '${Version}' qemu-system-x86)"; \
    if [ "$installed" != "$QEMU_VERSION" ]; then echo "ERROR: installed QEMU $installed, not $QEMU_VERSION" >&2; exit 1; fi; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log \
           /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/lintian; \
    find /usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +

COPY --from=python-build /opt/aero-win7-harness /opt/aero-win7-harness
COPY --from=reference-guest /guest/ /usr/share/aero-win7-harness/

# The container user; the launcher runs the container as the caller's uid:gid instead, and adds
# the group of /dev/kvm when it passes the device.
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/harness --shell /usr/sbin/nologin harness \
 && mkdir -p /out /images \
 && chmod 1777 /out

ENV PATH=/opt/aero-win7-harness/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AERO_OUT_DIR=/out \
    AERO_REFERENCE_GUEST=/usr/share/aero-win7-harness/reference-guest.qcow2

LABEL org.opencontainers.image.title="aero-win7-harness" \
      org.opencontainers.image.description="Boots a Windows 7 virtio test image under QEMU and returns a PASS/FAIL exit code" \
      org.opencontainers.image.version="${HARNESS_VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}" \
      aero-win7-harness.qemu.version="${QEMU_VERSION}"

USER harness
WORKDIR /out
ENTRYPOINT ["aero-win7-harness"]
CMD []
