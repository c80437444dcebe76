# Quick start:  make bench   (the default benchmark)   ·   make test   (the test suite)
# Each target creates .venv with the project installed on first use; only Python >= 3.11 and make
# are needed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export SEQBENCH_JAX_CACHE ?= $(CURDIR)/.cache/jax

.PHONY: help bench test test-all speed lint format clean constraints

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; sys.exit("seqbench needs Python >= 3.11") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,data,cluster,search]'
	touch $(STAMP)

# The exact versions of every dependency that the tests passed with (what `make` installs), read
# from a fresh install of every extra; local version labels (torch's +cpu) are dropped so that the
# pins resolve from any index.
constraints:  ## refresh constraints.txt from a fresh install of seqbench and all its extras
	rm -rf .cache/constraints-venv
	$(PYTHON) -m venv .cache/constraints-venv
	.cache/constraints-venv/bin/python -m pip install --quiet '.[test,data,cluster,bench,search]'
	( echo "# make constraints: the versions seqbench was tested with (make installs with -c)"; \
	  .cache/constraints-venv/bin/python -m pip freeze --exclude seqbench | sed -E 's/\+[A-Za-z0-9.]+$$//' ) > constraints.txt
	rm -rf .cache/constraints-venv

bench: $(STAMP)  ## the default benchmark (experiments/default_benchmark.sh): 3 cells x 2 tasks x 3 seeds, table
	BIN=$(BIN) experiments/default_benchmark.sh

test: $(STAMP)  ## lint, format check and the test suite (tests marked slow deselected)
	$(BIN)/ruff check seqbench tests experiments
	$(BIN)/ruff format --check seqbench tests experiments
	$(BIN)/python -m pytest -n auto --dist worksteal --durations=25

# Training-step throughput against plain Flax and PyTorch (installs the PyTorch CPU wheel).
speed: $(STAMP)  ## training-step throughput against plain Flax and PyTorch (results/bench/cpu)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,data,cluster,bench,search]'
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
