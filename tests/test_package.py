"""A built wheel trains from any directory: it ships the Hydra configs (setup.py copies conf/ into
seqbench/conf/), which an installed seqbench-train finds without the repository (slow: a wheel
build, a fresh venv and a run, about a minute)."""

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run(*command, cwd=None, env=None):
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{' '.join(map(str, command))}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_venv_trains_from_an_empty_directory(tmp_path):
    wheels = tmp_path / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", wheels,
        REPO, cwd=tmp_path)  # fmt: skip
    (wheel,) = wheels.glob("seqbench-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    # the dependencies come from this environment's site-packages (a path, so its editable
    # seqbench finder is not loaded): only the wheel's own files are new
    fresh = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    purelib = Path(fresh.stdout.strip())
    (purelib / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(python, "-m", "pip", "install", "--no-deps", wheel)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"JAX_PLATFORMS": "cpu"}
    where = run(
        python, "-c", "import seqbench.cli.train as t; print(t.CONF_DIR)", cwd=empty, env=env
    )
    assert Path(where.stdout.strip()) == purelib / "seqbench" / "conf"
    run(venv / "bin" / "seqbench-train", "experiment=smoke", "trainer.steps=4",
        "hydra.run.dir=run", cwd=empty, env=env)  # fmt: skip
    record = json.loads((empty / "run" / "run.json").read_text())
    assert record["status"] == "completed"
    shipped = {
        p.relative_to(purelib / "seqbench" / "conf")
        for p in (purelib / "seqbench" / "conf").rglob("*.yaml")
    }
    assert shipped == {p.relative_to(REPO / "conf") for p in (REPO / "conf").rglob("*.yaml")}
