# Quick start:  make bench   (the default benchmark)   ·   make test   (the test suite)
# Each target creates .venv with the project installed on first use; only Python >= 3.11 and make
# are needed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export SEQBENCH_JAX_CACHE ?= $(CURDIR)/.cache/jax

.PHONY: help bench test test-all speed lint format clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("seqbench needs Python >= 3.11") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,data,cluster]'
	touch $(STAMP)

bench: $(STAMP)  ## the default benchmark (experiments/default_benchmark.sh): 3 cells x 2 tasks x 3 seeds, table
	BIN=$(BIN) experiments/default_benchmark.sh

test: $(STAMP)  ## lint, format check and the test suite (tests marked slow deselected)
	$(BIN)/ruff check seqbench tests experiments
	$(BIN)/ruff format --check seqbench tests experiments
	$(BIN)/python -m pytest -n auto --dist worksteal --durations=25

# Training-step throughput against plain Flax and PyTorch (installs the PyTorch CPU wheel).
speed: $(STAMP)  ## training-step throughput against plain Flax and PyTorch (results/bench/cpu)
	$(BIN)/python -m pip install --quiet -e '.[test,data,cluster,bench]'
	$(BIN)/seqbench-speed --out results/bench/cpu

test-all: $(STAMP)  ## every test, the slow ones included
	$(BIN)/python -m pytest -m ''

lint: $(STAMP)  ## ruff check
	$(BIN)/ruff check seqbench tests experiments

format: $(STAMP)  ## ruff format and fixes
	$(BIN)/ruff format seqbench tests experiments
	$(BIN)/ruff check --fix seqbench tests experiments

clean:  ## remove .venv and caches
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache
