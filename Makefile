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

clean:
	rm -rf $(VENV) demo-output benchmarks/work .pytest_cache
