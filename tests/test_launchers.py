"""Hydra launchers: local parallel jobs (joblib) and submitit's local executor, each a 2-job sweep."""

import importlib.util
import json

import pytest

pytestmark = pytest.mark.slow  # several processes each: `make test-all`


@pytest.mark.parametrize(
    ("launcher", "plugin"),
    [
        ("local_parallel", "hydra_plugins.hydra_joblib_launcher"),
        ("submitit_local", "hydra_plugins.hydra_submitit_launcher"),
    ],
)
def test_a_two_job_sweep_runs_under_the_launcher(run_cli, tmp_path, launcher, plugin):
    if importlib.util.find_spec(plugin) is None:
        pytest.skip(f"{plugin} (seqbench[cluster]) not installed")
    sweep = tmp_path / "sweep"
    args = ["--multirun", f"hydra/launcher={launcher}", "experiment=smoke", "model=simple_rnn,gru"]
    done = run_cli(*args, f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/run.json"))]
    assert [r["status"] for r in records] == ["completed", "completed"]
    assert {r["config"]["model"]["architecture"] for r in records} == {"simple_rnn", "gru"}
    cores = [r["device"]["cpu_affinity"] for r in records]
    if launcher == "local_parallel" and len(cores[0] or []) + len(cores[1] or []) >= 2:
        assert not set(cores[0]) & set(cores[1]), cores  # each job on its share of the cores
    before = {p: p.read_text() for p in sweep.glob("*/run.json")}
    again = run_cli(*args, f"hydra.sweep.dir={sweep}")  # re-run: both jobs skipped
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p: p.read_text() for p in sweep.glob("*/run.json")} == before
