# kfts: `make demo` and `make test` do all setup on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The image every KFP component runs in; point it at your own registry (see images/).
KFTS_IMAGE ?= ghcr.io/kfts/kfts:0.1.0
export KFTS_IMAGE

.PHONY: setup test demo bench compile images clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

test: setup
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/python -m kfts.demo

# the pipelines' IR YAML under pipelines/compiled/ (tests/test_pipelines.py fails when it is stale)
compile: setup
	$(BIN)/kfts pipeline compile --output-dir pipelines/compiled

bench: setup
	$(BIN)/python benchmarks/run.py --report benchmarks/REPORT.md

# Component image (CPU and -cuda) and predictor images (-predictor, -predictor-cuda); see images/.
# Where no Docker engine answers, say so and build nothing (exit 0).
images:
	@if ! docker info >/dev/null 2>&1; then \
		echo "make images: no Docker engine here ('docker info' failed): nothing built."; \
		echo "Run 'make images KFTS_IMAGE=<registry>/kfts:<tag>' where Docker works, then push the 4 tags."; \
		exit 0; \
	fi; \
	set -e; \
	docker build -f images/Dockerfile -t $(KFTS_IMAGE) .; \
	docker build -f images/Dockerfile --build-arg TORCH_INDEX=https://pypi.org/simple -t $(KFTS_IMAGE)-cuda .; \
	docker build -f images/predictor.Dockerfile --build-arg BASE_IMAGE=$(KFTS_IMAGE) -t $(KFTS_IMAGE)-predictor images; \
	docker build -f images/predictor.Dockerfile --build-arg BASE_IMAGE=$(KFTS_IMAGE)-cuda \
		-t $(KFTS_IMAGE)-predictor-cuda images; \
	echo "built $(KFTS_IMAGE), $(KFTS_IMAGE)-cuda, $(KFTS_IMAGE)-predictor, $(KFTS_IMAGE)-predictor-cuda"

clean:
	rm -rf $(VENV) demo-output benchmarks/work .pytest_cache
