"""Hyper-parameter search (seqbench.search, conf/hparams_search/): the objective every sweeper
minimises, on fabricated records; the search section a run records; one-line refusals; a real
Optuna sweep of two trials, one of whose seeds all diverge."""

import json
import math
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from seqbench import search
from seqbench.cli.train import CONF_DIR
from seqbench.config import ConfigError
from seqbench.records import RunRecord, SeedSummary, TaskInfo, load_record, write_record

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "results" / "default_benchmark"


def task(direction="min", metric="mse", baseline=0.5):
    return TaskInfo(
        name="t",
        label="t (T=5)",
        family="t",
        length=5,
        metrics={metric: direction, "other": "min"},
        primary_metric=metric,
        baseline={metric: baseline, "other": None},
    )


def seed(number, val, status="completed", metric="mse", test=0.0):
    """A seed's results: its best validation `val` (None: no finite evaluation)."""
    best = None if val is None else {f"val/{metric}": val, f"test/{metric}": test}
    return SeedSummary(seed=number, status=status, final=best, best=best, best_step=10)


def test_the_objective_of_a_minimised_metric_is_the_mean_of_each_seeds_best_validation_value():
    found = search.objective_of(task(), "completed", [seed(0, 0.2), seed(1, 0.4)], [0, 1])
    assert found.value == pytest.approx(0.3)
    assert (found.metric, found.direction, found.failed) == ("val/mse", "min", [])
    assert found.per_seed == {0: 0.2, 1: 0.4}  # the test values (0.0) never enter


def test_a_maximised_metric_is_negated_so_that_every_sweeper_minimises():
    seeds = [seed(0, 0.9, metric="accuracy"), seed(1, 0.7, metric="accuracy")]
    found = search.objective_of(task("max", "accuracy"), "completed", seeds, [0, 1])
    assert found.value == pytest.approx(-0.8)
    better = search.objective_of(
        task("max", "accuracy"), "completed", [seed(0, 0.95, metric="accuracy")], [0]
    )
    assert better.value < found.value  # higher accuracy, lower objective


@pytest.mark.parametrize("direction", ["min", "max"])
def test_diverged_seeds_count_as_the_worst_value_instead_of_leaving_the_mean(direction):
    metric = "mse" if direction == "min" else "accuracy"
    sign = 1 if direction == "min" else -1
    seeds = [
        seed(0, 0.2, metric=metric),
        seed(1, 0.1, status="diverged", metric=metric),  # a finite best before it diverged
        seed(2, None, metric=metric),  # no finite evaluation at all
    ]
    found = search.objective_of(task(direction, metric), "diverged", seeds, [0, 1, 2])
    assert found.failed == [1, 2]
    assert found.value == pytest.approx((sign * 0.2 + 2 * search.WORST) / 3)
    one_failure = search.objective_of(task(direction, metric), "diverged", seeds[:2], [0, 1])
    assert one_failure.value < found.value  # fewer failed seeds rank better
    assert math.isfinite(found.value) and found.value < search.WORST


@pytest.mark.parametrize("status", ["failed", "interrupted", "running"])
def test_a_run_without_results_scores_the_worst_value_for_every_seed(status):
    found = search.objective_of(task(), status, None, [0, 1, 2])
    assert found.value == search.WORST and found.failed == [0, 1, 2]
    assert found.metric == "val/mse"


def test_no_finite_value_is_ever_worse_than_a_failure():
    huge = search.objective_of(task(), "completed", [seed(0, 1e15)], [0])
    assert huge.value == search.WORST
    assert search.signed(-1e15, "max") == search.WORST


def test_without_a_validation_split_the_objective_reads_the_test_split_as_the_record_does():
    only_test = SeedSummary(seed=0, status="completed", best={"test/mse": 0.25}, best_step=4)
    found = search.objective_of(task(), "completed", [only_test], [0])
    assert (found.metric, found.value) == ("test/mse", 0.25)


def test_the_objective_of_a_committed_record_and_of_the_same_run_all_diverged():
    record = load_record(COMMITTED / "0")
    found = search.objective(record)
    values = [s.best["val/mse"] for s in record.per_seed]
    assert found.value == pytest.approx(sum(values) / len(values))
    assert found.value == pytest.approx(record.summary.best["val/mse"].mean)  # the same selection
    for s in record.per_seed:
        s.status = "diverged"
    record.status = "diverged"
    assert search.objective(record).value == search.WORST


def test_the_hydra_entry_returns_the_worst_value_for_a_run_whose_seeds_all_diverged(
    compose_config, tmp_path, monkeypatch
):
    from seqbench.cli import train as app

    record = load_record(COMMITTED / "0")
    for s in record.per_seed:
        s.status, s.best = "diverged", None
    record.status = "diverged"
    monkeypatch.setattr(app, "train_from_config", lambda *args, **kwargs: record)
    cfg = compose_config(["experiment=smoke", f"output_dir={tmp_path}"])
    assert app.hydra_main.__wrapped__(cfg) == search.WORST


def test_a_trial_that_crashes_is_recorded_failed_and_scores_the_worst_value(
    compose_config, tmp_path, monkeypatch
):
    from seqbench.cli import train as app

    section = {"sweeper": search.OPTUNA_SWEEPER, "trial": 3, "n_trials": 8, "space": {}}

    given = []

    def crash(cfg, resolved, output_dir, guard, searched):
        given.append(searched)
        record = load_record(COMMITTED / "0")
        record.status, record.per_seed, record.summary = "failed", None, None
        record.error, record.search = "RuntimeError: device lost", searched
        write_record(output_dir / "run.json", record)  # as RecordedRun leaves it
        raise RuntimeError("device lost")

    monkeypatch.setattr(app, "current_search", lambda: section)
    monkeypatch.setattr(app, "train_from_config", crash)
    cfg = compose_config(["experiment=smoke", f"output_dir={tmp_path}"])
    assert app.hydra_main.__wrapped__(cfg) == search.WORST
    assert given == [section]  # the search section reaches the run
    saved = load_record(tmp_path)
    assert saved.status == "failed"
    assert saved.search["objective"]["value"] == search.WORST
    assert saved.search["objective"]["failed"] == saved.seeds
    # outside a search the error is raised as before
    monkeypatch.setattr(app, "current_search", lambda: None)
    with pytest.raises(RuntimeError, match="device lost"):
        app.hydra_main.__wrapped__(cfg)


def test_the_search_section_names_the_sweeper_budget_space_and_the_trials_values():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        overrides = ["hparams_search=lr_clip", "experiment=smoke", "optimizer.lr=0.02"]
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
        plain = compose("config", overrides=["experiment=smoke"], return_hydra_config=True)
    OmegaConf.update(cfg, "hydra.job.num", 5)
    section = search.search_section(cfg.hydra)
    assert section["sweeper"] == search.OPTUNA_SWEEPER
    assert (section["preset"], section["trial"], section["n_trials"]) == ("lr_clip", 5, 16)
    assert set(section["space"]) == {"optimizer.lr", "optimizer.grad_clip"}
    assert section["params"] == {"optimizer.lr": "0.02"}
    assert section["settings"]["direction"] == "minimize"
    assert section["settings"]["sampler"]["seed"] == 1234
    json.dumps(section)  # plain JSON, as run.json holds it
    assert search.search_section(plain.hydra) is None  # a plain run: no search


def test_a_preset_searches_its_own_space_alone_whatever_the_experiment_sweeps():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        overrides = ["hparams_search=lr", "experiment=memory_horizon"]
        full = compose("config", overrides=overrides, return_hydra_config=True)
    # memory_horizon's own sweep (model, task.length) is gone: the space is the learning rate
    assert dict(full.hydra.sweeper.params) == {"optimizer.lr": "tag(log, interval(1.0e-4, 1.0e-1))"}
    assert full.hydra.sweeper.direction == "minimize"


@pytest.mark.parametrize(
    ("target", "settings", "message"),
    [
        (search.OPTUNA_SWEEPER, {"direction": "maximize"}, "hydra.sweeper.direction"),
        (search.OPTUNA_SWEEPER, {"direction": ["minimize", "minimize"]}, "direction"),
        (
            search.AX_SWEEPER,
            {"ax_config": {"experiment": {"minimize": False}}},
            "ax_config.experiment.minimize",
        ),
        (search.NEVERGRAD_SWEEPER, {"optim": {"maximize": True}}, "optim.maximize"),
    ],
)
def test_a_sweeper_told_to_maximise_is_refused_with_one_line(target, settings, message):
    with pytest.raises(ConfigError, match=message) as refused:
        search.check_minimises(target, settings)
    assert "\n" not in str(refused.value)


def test_ax_and_nevergrad_at_their_defaults_minimise():
    search.check_minimises(search.AX_SWEEPER, {"ax_config": {"experiment": {"minimize": True}}})
    search.check_minimises(search.NEVERGRAD_SWEEPER, {"optim": {"maximize": False}})
    search.check_minimises(search.OPTUNA_SWEEPER, {"direction": "minimize"})


def test_a_command_line_sweep_beside_a_search_is_refused_with_one_line():
    with pytest.raises(ConfigError, match="model=lstm,gru: a search tunes"):
        search.check_command_line(["--multirun", "hparams_search=lr", "model=lstm,gru"])
    with pytest.raises(ConfigError, match=r"optimizer\.b1="):
        search.check_command_line(["hparams_search=lr", "optimizer.b1=interval(0.8, 0.99)"])
    search.check_command_line(  # one value each, and Hydra's own keys: fine
        ["--multirun", "hparams_search=lr", "model=lstm", "hydra.sweeper.n_trials=3"]
    )


def test_a_search_with_a_sweep_on_the_command_line_stops_before_anything_runs(run_cli, tmp_path):
    done = run_cli("--multirun", "hparams_search=lr", "experiment=smoke", "model=lstm,gru")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqbench-train: error: model=lstm,gru")
    assert not (tmp_path / "outputs").exists()


def test_a_real_optuna_search_records_itself_and_survives_a_trial_whose_seeds_all_diverge(
    run_cli, tmp_path
):
    # a space of twelve decades: under the preset's sampler seed, the first trial's rate trains
    # and the second's (thousands) makes every seed blow up
    space = tmp_path / "conf" / "hparams_search" / "space"
    space.mkdir(parents=True)
    (space / "wide.yaml").write_text("optimizer.lr: tag(log, interval(1.0e-4, 1.0e8))\n")
    sweep = tmp_path / "sweep"
    done = run_cli(
        "hparams_search=lr",
        "hparams_search/space@hydra.sweeper.params=wide",
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
        "hydra.sweeper.n_trials=2",
        "experiment=smoke",
        "task=adding",
        "model=simple_rnn",
        "seeds=[0,1]",
        "trainer.checkpoint=false",
        "trainer.blowup_factor=10",
        f"hydra.sweep.dir={sweep}",
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads((sweep / str(n) / "run.json").read_text()) for n in range(2)]
    values = []
    for number, record in enumerate(records):
        section = record["search"]
        assert (section["preset"], section["trial"], section["n_trials"]) == ("lr", number, 2)
        assert section["space"] == {"optimizer.lr": "tag(log, interval(1.0e-4, 1.0e8))"}
        lr = float(section["params"]["optimizer.lr"])
        assert record["config"]["optimizer"]["lr"] == lr
        objective = section["objective"]
        diverged = [s["seed"] for s in record["per_seed"] if s["status"] == "diverged"]
        assert objective["failed"] == diverged
        typed = RunRecord.from_json(record)
        assert objective["value"] == search.objective(typed).value
        values.append((lr, objective["value"]))
    (_, trained), (high, blown) = sorted(values)
    assert trained < search.WORST and blown == search.WORST, values
    assert records[[v[0] for v in values].index(high)]["status"] == "diverged"
    results = (sweep / "optimization_results.yaml").read_text()
    assert f"best_value: {trained}" in results  # Optuna got the finite trial as the best


def test_without_the_search_extra_a_search_stops_with_one_line_naming_it(monkeypatch, capsys):
    from seqbench.cli import train as app

    assert app.has_optuna_sweeper()  # make installs seqbench[search]
    monkeypatch.setattr(app, "has_optuna_sweeper", lambda: False)
    monkeypatch.setattr("sys.argv", ["seqbench-train", "hparams_search=lr", "experiment=smoke"])
    with pytest.raises(SystemExit) as stopped:
        app.main()
    assert stopped.value.code == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("seqbench-train: error: hparams_search needs Hydra's Optuna sweeper")
    assert "seqbench[search]" in line and "\n" not in line


def test_help_lists_the_search_presets_but_not_their_spaces():
    from seqbench.cli import train as app

    text = app.help_text([])
    assert "  hparams_search: headline, lr, lr_clip\n" in text
    assert "hparams_search/space" not in text


def test_the_search_section_reads_back_and_a_malformed_one_is_refused(tmp_path):
    record = load_record(COMMITTED / "0")
    record.search = {"sweeper": search.OPTUNA_SWEEPER, "n_trials": 8, "space": {"a": "b"}}
    write_record(tmp_path / "run.json", record)
    assert load_record(tmp_path).search == record.search
    data = json.loads((tmp_path / "run.json").read_text())
    with pytest.raises(ValueError, match="'search'"):
        RunRecord.from_json({**data, "search": [1]}, "x/run.json")
    del data["search"]  # records without one (every run outside a search) read as before
    assert RunRecord.from_json(data).search is None
