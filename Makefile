# Quick start:  make bench   (the default benchmark)   ·   make test   (the test suite)
# Each target creates .venv with the project installed on first use; only Python >= 3.11 and make
# are needed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export SEQBENCH_JAX_CACHE ?= $(CURDIR)/.cache/jax

.PHONY: bench test test-all speed lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("seqbench needs Python >= 3.11") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,data,cluster]'
	touch $(STAMP)

bench: $(STAMP)
	BIN=$(BIN) experiments/default_benchmark.sh

test: $(STAMP)
	$(BIN)/ruff check seqbench tests experiments
	$(BIN)/ruff format --check seqbench tests experiments
	$(BIN)/python -m pytest -n auto --dist worksteal

# Training-step throughput against plain Flax and PyTorch (installs the PyTorch CPU wheel).
speed: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,data,cluster,bench]'
	$(BIN)/seqbench-speed --out results/bench/cpu

test-all: $(STAMP)
	$(BIN)/python -m pytest -m ''

lint: $(STAMP)
	$(BIN)/ruff check seqbench tests experiments

format: $(STAMP)
	$(BIN)/ruff format seqbench tests experiments
	$(BIN)/ruff check --fix seqbench tests experiments

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache
