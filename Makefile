# aero-win7-harness: developer and user entry points. `make help` lists them.

PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
IMAGE ?= aero-win7-harness
DISK_IMAGE ?=
TIMEOUT ?= 600
SND ?=
OUT_DIR ?= out
PYTEST_ARGS ?=

.PHONY: help venv test test-fast reference-guest image selfcheck test-win7 bench clean

help:
	@echo "make venv             create $(VENV) with the harness and its test tools"
	@echo "make test             the whole test suite (real QEMU, real Docker engine)"
	@echo "make test-fast        the tests that boot nothing (seconds)"
	@echo "make reference-guest  build build/reference-guest.qcow2 (Debian trixie kernel + busybox)"
	@echo "make image            build the Docker image $(IMAGE) (base image made from Debian's packages if need be)"
	@echo "make selfcheck        the image, then the reference guest in it: expect PASS"
	@echo "make test-win7 DISK_IMAGE=path [TIMEOUT=600] [SND=1]   run a Windows 7 image in the container"
	@echo "make bench            measure detection latency, overhead, build and image figures (BENCHMARKS.md)"

$(VPY): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e '.[test]'
	@touch $(VPY)

venv: $(VPY)

test: $(VPY)
	$(VPY) -m pytest $(PYTEST_ARGS)

test-fast: $(VPY)
	$(VPY) -m pytest -m "not qemu and not docker and not slow" $(PYTEST_ARGS)

reference-guest: $(VPY)
	$(VPY) reference-guest/build.py --out build/reference-guest.qcow2

image: $(VPY)
	IMAGE=$(IMAGE) container/build-image.sh

selfcheck: image
	$(VENV)/bin/aero-win7-docker --image $(IMAGE) selfcheck --out-dir $(OUT_DIR)/selfcheck

test-win7: $(VPY)
	@test -n "$(DISK_IMAGE)" || { echo "FAIL: USAGE: make test-win7 needs DISK_IMAGE=path/to/win7.qcow2"; exit 2; }
	$(VENV)/bin/aero-win7-docker --image $(IMAGE) --disk-image "$(DISK_IMAGE)" --timeout-seconds $(TIMEOUT) \
		--out-dir $(OUT_DIR) --snapshot $(if $(SND),--enable-virtio-snd --virtio-snd-audio-backend wav)

bench: $(VPY)
	$(VPY) bench/run.py

clean:
	rm -rf build/reference-guest* out .pytest_cache
