"""Shared fixtures: Hydra config composition and running the CLI in a subprocess.

Compilation dominates the suite's time (hundreds of small programs, each compiled once), so before
JAX starts, here and in every CLI subprocess (they inherit the environment):
- XLA's CPU backend compiles with cheaper code generation (`TEST_XLA_FLAGS`): no LLVM optimisation
  passes, and XLA's older (elemental) fusion emitters in place of the MLIR ones; with a cold
  compilation cache the suite took 499 s with the defaults and 313 s with these flags on the 2-core
  CPU. The programs compute the same operations (no fast-math), but a fusion's code may round a
  last bit differently from the default compiler's, so the few tests that pin the default
  compiler's arithmetic bit for bit run in a child process without these flags
  (`run_under_default_compiler`);
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

TEST_XLA_FLAGS = (
    "--xla_backend_optimization_level=0",
    "--xla_cpu_use_fusion_emitters=false",
    "--xla_llvm_disable_expensive_passes=true",
)
REPO = Path(__file__).resolve().parent.parent
#: $XLA_FLAGS as the suite found it, before `TEST_XLA_FLAGS`: what a user's run compiles with
DEFAULT_XLA_FLAGS = os.environ.get("XLA_FLAGS", "")

add_xla_flags(TEST_XLA_FLAGS)  # read when the backend starts, at the first computation
enable_compilation_cache(os.environ.get("SEQBENCH_JAX_CACHE", "~/.cache/seqbench/jax"))


def _child_env(xla_flags: str) -> dict[str, str]:
    """The environment of a child Python process: CPU, seqbench and tests/ importable."""
    path = os.pathsep.join([str(REPO), str(REPO / "tests")])
    return {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": path, "XLA_FLAGS": xla_flags}


def run_under_default_compiler(module: str, function: str, *args) -> None:
    """Call `module.function(*args)` (a tests/ module; arguments with a Python literal `repr`) in
    a child process compiling with `DEFAULT_XLA_FLAGS`, the compiler a user's run gets; fails the
    calling test with the child's traceback when the call raises."""
    call = f"import {module}; {module}.{function}({', '.join(map(repr, args))})"
    done = subprocess.run(
        [sys.executable, "-c", call],
        env=_child_env(DEFAULT_XLA_FLAGS),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        pytest.fail(f"{module}.{function} under the default compiler:\n{done.stderr[-4000:]}")


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
    env = _child_env(os.environ["XLA_FLAGS"])
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
