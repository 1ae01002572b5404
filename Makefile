# kfts: `make demo` and `make test` do all setup on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The image every KFP component runs in; point it at your own registry (see images/README.md).
KFTS_IMAGE ?= ghcr.io/kfts/kfts:0.1.0
export KFTS_IMAGE
# Podman's settings for machines where its defaults fail (images/containers.conf); unused by Docker
export CONTAINERS_CONF ?= $(CURDIR)/images/containers.conf

.PHONY: setup test test-fast test-lower lint format demo bench compile wheel images images-cuda clean

setup: $(VENV)/.installed

# Two venvs with kfts (every extra and the test tools) and the CPU kernels add-on (addons/kfts-cpu-kernels), both
# editable: $(VENV) at the releases of constraints.txt (torch's: this machine's CPU wheel), and $(LOWER) at the
# lowest releases pyproject.toml's ranges allow (constraints-lower.txt), for the unit tests on them. The add-on's
# C is compiled into its editable install: a change to it reinstalls.
ADDON := addons/kfts-cpu-kernels
LOWER := .venv-lower
SOURCES := pyproject.toml $(ADDON)/pyproject.toml $(ADDON)/setup.py $(ADDON)/src/kfts_cpu_kernels/kernels.c
$(VENV)/.installed: constraints.txt $(SOURCES)
$(LOWER)/.installed: constraints-lower.txt $(SOURCES)
$(VENV)/.installed $(LOWER)/.installed:
	$(PYTHON) -m venv $(@D)
	$(@D)/bin/pip install --quiet --upgrade pip
	$(@D)/bin/pip install --quiet -c $(filter constraints%.txt,$^) -e '.[test]' -e $(ADDON)
	touch $@

# The unit tests on the lower ends, but tests/unit/kubeflow: kfp's and kserve's lower ends are constraints.txt's pins
test-lower: $(LOWER)/.installed
	$(LOWER)/bin/python -m pytest -q tests/unit/core tests/unit/algorithms tests/unit/jobs tests/unit/cli \
		tests/unit/addons

# Everything: unit tests, and the integration tests that install the wheels outside the checkout, start
# servers and run the images (built here first) and the pipelines in containers. Nothing is skipped.
test: setup lint test-lower images
	$(BIN)/python -m pytest -q

# The inner loop: the checks and tests/unit (no subprocess trainings, servers, containers or pipelines).
test-fast: setup lint
	$(BIN)/python -m pytest -q tests/unit

# ruff (lint, and the format `make format` writes) and mypy (its settings: pyproject.toml)
CHECKED := src tests benchmarks addons
lint: setup
	$(BIN)/ruff check $(CHECKED)
	$(BIN)/ruff format --check $(CHECKED)
	$(BIN)/mypy

format: setup
	$(BIN)/ruff check --fix --select I $(CHECKED)
	$(BIN)/ruff format $(CHECKED)

demo: setup
	$(BIN)/python -m kfts.cli.demo

# the pipelines' IR YAML under pipelines/compiled/ and the components' specs under components/
# (tests/unit/kubeflow/test_pipelines.py and test_components.py fail when they are stale)
compile: setup
	$(BIN)/kfts pipeline compile --output-dir pipelines/compiled --components-dir components

bench: setup
	$(BIN)/python benchmarks/run.py --report benchmarks/REPORT.md

# The wheels users install and the images are built from, in $(DIST): kfts-<version>-py3-none-any.whl (pure
# Python), and the CPU kernels add-on, kfts_cpu_kernels-<version>-py3-none-manylinux_<glibc>_<arch>.whl: its C
# compiled here (gcc, OpenMP), then tagged by auditwheel with the oldest manylinux its symbols allow. OpenMP's
# libgomp.so.1 is left out of the wheel: the kernels share the runtime torch loads (addons/kfts-cpu-kernels).
DIST ?= dist
wheel: setup
	rm -rf $(DIST) build $(ADDON)/build
	$(BIN)/pip wheel --quiet --no-deps -w $(DIST) .
	$(BIN)/pip wheel --quiet --no-deps -w build/addon $(ADDON)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/auditwheel repair --exclude libgomp.so.1 -w $(DIST) build/addon/*.whl

# CPU component and predictor images ($(KFTS_IMAGE), -predictor), with Docker where it answers, else
# Podman; `images-cuda` the CUDA ones (-cuda, -predictor-cuda). See images/README.md.
images: wheel
	images/build.sh cpu

images-cuda: wheel
	images/build.sh cuda

clean:
	rm -rf $(VENV) $(LOWER) demo-output benchmarks/work .pytest_cache dist build $(ADDON)/build
