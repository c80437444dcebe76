"""wandb mirroring (offline, read back with wandb's own tooling; a fake wandb module for what a
file cannot show), the logger presets and the null tracker. TensorBoard: tests/test_tensorboard.py."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from seqbench.cli.train import train_from_config
from seqbench.config import ConfigError, LoggerConfig
from seqbench.records import (
    Curves,
    ModelInfo,
    RunRecord,
    SeedSummary,
    TaskInfo,
    config_identity,
)
from seqbench.store import validate
from seqbench.tracking import (
    CompositeTracker,
    NullTracker,
    TensorBoardTracker,
    WandbTracker,
    config_group,
    make_tracker,
    wandb_mode,
)

TINY = ["trainer=smoke", "trainer.progress=false", "task.length=12"]


def wandb_files(root: Path) -> list[Path]:
    return sorted(root.rglob("offline-run-*/run-*.wandb"))


def read_wandb_run(path: Path) -> dict:
    """Config, group, tags, history rows, summary, declared metrics ({name: definition}),
    artifacts and exit code of an offline run, as wandb's own `wandb leet inspect --json` prints
    its records (one JSON object per line)."""
    wandb_cli = shutil.which("wandb") or str(Path(sys.executable).with_name("wandb"))
    out = subprocess.run(
        [wandb_cli, "leet", "inspect", "--json", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    run = {"history": [], "summary": {}, "metrics": {}, "artifacts": [], "exit_code": None}
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
        elif kind == "metric":
            run["metrics"][record["metric"]["name"]] = record["metric"]
        elif kind == "artifact":
            run["artifacts"].append(record["artifact"])
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
    disabled = LoggerConfig(backends=["wandb"], mode="disabled")
    assert isinstance(make_tracker(disabled, {}, {}, tmp_path), NullTracker)
    record = train(compose_config, tmp_path, ["logger=wandb", "logger.mode=disabled"])
    assert record.status == "completed"
    assert not (tmp_path / "wandb").exists()


@pytest.mark.parametrize("bad", ["logger.mode=sometimes", "logger.init_timeout=0"])
def test_bad_logger_values_are_refused(compose_config, bad):
    with pytest.raises(ValueError, match="logger"):
        validate(compose_config(["logger=wandb", bad]))


def test_offline_two_seeds_give_two_runs_with_what_was_logged(
    compose_config, tmp_path, monkeypatch
):
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb_data"))  # artifacts' staged files
    record = train(
        compose_config,
        tmp_path,
        [
            "logger=wandb",
            "logger.mode=offline",
            "logger.artifact_figure=false",  # the figure: test_record_artifact_and_metric_...
            "seeds=[0,1]",
            "trainer.gradient_flow_steps=[0,4]",
        ],
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
        # every metric against the training step, its summary its best value (mse: the lowest)
        assert all(logged[step]["trainer/step"] == step for step in steps)
        assert run["metrics"]["trainer/step"]["options"]["hidden"] is True
        for name in (f"val/{primary}", f"test/{primary}", "train/loss"):
            assert run["metrics"][name]["step_metric"] == "trainer/step"
            assert run["metrics"][name]["summary"] == {"min": True}
        lowest = min(row[f"test/{primary}"] for row in logged.values())
        assert run["summary"][f"test/{primary}"] == {"min": pytest.approx(lowest, rel=1e-6)}
        # the run record as an artifact of every run, the same bytes as run.json
        (artifact,) = [a for a in run["artifacts"] if a["type"] == "run-record"]
        assert artifact["name"] == f"record-{run['group']}"
        assert json.loads(artifact["metadata"])["status"] == "completed"
        (entry,) = artifact["manifest"]["contents"]
        assert entry["path"] == "run.json"
        staged = Path(entry["local_path"]).read_text()
        assert staged == (tmp_path / "run.json").read_text()


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
def test_four_job_multirun_in_one_process_gives_four_distinct_runs(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb_data"))  # the artifacts' copies
    sweep = tmp_path / "sweep"
    done = run_cli(
        "--multirun",
        *TINY,
        "logger=wandb",
        "logger.mode=offline",
        "logger.artifact_figure=false",
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
        assert [a["type"] for a in run["artifacts"]] == ["run-record"]  # its own job's record
        assert run["artifacts"][0]["name"] == f"record-{run['group']}"


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

    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb_data"))
    offline = ["logger=wandb", "logger.mode=offline", "logger.artifact_figure=false"]
    train(compose_config, tmp_path, [*offline, "seeds=[0,1]"])
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


@pytest.mark.parametrize(
    ("preset", "backends"),
    [
        ("none", []),
        ("wandb", ["wandb"]),
        ("tensorboard", ["tensorboard"]),
        ("wandb_tensorboard", ["wandb", "tensorboard"]),
    ],
)
def test_logger_presets_select_their_trackers_and_keep_the_identity(
    compose_config, preset, backends
):
    composed = compose_config([f"logger={preset}"])
    assert validate(composed).logger.backends == backends
    plain = compose_config(["logger=none"])
    identity = config_identity(OmegaConf.to_container(composed, resolve=True))
    assert identity == config_identity(OmegaConf.to_container(plain, resolve=True))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("logger.backends=[wandb,mlflow]", "logger.backends: got 'mlflow', expected one of "),
        ("logger.backends=[tensorboard,tensorboard]", "logger.backends: names a tracker twice"),
    ],
)
def test_unknown_or_repeated_backends_are_one_line(compose_config, override, message):
    with pytest.raises(ConfigError, match=message) as raised:
        validate(compose_config(["logger=wandb", override]))
    assert "\n" not in str(raised.value)


def test_make_tracker_fans_out_to_each_backend_in_order(tmp_path, monkeypatch):
    made = []
    for cls in (WandbTracker, TensorBoardTracker):
        monkeypatch.setattr(cls, "__init__", lambda self, *args, cls=cls: made.append(cls))
    both = LoggerConfig(backends=["tensorboard", "wandb"], mode="offline")
    tracker = make_tracker(both, {}, None, tmp_path)
    assert isinstance(tracker, CompositeTracker) and made == [TensorBoardTracker, WandbTracker]
    calls = []

    class Recorder:
        def __init__(self, name):
            self.name = name

        def log_eval(self, *args):
            calls.append((self.name, "eval", args[0]))

        def log_gradient_flow(self, *args):
            calls.append((self.name, "flow", args[0]))

        def finish(self, record):
            calls.append((self.name, "finish", record))

    tracker.trackers = [Recorder("a"), Recorder("b")]
    tracker.log_eval(2, {}, None)
    tracker.log_gradient_flow(4, np.zeros((1, 1, 3)))
    tracker.finish("rec")
    assert calls == [
        ("a", "eval", 2), ("b", "eval", 2), ("a", "flow", 4), ("b", "flow", 4),
        ("a", "finish", "rec"), ("b", "finish", "rec"),
    ]  # fmt: skip
    disabled = LoggerConfig(backends=["wandb", "tensorboard"], mode="disabled")
    assert isinstance(make_tracker(disabled, {}, None, tmp_path), TensorBoardTracker)


class FakeWandbRun:
    """What the tracker calls on a run of the fake wandb module below, recorded in `calls`."""

    def __init__(self, calls, seed):
        self.id, self.calls, self.seed, self.summary = f"id{seed}", calls, seed, {}

    def define_metric(self, name, **options):
        self.calls.append(("define_metric", self.seed, name, options))

    def log(self, row, step):
        self.calls.append(("log", self.seed, step, row))

    def log_artifact(self, artifact):
        self.calls.append(("log_artifact", self.seed, artifact))

    def finish(self, exit_code=0, quiet=None):
        self.calls.append(("finish", self.seed, exit_code))


class FakeArtifact:
    def __init__(self, name, type, description=None, metadata=None):
        self.name, self.type, self.metadata, self.files = name, type, metadata, {}

    def add_file(self, local_path, name=None):
        self.files[name] = Path(local_path).read_bytes()


def fake_wandb(monkeypatch, calls):
    import types

    seeds = iter(range(100))
    module = types.SimpleNamespace(
        Settings=lambda **kwargs: kwargs,
        init=lambda **kwargs: FakeWandbRun(calls, next(seeds)),
        Artifact=FakeArtifact,
    )
    monkeypatch.setitem(sys.modules, "wandb", module)
    return module


def finished_record():
    """A finished two-seed copy-memory record with learning curves (cross-entropy, accuracy)."""
    task = TaskInfo(
        "copy_memory", "copy_memory (T=20)", "copy_memory", 20,
        {"cross_entropy": "min", "accuracy": "max"}, "cross_entropy",
        {"cross_entropy": 2.0, "accuracy": None},
    )  # fmt: skip
    values = {"cross_entropy": [2.0, 1.0, 0.5], "accuracy": [0.1, 0.5, 0.9]}
    curves = {
        f"{split}/{name}": [[v, v + 0.1] for v in series]
        for split in ("val", "test")
        for name, series in values.items()
    }
    finals = [{k: v[-1][index] for k, v in curves.items()} for index in range(2)]
    per_seed = [
        SeedSummary(seed=seed, status="completed", best_step=4, final=final, best=final)
        for seed, final in zip([0, 1], finals, strict=True)
    ]
    return RunRecord(
        name="copy_memory-gru",
        status="completed",
        config={"model": {"architecture": "gru"}},
        task=task,
        model=ModelInfo("gru", param_count=10, hidden_size=4),
        seeds=[0, 1],
        per_seed=per_seed,
        curves=Curves(
            eval_steps=[0, 2, 4], eval=curves, train_steps=[2, 4], train_loss=[[1, 1], [0.5, 0.5]]
        ),
    )


def test_record_artifact_and_metric_summaries_reach_every_run(tmp_path, monkeypatch, capsys):
    calls = []
    fake_wandb(monkeypatch, calls)
    record = finished_record()
    cfg = LoggerConfig(backends=["wandb"], mode="offline", group="copy/gru 1")
    tracker = WandbTracker(cfg, {}, record, tmp_path)
    assert record.wandb_run_ids == {"0": "id0", "1": "id1"}
    metrics = {
        "val/cross_entropy": np.array([1.0, 1.1]),
        "val/accuracy": np.array([0.5, 0.6]),
        "test_T40/accuracy": np.array([0.4, 0.3]),  # a longer test length: the same direction
        "val/extra": np.array([3.0, 3.0]),  # a metric the task does not name: its last value
    }
    tracker.log_eval(0, metrics, None)
    tracker.log_eval(2, metrics, np.array([0.7, 0.8]))
    defined = [c[1:] for c in calls if c[0] == "define_metric"]
    step = {"step_metric": "trainer/step"}
    assert defined == [
        (0, "trainer/step", {"hidden": True}),
        (1, "trainer/step", {"hidden": True}),
        *[
            (seed, name, {**step, "summary": summary})
            for name, summary in [
                ("val/cross_entropy", "min"),
                ("val/accuracy", "max"),
                ("test_T40/accuracy", "max"),
                ("val/extra", "last"),
                ("train/loss", "min"),  # declared at its first evaluation (step 2)
            ]
            for seed in (0, 1)
        ],
    ]
    rows = {(c[1], c[2]): c[3] for c in calls if c[0] == "log"}
    assert rows[(1, 2)] == {
        "val/cross_entropy": 1.1, "val/accuracy": 0.6, "test_T40/accuracy": 0.3, "val/extra": 3.0,
        "train/loss": 0.8, "trainer/step": 2,
    }  # fmt: skip
    tracker.finish(record)
    artifacts = [c for c in calls if c[0] == "log_artifact"]
    assert [seed for _, seed, _ in artifacts] == [0, 1]
    for _, _, artifact in artifacts:
        assert artifact.name == "record-copy-gru-1" and artifact.type == "run-record"
        assert artifact.metadata["status"] == "completed" and artifact.metadata["seeds"] == [0, 1]
        assert sorted(artifact.files) == ["learning_curves.png", "run.json"]
        assert json.loads(artifact.files["run.json"]) == json.loads(json.dumps(record.to_json()))
        assert artifact.files["learning_curves.png"].startswith(b"\x89PNG")
    # each run logs its artifact before it finishes
    order = [(c[0], c[1]) for c in calls if c[0] in ("log_artifact", "finish")]
    assert order == [("log_artifact", 0), ("finish", 0), ("log_artifact", 1), ("finish", 1)]
    assert capsys.readouterr().err == ""


def test_a_failing_artifact_or_figure_warns_once_and_the_runs_still_finish(
    tmp_path, monkeypatch, capsys
):
    import seqbench.report.plot as plot

    calls = []
    module = fake_wandb(monkeypatch, calls)

    def no_figure(*args, **kwargs):
        raise RuntimeError("no fonts")

    monkeypatch.setattr(plot, "plot_curves", no_figure)
    record = finished_record()
    tracker = WandbTracker(LoggerConfig(backends=["wandb"]), {}, record, tmp_path)
    tracker.finish(record)
    (artifact, _) = [c[2] for c in calls if c[0] == "log_artifact"]
    assert sorted(artifact.files) == ["run.json"]
    assert [c for c in calls if c[0] == "finish"] == [("finish", 0, 0), ("finish", 1, 0)]
    assert capsys.readouterr().err.splitlines() == [
        "seqbench: warning: wandb could not draw the learning curves for the run record artifact "
        "(RuntimeError: no fonts); its artifact holds the run record only"
    ]

    def refuse(*args, **kwargs):
        raise OSError("artifact storage gone")

    calls.clear()
    module.Artifact = refuse
    tracker = WandbTracker(LoggerConfig(backends=["wandb"]), {}, record, tmp_path)
    tracker.finish(record)
    assert [c[0] for c in calls].count("log_artifact") == 0
    assert [c[2] for c in calls if c[0] == "finish"] == [0, 0]  # both runs, exit code 0
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2  # the figure again, then the artifact: once, not once per run
    assert lines[1] == (
        "seqbench: warning: wandb could not log the run record as an artifact "
        "(OSError: artifact storage gone); its runs finish without it"
    )
