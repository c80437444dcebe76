"""The headline comparison (issue 18): its presets compose, validate, use offline data and give
every architecture the same parameter budget (within 2%); its search preset tunes the rate alone
with 4 one-seed trials; `seqbench search-best` reads a finished search's choice (fabricated
optimization_results.yaml files); experiments/headline.sh and horizon_tuned.sh parse and, with
DRY_RUN=1, print the commands they would run."""

import os
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from seqbench import records, search
from seqbench.cli.report import main as report_main
from seqbench.cli.train import CONF_DIR
from seqbench.models.architectures import ARCHITECTURES
from seqbench.store import validate

REPO = Path(__file__).resolve().parent.parent
HEADLINE = REPO / "experiments" / "headline.sh"
HORIZON = REPO / "experiments" / "horizon_tuned.sh"
#: preset -> (task group, parameter budget): the issue's ten rows
PRESETS = {
    "headline_adding_100": ("adding", 5_000),
    "headline_adding_600": ("adding", 5_000),
    "headline_copy_memory": ("copy_memory", 8_000),
    "headline_selective_copy": ("selective_copy", 20_000),
    "headline_mqar": ("mqar", 20_000),
    "headline_induction_heads": ("induction_heads", 20_000),
    "headline_parity": ("parity", 20_000),
    "headline_smnist_row": ("smnist", 20_000),
    "headline_japanese_vowels": ("uea", 20_000),
    "headline_bach_chorales": ("music", 20_000),
}


def composed(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_the_presets_are_the_issues_ten_rows_and_the_script_runs_each():
    found = {p.stem for p in (Path(CONF_DIR) / "experiment").glob("headline_*.yaml")}
    assert found == set(PRESETS)
    script = HEADLINE.read_text()
    assert all(preset in script for preset in PRESETS)
    assert all(model in script for model in ARCHITECTURES)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_architecture_composes_validates_and_shares_the_budget(compose_config, preset):
    group, budget = PRESETS[preset]
    for model in ARCHITECTURES:
        cfg = validate(compose_config([f"experiment={preset}", f"model={model}"]))
        assert cfg.model.param_budget == budget, model
        assert cfg.seeds == [0, 1, 2, 3, 4] and "headline" in cfg.tags
        assert cfg.trainer.checkpoint is False and cfg.trainer.steps <= 400
        # three evaluations: step 0, half-way and the end
        assert cfg.trainer.steps == 2 * cfg.trainer.eval_every
    raw = composed([f"experiment={preset}"])
    assert raw.hydra.runtime.choices.task == group
    if "source" in raw.task:  # a real data set: its offline copy, never a download
        assert raw.task.source == "offline"


def test_the_real_data_rows_are_the_offline_sets_the_issue_names(compose_config):
    smnist = compose_config(["experiment=headline_smnist_row"])
    assert (smnist.task.mode, smnist.task.permute) == ("row", False)
    assert compose_config(["experiment=headline_japanese_vowels"]).task.name == "JapaneseVowels"
    assert compose_config(["experiment=headline_bach_chorales"]).task.name == "bach_chorales"
    assert compose_config(["experiment=headline_adding_600"]).task.length == 600
    parity = compose_config(["experiment=headline_parity"])
    assert (parity.task.length, list(parity.task.eval_lengths)) == (40, [64, 128, 256])


@pytest.mark.parametrize("preset", ["headline_adding_100", "headline_adding_600"])
def test_the_tcn_sees_the_whole_adding_sequence(compose_config, preset):
    cfg = compose_config([f"experiment={preset}", "model=tcn"])
    k, levels = cfg.model.cell.kernel_size, cfg.model.cell.levels
    assert 1 + 2 * (k - 1) * (2**levels - 1) >= cfg.task.length


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(set(PRESETS) - {"headline_bach_chorales"}))
def test_every_architecture_meets_the_budget_within_2_percent(compose_config, preset):
    # Bach chorales is left out: building its task parses music21's corpus on a fresh cache
    from seqbench.models.build import build_model
    from seqbench.tasks.registry import build_task

    _, budget = PRESETS[preset]
    for model in ARCHITECTURES:
        cfg = validate(compose_config([f"experiment={preset}", f"model={model}"]))
        built = build_model(cfg.model, build_task(cfg.task).spec)
        assert built.param_count == pytest.approx(budget, rel=0.02), model


def test_the_search_preset_tunes_the_rate_with_four_one_seed_trials():
    cfg = composed(["hparams_search=headline", "experiment=headline_mqar", "model=lstm"])
    assert list(cfg.seeds) == [0]  # the search's trials; the final run keeps the preset's five
    sweeper = cfg.hydra.sweeper
    assert (sweeper.n_trials, sweeper.sampler.n_startup_trials) == (4, 4)
    assert dict(sweeper.params) == {"optimizer.lr": "tag(log, interval(1.0e-4, 1.0e-1))"}
    assert sweeper.direction == "minimize" and sweeper.sampler.seed == 1234
    horizon = composed(["hparams_search=headline", "experiment=memory_horizon", "model=gru"])
    assert list(horizon.seeds) == [0] and dict(horizon.hydra.sweeper.params) == dict(sweeper.params)


def write_results(folder, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / search.RESULTS_NAME).write_text(text)
    return folder


def test_the_best_config_of_a_finished_search(tmp_path):
    folder = write_results(
        tmp_path,
        "name: optuna\nbest_params:\n  optimizer.lr: 0.0020630\n  optimizer.grad_clip: 1.5\n"
        "best_value: -0.93\n",
    )
    best = search.best_config(folder)
    assert best.value == -0.93 and not best.failed
    assert best.overrides() == ["optimizer.grad_clip=1.5", "optimizer.lr=0.002063"]
    assert float(best.overrides()[1].split("=")[1]) == 0.0020630  # full precision


def test_search_best_prints_one_override_per_line(tmp_path, capsys):
    folder = write_results(
        tmp_path, "name: optuna\nbest_params:\n  optimizer.lr: 3.75e-05\nbest_value: 0.12\n"
    )
    report_main(["search-best", str(folder)])
    assert capsys.readouterr().out == f"optimizer.lr=3.75e-05\ntuned_by={folder}\n"


def test_a_search_whose_every_trial_failed_still_names_a_rate_with_a_warning(tmp_path, capsys):
    folder = write_results(
        tmp_path, f"name: optuna\nbest_params:\n  optimizer.lr: 0.05\nbest_value: {search.WORST}\n"
    )
    assert search.best_config(folder).failed
    report_main(["search-best", str(folder)])
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == "optimizer.lr=0.05"
    assert "every trial failed" in captured.err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "has not finished"),
        ("best_params: [1\n", "cannot read it"),
        ("name: optuna\nsolutions: []\n", "multi-objective"),
        ("name: optuna\nbest_value: 0.1\n", "no best_params"),
        ("best_params:\n  optimizer.lr: 0.1\nbest_value: .nan\n", "finite number"),
        ("best_params: {}\nbest_value: 0.1\n", "nothing to tune"),
        ("best_params:\n  model.head_sizes: [1, 2]\nbest_value: 0.1\n", "model.head_sizes"),
    ],
)
def test_a_missing_or_malformed_result_is_refused_with_one_line(tmp_path, capsys, text, message):
    if text is not None:
        write_results(tmp_path, text)
    with pytest.raises(ValueError, match=message) as refused:
        search.best_config(tmp_path)
    assert "\n" not in str(refused.value)
    with pytest.raises(SystemExit) as stopped:
        report_main(["search-best", str(tmp_path)])
    assert stopped.value.code == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("seqbench: error: ") and "\n" not in line


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (True, "true"),
        (None, "null"),
        (7, "7"),
        ("adam", "adam"),
        ("a b", "'a b'"),
        ("results/search/gru-2", "results/search/gru-2"),
        ("true", "'true'"),
        ("1e-3", "'1e-3'"),
        ("it's", "'it\\'s'"),
    ],
)
def test_override_values_read_back_as_hydra_parses_them(value, written):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    assert search.override_value(value) == written
    parsed = OverridesParser.create().parse_override(f"key={written}")
    assert parsed.value() == value


@pytest.mark.parametrize("script", [HEADLINE, HORIZON])
def test_the_scripts_parse(script):
    assert os.access(script, os.X_OK)
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def dry_run(script, tmp_path, **env):
    environment = {
        **os.environ,
        "DRY_RUN": "1",
        "SEARCH_DIR": str(tmp_path / "search"),
        "RESULTS": str(tmp_path / "results"),
        **env,
    }
    return subprocess.run(
        [str(script), "logger=none"], capture_output=True, text=True, env=environment, timeout=60
    )


def test_the_headline_dry_run_prints_each_search_final_run_and_the_table(tmp_path):
    # one search has finished (its rate is read), the other has not (a placeholder is shown)
    write_results(
        tmp_path / "search" / "headline_mqar" / "lstm",
        "name: optuna\nbest_params:\n  optimizer.lr: 0.00735\nbest_value: -0.5\n",
    )
    done = dry_run(HEADLINE, tmp_path, PRESETS="headline_mqar", MODELS="lstm tcn")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    final = tmp_path / "results" / "runs" / "headline_mqar"
    assert lines[0] == (
        f".venv/bin/seqbench-train experiment=headline_mqar model=lstm optimizer.lr=0.00735 "
        f"tuned_by={tmp_path}/search/headline_mqar/lstm hydra.run.dir={final}/lstm logger=none"
    )
    assert "search finished" in done.stderr  # the finished search is skipped
    assert lines[1].startswith(".venv/bin/seqbench-train --multirun hparams_search=headline ")
    assert f"hydra.sweep.dir={tmp_path}/search/headline_mqar/tcn" in lines[1]
    assert "$(.venv/bin/seqbench search-best" in lines[2] and "model=tcn" in lines[2]
    assert lines[3].startswith(".venv/bin/seqbench table ") and "results/table.md" in lines[3]
    assert lines[4].startswith(".venv/bin/seqbench plot ")
    assert not (tmp_path / "results").exists()  # nothing ran


def test_the_headline_script_refuses_an_unknown_preset_with_one_line(tmp_path):
    done = dry_run(HEADLINE, tmp_path, PRESETS="headline_nope")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "headline.sh: error: no preset conf/experiment/headline_nope.yaml (PRESETS=headline_nope)"
    )


def test_the_tuned_horizon_dry_run_searches_every_length_then_draws_the_horizon(tmp_path):
    done = dry_run(HORIZON, tmp_path, MODELS="gru", LENGTHS="10 1600")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 5
    assert "hparams_search=headline experiment=memory_horizon model=gru task.length=10" in lines[0]
    assert f"hydra.sweep.dir={tmp_path}/search/gru/T1600" in lines[2]
    assert f"hydra.run.dir={tmp_path}/results/runs/gru/T1600" in lines[3]
    assert lines[4].startswith(".venv/bin/seqbench horizon ")
    bad = dry_run(HORIZON, tmp_path, LENGTHS="ten")
    assert bad.returncode == 2 and "LENGTHS: ten" in bad.stderr


def test_the_headline_search_preset_is_plain_yaml_with_a_comment_above_every_field():
    path = Path(CONF_DIR) / "hparams_search" / "headline.yaml"
    assert OmegaConf.load(path).hydra.sweeper.n_trials == 4
    for preset in [path, *((Path(CONF_DIR) / "experiment").glob("headline_*.yaml"))]:
        lines = preset.read_text().splitlines()
        for number, line in enumerate(lines):
            stripped = line.strip()
            if ":" in stripped and not stripped.startswith(("#", "-")):
                previous = lines[number - 1].strip()
                assert previous.startswith("#") or line.endswith(":"), (preset.name, line)


def test_a_run_trained_at_a_searchs_choice_records_the_search_and_keeps_its_identity(
    compose_config, tmp_path, capsys
):
    folder = write_results(
        tmp_path / "search", "name: optuna\nbest_params:\n  optimizer.lr: 0.004\nbest_value: 0.1\n"
    )
    report_main(["search-best", str(folder)])
    chosen = capsys.readouterr().out.splitlines()
    base = ["experiment=smoke", "model=gru"]
    tuned = compose_config([*base, *chosen])
    assert validate(tuned).tuned_by == str(folder) and validate(tuned).optimizer.lr == 0.004
    untuned = compose_config([*base, "optimizer.lr=0.004"])
    assert validate(untuned).tuned_by is None
    identity = [records.config_identity(OmegaConf.to_container(c)) for c in (tuned, untuned)]
    assert identity[0] == identity[1]
