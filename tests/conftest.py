"""Shared fixtures: Hydra config composition and running the CLI in a subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from seqbench.cli.train import CONF_DIR

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def compose_config():
    """compose_config(overrides) -> the DictConfig Hydra would hand the app."""

    def _compose(overrides=()):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose("config", overrides=list(overrides))

    return _compose


@pytest.fixture
def run_cli(tmp_path):
    """run_cli(*args) runs `python -m seqbench.cli.train args` in a subprocess, inside tmp_path.

    `prelude`: Python run first in that process (e.g. importing a test module that registers an
    architecture, or patching a module), then seqbench-train's `main()`; tests/ is importable.
    """

    def _run(*args, cwd=None, prelude=None):
        path = os.pathsep.join([str(REPO), str(REPO / "tests")])
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": path}
        program = ["-m", "seqbench.cli.train"]
        if prelude is not None:
            program = ["-c", f"{prelude}; from seqbench.cli.train import main; main()"]
        return subprocess.run(
            [sys.executable, *program, *args],
            cwd=cwd or tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    return _run
