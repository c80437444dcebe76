"""Seed statistics of the reports: success rules, std (ddof 1), bootstrap intervals, rounding and
the significance test that decides the bold entry (fabricated records, hand-computed numbers)."""

import math

import numpy as np
import pytest
from test_report import record, typed

from seqbench.report.stats import (
    MIN_SEEDS_FOR_CI,
    bootstrap_ci,
    format_rounded,
    seed_statistics,
    uncertainty_decimals,
    welch_p,
)
from seqbench.report.table import build_table, render_csv, render_markdown
from seqbench.tasks.base import BASELINE_FRACTION, SuccessRule


@pytest.mark.parametrize(
    ("name", "metric", "solved", "unsolved"),
    [
        ("adding", "mse", 0.0166, 0.0167),  # under 10% of the baseline 1/6
        ("copy_memory", "recall_accuracy", 0.99, 0.989),
        ("selective_copy", "accuracy", 0.995, 0.98),
        ("mqar", "accuracy", 1.0, 0.5),
        ("induction_heads", "accuracy", 0.99, 0.9899),
        ("parity", "accuracy", 0.999, 0.6),
        ("temporal_order", "accuracy", 0.99, 0.25),
    ],
)
def test_each_synthetic_task_says_when_a_seed_solves_it(name, metric, solved, unsolved):
    from seqbench.report.table import registered_task

    task = registered_task(name)
    rule = task.success
    assert rule.metric == metric and metric in task.metric_directions
    baseline = 1 / 6 if metric == "mse" else None
    assert rule.solves(solved, baseline) and not rule.solves(unsolved, baseline)
    assert not rule.solves(float("nan"), baseline) and not rule.solves(None, baseline)


def test_the_data_sets_have_no_success_rule_and_show_no_count():
    from seqbench.tasks.dataset import ClassificationTask, DatasetTask
    from seqbench.tasks.forecast import Forecasting
    from seqbench.tasks.text import CharLanguageModel

    for task in (DatasetTask, ClassificationTask, Forecasting, CharLanguageModel):
        assert task.success is None
    data = typed([record("lstm", [0.9, 0.95], task="seq_mnist", metric="accuracy")])
    data[0].task.metrics["accuracy"] = "max"
    table = build_table(data)
    assert table.rows[0].entries["lstm"].solved is None and table.rules == {}
    assert "solved" not in render_markdown(table)


def test_the_adding_rule_is_the_memory_horizons():
    from seqbench.report.horizon import DEFAULT_THRESHOLD
    from seqbench.report.table import registered_task

    rule = registered_task("adding").success
    assert rule.below_baseline_fraction == BASELINE_FRACTION == DEFAULT_THRESHOLD == 0.1
    assert rule.describe() == "mse < 0.1 × baseline"
    assert SuccessRule("accuracy", at_least=0.99).describe() == "accuracy ≥ 0.99"
    with pytest.raises(ValueError, match="one of"):
        SuccessRule("mse")


def test_std_is_the_sample_std_with_median_and_range():
    values = [0.3, 0.1, 0.2, 0.6]
    stats = seed_statistics([*values, float("nan"), None])  # non-finite seeds left out
    assert stats.n == 4 and stats.values == (0.3, 0.1, 0.2, 0.6)
    assert stats.mean == pytest.approx(0.3)
    # sum of squared deviations 0 + 0.04 + 0.01 + 0.09 = 0.14, over n - 1 = 3
    assert stats.std == pytest.approx(math.sqrt(0.14 / 3))
    assert (stats.median, stats.minimum, stats.maximum) == (pytest.approx(0.25), 0.1, 0.6)
    one = seed_statistics([0.5])
    assert (one.mean, one.std, one.ci) == (0.5, None, None)
    assert seed_statistics([]).mean is None


def test_the_bootstrap_interval_is_reproducible_contains_the_mean_and_needs_three_seeds():
    rng = np.random.default_rng(1)
    values = rng.normal(0.5, 0.1, size=8).tolist()
    low, high = bootstrap_ci(values)
    assert low < np.mean(values) < high
    assert bootstrap_ci(values) == (low, high)  # fixed seed: the same table every time
    assert bootstrap_ci(values, seed=7) != (low, high)
    # the percentile interval of 8 seeds is narrower than their range, wider than a std / 4
    assert min(values) < low and high < max(values)
    assert high - low > np.std(values, ddof=1) / 2
    assert bootstrap_ci(values[: MIN_SEEDS_FOR_CI - 1]) is None
    assert bootstrap_ci([0.2, 0.2, 0.2]) == (0.2, 0.2)


@pytest.mark.parametrize(
    ("uncertainty", "decimals"),
    [(0.0123, 3), (0.01, 3), (0.099, 3), (4.6, 1), (130.0, -1), (2.4e-6, 7), (0.0, None)],
)
def test_the_precision_is_the_second_significant_digit_of_the_uncertainty(uncertainty, decimals):
    assert uncertainty_decimals(uncertainty) == decimals


@pytest.mark.parametrize(
    ("value", "decimals", "text"),
    [
        (0.126412, 4, "0.1264"),
        (0.000256, 5, "0.00026"),
        (356.1284, -1, "360"),
        (9.3188, 2, "9.32"),
        (0.0203968, 7, "0.0203968"),  # fixed: the value is not small
        (3.5012e-7, 9, "3.50e-07"),  # scientific: its last digit at 1e-9 all the same
    ],
)
def test_numbers_are_written_to_that_precision(value, decimals, text):
    assert format_rounded(value, decimals) == text


def test_an_entry_is_rounded_by_its_interval():
    table = build_table(typed([record("gru", [0.1231, 0.1412, 0.1307, 0.1350])]))
    entry = table.rows[0].entries["gru"]
    half = (entry.ci[1] - entry.ci[0]) / 2
    assert 0.001 < half < 0.01 and entry.decimals() == 4  # 2nd significant digit at 1e-4
    cell = render_markdown(table).splitlines()[2].split(" | ")[3].removesuffix(" |")
    assert cell.startswith(f"{entry.mean:.4f} ± {entry.std:.4f} [{entry.ci[0]:.4f}, ")
    assert cell.endswith("(n=4, 0/4 solved)")


def test_the_best_is_bold_only_when_significantly_better_than_the_runner_up():
    # Bai et al.'s copy memory T=1000 (results/paper_bai2018): LSTM 0.1264 ± 0.0012 and GRU
    # 0.1264 ± 0.0011 recall accuracy; the LSTM's mean is higher by 3e-5: no mark
    kwargs = {"task": "copy_memory", "length": 1000, "metric": "recall_accuracy"}
    lstm = record("lstm", [0.12522, 0.12645, 0.12765], direction="max", **kwargs)
    gru = record("gru", [0.12529, 0.12643, 0.12751], direction="max", **kwargs)
    rnn = record("simple_rnn", [0.1209, 0.1283, 0.1246], direction="max", **kwargs)
    table = build_table(typed([lstm, gru, rnn]))
    row = table.rows[0]
    comparison = row.comparison()
    assert (comparison.best, comparison.runner_up, comparison.test) == ("lstm", "gru", "welch")
    assert comparison.p > 0.9 and row.best() == set()
    assert "**" not in render_markdown(table).split("\n\n")[0]
    assert "Welch's t-test" in render_markdown(table)
    # the same means three times further apart than their spread: significant, marked
    better = record("lstm", [0.1352, 0.1365, 0.1377], direction="max", **kwargs)
    row = build_table(typed([better, gru, rnn])).rows[0]
    assert row.comparison().p == pytest.approx(
        welch_p([0.1352, 0.1365, 0.1377], [0.12529, 0.12643, 0.12751])
    )
    assert row.comparison().p < 0.05 and row.best() == {"lstm"}


def test_stats_option_chooses_what_an_entry_shows(tmp_path, capsys):
    from test_report import write_runs

    from seqbench.cli.report import main as cli_main

    write_runs(tmp_path)
    cli_main(["table", str(tmp_path), "--metrics", "mse", "--stats", ""])
    line = capsys.readouterr().out.splitlines()[2]
    assert line.endswith("| 0.170 (n=3) | **0.020** (n=2/3, 1 diverged) | 0.20 (n=2) |")
    cli_main(["table", str(tmp_path), "--metrics", "mse", "--stats", "all"])
    out = capsys.readouterr().out
    rnn = out.splitlines()[2].split(" | ")[3]
    assert rnn == (
        "0.170 ± 0.010 [0.160, 0.180] median 0.170 range 0.160–0.180 seeds 0.170, 0.160, 0.180 "
        "(n=3, 0/3 solved)"
    )
    assert "median range min–max each seed's value" in out
    with pytest.raises(SystemExit):
        cli_main(["table", str(tmp_path), "--stats", "mean,iqr"])
    assert "--stats: unknown mean, iqr" in capsys.readouterr().err
    # CSV carries every statistic, whatever --stats says
    csv_text = render_csv(build_table(typed([record("gru", [0.1, 0.2, 0.3])]), statistics=()))
    header, line = csv_text.splitlines()
    assert "median" in header and line.endswith(",0.1;0.2;0.3")


def test_learning_curves_mark_each_seeds_last_value():
    from seqbench.report.plot import seed_ends

    steps = np.array([0.0, 10.0, 20.0])
    values = np.array([[1.0, 2.0, np.nan], [0.5, np.nan, np.nan], [0.2, np.nan, np.nan]])
    x, y = seed_ends(steps, values)
    assert x.tolist() == [20.0, 0.0] and y.tolist() == [0.2, 2.0]  # the third seed has none
