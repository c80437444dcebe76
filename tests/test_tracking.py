"""wandb mirroring (offline, read back with wandb's own tooling) and the null tracker."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from seqbench.cli.train import train_from_config
from seqbench.config import LoggerConfig
from seqbench.store import validate
from seqbench.tracking import NullTracker, config_group, make_tracker, wandb_mode

TINY = ["trainer=smoke", "trainer.progress=false", "task.length=12"]


def wandb_files(root: Path) -> list[Path]:
    return sorted(root.rglob("offline-run-*/run-*.wandb"))


def read_wandb_run(path: Path) -> dict:
    """Config, group, tags, history rows, summary and exit code of an offline run, as wandb's own
    `wandb leet inspect --json` prints its records (one JSON object per line)."""
    wandb_cli = shutil.which("wandb") or str(Path(sys.executable).with_name("wandb"))
    out = subprocess.run(
        [wandb_cli, "leet", "inspect", "--json", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    run = {"history": [], "summary": {}, "exit_code": None}
    for line in out.splitlines():
        record = json.loads(line)
        kind = record["type"]
        if kind == "run":
            info = record["run"]
            run.update(
                config=info["config"]["update"],
                group=info.get("run_group"),
                name=info.get("display_name"),
                tags=info.get("tags", []),
            )
        elif kind == "history":
            run["history"].append(record["history"]["item"])
        elif kind == "summary":
            run["summary"].update(record["summary"].get("update", {}))
        elif kind == "exit":
            run["exit_code"] = record["exit"].get("exit_code", 0)
    return run


def train(compose_config, tmp_path, overrides):
    composed = compose_config([*TINY, *overrides])
    resolved = OmegaConf.to_container(composed, resolve=True)
    resolved.pop("hydra", None)
    return train_from_config(validate(composed), resolved, tmp_path)


def test_mode_and_group_helpers(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert wandb_mode(None) == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode(None) == "disabled"
    assert wandb_mode("online") == "online"
    a = config_group("adding-lstm", {"seeds": [0], "model": {"cell": "lstm"}})
    b = config_group("adding-lstm", {"seeds": [1, 2], "model": {"cell": "lstm"}})
    c = config_group("adding-lstm", {"seeds": [0], "model": {"cell": "gru"}})
    assert a == b != c


def test_logger_none_and_disabled_write_nothing(compose_config, tmp_path):
    assert isinstance(make_tracker(LoggerConfig(), {}, {}, tmp_path), NullTracker)
    disabled = LoggerConfig(name="wandb", mode="disabled")
    assert isinstance(make_tracker(disabled, {}, {}, tmp_path), NullTracker)
    record = train(compose_config, tmp_path, ["logger=wandb", "logger.mode=disabled"])
    assert record.status == "completed"
    assert not (tmp_path / "wandb").exists()


@pytest.mark.parametrize("bad", ["logger.mode=sometimes", "logger.init_timeout=0"])
def test_bad_logger_values_are_refused(compose_config, bad):
    with pytest.raises(ValueError, match="logger"):
        validate(compose_config(["logger=wandb", bad]))


def test_offline_two_seeds_give_two_runs_with_what_was_logged(compose_config, tmp_path):
    record = train(
        compose_config,
        tmp_path,
        ["logger=wandb", "logger.mode=offline", "seeds=[0,1]", "trainer.gradient_flow_steps=[0,4]"],
    )
    flow = record.gradient_flow  # also in the run record: (S, L, T) per measured step
    assert flow.steps == [0, 4] and flow.split == "val" and flow.batch_size == 64
    norms = np.asarray(flow.norm)
    assert norms.shape == (2, 2, 1, record.task.spec["seq_len"])
    assert np.all(np.isfinite(norms)) and np.all(norms[..., -1] > 0)
    files = wandb_files(tmp_path / "wandb")
    assert len(files) == 2
    runs = {}
    for path in files:
        run = read_wandb_run(path)
        runs[run["config"]["seed"]] = run
    assert sorted(runs) == [0, 1]
    steps = record.curves.eval_steps
    primary = record.task.primary_metric
    for index, seed in enumerate(record.seeds):
        run = runs[seed]
        assert run["exit_code"] == 0
        assert run["group"] == runs[record.seeds[0]]["group"]
        assert run["config"]["param_count"] == record.model.param_count
        logged = {row["_step"]: row for row in run["history"]}
        assert sorted(logged) == list(steps)
        for step in (0, 4):  # the gradient flow: a line plot (table t, layer, grad_norm) per step
            table = f"gradient_flow/step_{step}_table"
            assert logged[step][f"{table}._type"] == "table-file"
            assert logged[step][f"{table}.nrows"] == record.task.spec["seq_len"]
        for k, step in enumerate(steps):
            for split in ("val", "test"):
                expected = record.curves.eval[f"{split}/{primary}"][k][index]
                assert logged[step][f"{split}/{primary}"] == pytest.approx(expected, rel=1e-6)
        for kind in ("final", "best"):
            value = getattr(record.per_seed[index], kind)[f"test/{primary}"]
            assert run["summary"][f"{kind}/test/{primary}"] == pytest.approx(value, rel=1e-6)
        assert run["summary"]["status"] == "completed"


def test_training_error_still_finishes_the_runs(compose_config, tmp_path, monkeypatch):
    import seqbench.train.driver as runner

    def explode(*args, hooks, **kwargs):
        hooks.on_eval(0, {"val/mse": np.array([0.5]), "test/mse": np.array([0.6])}, None)
        raise RuntimeError("boom")

    monkeypatch.setattr(runner, "run_training", explode)
    with pytest.raises(RuntimeError, match="boom"):
        train(compose_config, tmp_path, ["logger=wandb", "logger.mode=offline", "seeds=[3]"])
    (path,) = wandb_files(tmp_path / "wandb")
    run = read_wandb_run(path)
    assert run["exit_code"] == 1
    assert run["summary"]["status"] == "failed"
    assert "boom" in run["summary"]["error"]
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "failed"


def test_wandb_failure_warns_once_and_training_goes_on(
    compose_config, tmp_path, monkeypatch, capsys
):
    import wandb

    def refuse(*args, **kwargs):
        raise wandb.errors.CommError("no network")

    monkeypatch.setattr(wandb, "init", refuse)
    record = train(compose_config, tmp_path, ["logger=wandb", "logger.mode=online"])
    assert record.status == "completed"
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning: wandb" in line]
    assert len(warnings) == 1 and "no network" in warnings[0]


@pytest.mark.slow  # four jobs in one process (about 11 s): `make test-all`
def test_four_job_multirun_in_one_process_gives_four_distinct_runs(run_cli, tmp_path):
    sweep = tmp_path / "sweep"
    done = run_cli(
        "--multirun",
        *TINY,
        "logger=wandb",
        "logger.mode=offline",
        "seeds=[0]",
        "model=simple_rnn,gru",
        "task.length=10,14",
        f"hydra.sweep.dir={sweep}",
    )
    assert done.returncode == 0, done.stderr
    runs = [read_wandb_run(path) for path in wandb_files(sweep)]
    assert len(runs) == 4
    seen = {(r["config"]["model"]["architecture"], r["config"]["task"]["length"]) for r in runs}
    assert seen == {("simple_rnn", 10), ("simple_rnn", 14), ("gru", 10), ("gru", 14)}
    assert len({r["group"] for r in runs}) == 4
    for run in runs:
        assert run["exit_code"] == 0
        cell = run["config"]["model"]["architecture"]
        assert cell in run["tags"] and cell in run["group"]
        assert [row["_step"] for row in run["history"]] == [0, 2, 4]


class FakeRun:
    """What `wandb.Api().runs()` yields, built from an offline run read back from its file."""

    def __init__(self, logged, run_id):
        self.config = {k: v for k, v in logged["config"].items() if k != "_wandb"}
        self.summary = logged["summary"]
        self.group, self.id, self.state = logged["group"], run_id, "finished"
        self.created_at = "2026-11-27T10:00:00"


class FakeApi:
    def __init__(self, runs):
        self._runs = runs

    def runs(self, path):
        assert path == "me/proj"
        return self._runs


def test_runs_and_table_read_back_from_wandb_match_the_local_record(
    compose_config, tmp_path, monkeypatch, capsys
):
    import wandb

    from seqbench.cli.report import main as cli_main
    from seqbench.records import load_record
    from seqbench.report.table import build_table, render_markdown
    from seqbench.tracking import records_from_wandb

    train(compose_config, tmp_path, ["logger=wandb", "logger.mode=offline", "seeds=[0,1]"])
    logged = [read_wandb_run(p) for p in wandb_files(tmp_path / "wandb")]
    fake = FakeApi([FakeRun(run, f"id{i}") for i, run in enumerate(logged)])
    (rebuilt,) = records_from_wandb("me/proj", api=fake)
    assert rebuilt.seeds == [0, 1] and rebuilt.status == "completed"
    local = load_record(tmp_path)
    assert render_markdown(build_table([rebuilt])) == render_markdown(build_table([local]))

    monkeypatch.setattr(wandb, "Api", lambda timeout=None: fake)
    cli_main(["runs", "--wandb", "me/proj"])
    out = capsys.readouterr().out
    assert out.startswith("completed adding (T=12)") and "wandb:me/proj/" in out
    with pytest.raises(SystemExit, match="not both"):
        cli_main(["table", str(tmp_path), "--wandb", "me/proj"])

    def offline(timeout=None):
        raise wandb.errors.CommError("no network")

    monkeypatch.setattr(wandb, "Api", offline)
    with pytest.raises(SystemExit, match="cannot reach wandb: CommError: no network"):
        cli_main(["table", "--wandb", "me/proj"])
