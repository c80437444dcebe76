"""Shared fixtures: Hydra config composition and running the CLI in a subprocess.

Compilation dominates the suite's time (hundreds of small programs, each compiled once), so before
JAX starts, here and in every CLI subprocess (they inherit the environment):
- XLA's CPU backend compiles without LLVM's optimisation passes (`TEST_XLA_FLAGS`): about 40% less
  compile time; the programs compute the same operations in the same order (no fast-math), only
  unoptimised machine code, which the tests' tiny shapes hardly notice;
- JAX's persistent compilation cache is on from the first program, in `$SEQBENCH_JAX_CACHE` (the
  trainer's default otherwise), so a program compiled by one test, worker or run is loaded by the
  next.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from seqbench.cli.train import CONF_DIR
from seqbench.provenance import add_xla_flags
from seqbench.train.driver import enable_compilation_cache

TEST_XLA_FLAGS = ("--xla_backend_optimization_level=0",)
REPO = Path(__file__).resolve().parent.parent

add_xla_flags(TEST_XLA_FLAGS)  # read when the backend starts, at the first computation
enable_compilation_cache(os.environ.get("SEQBENCH_JAX_CACHE", "~/.cache/seqbench/jax"))


@pytest.fixture
def compose_config():
    """compose_config(overrides) -> the DictConfig Hydra would hand the app."""

    def _compose(overrides=()):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose("config", overrides=list(overrides))

    return _compose


def run_train_cli(args, cwd, prelude=None):
    """`python -m seqbench.cli.train args` in a subprocess in `cwd` (a CompletedProcess).

    `prelude`: Python run first in that process (e.g. importing a test module that registers an
    architecture, or patching a module), then seqbench-train's `main()`; tests/ is importable.
    """
    path = os.pathsep.join([str(REPO), str(REPO / "tests")])
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": path}
    program = ["-m", "seqbench.cli.train"]
    if prelude is not None:
        program = ["-c", f"{prelude}; from seqbench.cli.train import main; main()"]
    return subprocess.run(
        [sys.executable, *program, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def run_cli(tmp_path):
    """run_cli(*args, cwd=None, prelude=None): `run_train_cli` inside tmp_path (or `cwd`)."""

    def _run(*args, cwd=None, prelude=None):
        return run_train_cli(args, cwd or tmp_path, prelude)

    return _run
