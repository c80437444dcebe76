"""The `seqbench-train` command line: runs end to end, writes run records, refuses bad input."""

import json
import math
import sys

import pytest
from conftest import run_train_cli

from seqbench.records import SCHEMA_VERSION, load_record


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One short CLI run (experiment=smoke model=gru), shared by the tests that only read it:
    (the folder it ran in, its run folder)."""
    root = tmp_path_factory.mktemp("smoke")
    out = root / "run"
    done = run_train_cli(["experiment=smoke", "model=gru", f"hydra.run.dir={out}"], root)
    assert done.returncode == 0, done.stderr
    return root, out


def test_a_short_run_writes_a_complete_run_record(smoke_run):
    _, out = smoke_run
    record = load_record(out).to_json()  # checked, in run.json's layout
    assert record["status"] == "completed"
    for key in (
        "config",
        "git",
        "versions",
        "device",
        "model",
        "task",
        "per_seed",
        "summary",
        "curves",
        "timing",
        "started",
        "finished",
    ):
        assert key in record, key
    assert record["config"]["model"]["architecture"] == "gru"
    assert record["model"]["param_count"] > 0
    assert record["task"]["baseline"]["mse"] == pytest.approx(1 / 6)
    assert [s["seed"] for s in record["per_seed"]] == [0, 1]
    assert record["curves"]["eval_steps"] == [0, 2, 4]
    assert json.loads((out / "run.json").read_text())["schema_version"] == SCHEMA_VERSION
    assert set(record["curves"]["eval"]) == {"val/mse", "test/mse"}
    assert all(len(record["curves"]["eval"][k]) == 3 for k in ("val/mse", "test/mse"))
    assert record["curves"]["eval"]["val/mse"] != record["curves"]["eval"]["test/mse"]
    assert all(len(row) == 2 for row in record["curves"]["train_loss"])
    log = (out / "train.log").read_text().splitlines()  # Hydra's job log: seqbench's own lines
    assert [line.split(" - ", 1)[1].split(":")[0] for line in log] == [
        "[seqbench] smoke",
        "step 0",
        "step 2",
        "step 4",
        "[seqbench] smoke completed",
    ]
    assert "step 4: train loss " in log[3] and "test/mse" in log[3]
    for name in ("compile_s", "steps_per_s", "tokens_per_s", "wall_s"):
        assert record["timing"][name] > 0
    # trainer.seeds_over=auto: a 4-step run is not worth measuring, so its seeds run vmapped
    assert (record["timing"]["seeds_over"], record["timing"]["seeds_over_why"]) == (
        "vmap",
        "short run",
    )
    assert record["device"]["platform"] == "cpu"
    assert record["versions"]["jax"]
    for which in ("final", "best"):
        assert math.isfinite(record["summary"][which]["test/mse"]["mean"])
    for seed in record["per_seed"]:  # "best" is the evaluation with the lowest validation mse
        at = record["curves"]["eval_steps"].index(seed["best_step"])
        k = seed["seed"]
        val = [row[k] for row in record["curves"]["eval"]["val/mse"]]
        assert val[at] == min(val)
        assert seed["best"]["test/mse"] == record["curves"]["eval"]["test/mse"][at][k]
    assert not list(out.glob(".run.json.*")), "temporary files left behind"


def test_a_multirun_sweep_writes_one_record_per_job_and_a_table_and_reruns_skip_it(
    run_cli, tmp_path
):
    sweep = tmp_path / "sweep"
    args = (
        "--multirun",
        "experiment=smoke",
        "model=simple_rnn,lstm",
        "task=copy_memory",
        "task.length=3",
        f"hydra.sweep.dir={sweep}",
    )
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    records = sorted(sweep.glob("*/run.json"))
    assert len(records) == 2
    cells = {json.loads(p.read_text())["config"]["model"]["architecture"] for p in records}
    assert cells == {"simple_rnn", "lstm"}
    table = (sweep / "table.md").read_text()
    assert "simple_rnn" in table and "lstm" in table and "cross_entropy" in table
    assert "| copy_memory (T=3) |" in table
    kept = [*records, *sweep.glob("*/.hydra/*.yaml")]
    assert len(kept) == 2 + 2 * 3
    before = {p: p.read_text() for p in kept}
    # the same sweep again (with an option that is not part of a run's identity): both jobs found
    # finished and skipped, their records and the Hydra files saying how they ran left as they were
    again = run_cli(*args, "trainer.progress=false")
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("already completed") == 2
    assert {p: p.read_text() for p in kept} == before


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["task.length=0"], "task.length: must be positive"),
        (["task.no_such_key=1"], "task.no_such_key"),
        (["trainer.steps=many"], "trainer.steps"),
        (["model=transformer"], "model/transformer"),
        (["optimizer.lr=-1"], "optimizer.lr"),
        (["model.param_budget=10"], "budget"),
        (["hydra.run.dir=/proc/seqbench"], "cannot be written"),
        (["--multirun", "model=gru,lstm", "task.length=5,-1"], "task.length"),
    ],
)
def test_bad_input_fails_with_one_line_before_anything_runs(
    tmp_path, monkeypatch, capsys, overrides, message
):
    """seqbench-train's `main()` in this process (the checks run before Hydra or JAX start any
    work, so a subprocess per case would only add its start-up); the console process itself, its
    exit status and its one line on stderr, is checked in test_faults_input.py."""
    from seqbench.cli.train import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["seqbench-train", "experiment=smoke", *overrides])
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("seqbench-train: error:") and message in lines[0]
    assert not (tmp_path / "outputs").exists(), "a failed check must not create run folders"


def test_a_run_that_fails_midway_records_the_failure(compose_config, tmp_path, monkeypatch):
    from seqbench.cli import train as app
    from seqbench.store import validate
    from seqbench.train import driver as runner

    def explode(*args, **kwargs):
        raise RuntimeError("device lost")

    monkeypatch.setattr(runner, "run_training", explode)
    cfg = validate(compose_config(["experiment=smoke"]))
    with pytest.raises(RuntimeError, match="device lost"):
        app.train_from_config(cfg, {"resolved": True}, tmp_path)
    record = load_record(tmp_path)
    assert record.status == "failed"
    assert record.error == "RuntimeError: device lost"
    assert record.config == {"resolved": True} and record.finished


def test_table_and_runs_commands_read_records(smoke_run, capsys):
    from seqbench.cli.report import main as seqbench

    root, out = smoke_run
    seqbench(["table", str(root)])
    table = capsys.readouterr().out
    assert "| adding (T=6) | mse ↓ | 0.1667 |" in table and "gru" in table
    seqbench(["runs", str(root)])
    runs = capsys.readouterr().out
    assert runs.startswith("completed") and str(out) in runs
    with pytest.raises(SystemExit) as missing:
        seqbench(["table", str(root / "nothing")])
    assert missing.value.code != 0 and "no such file" in capsys.readouterr().err
