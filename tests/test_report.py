"""Tables and run listing on fixture run records (hand-computed expectations)."""

import csv
import io
import json

import numpy as np
import pytest

from seqbench.cli.report import main as cli_main
from seqbench.records import RunRecord
from seqbench.report.table import (
    build_table,
    load_references,
    render_csv,
    render_latex,
    render_markdown,
)


def record(cell, finals, task="adding", length=100, metric="mse", direction="min", **extra):
    """A run record as the trainer writes it: `finals` are each seed's test values (None marks a
    diverged seed), `vals` its validation values (default: the test values); `config` entries
    are merged into the config."""
    vals = extra.get("vals", finals)

    def value(v):
        return v if v is not None else float("nan")

    per_seed = [
        {
            "seed": s,
            "status": "completed" if v is not None else "diverged",
            "final": {f"test/{metric}": value(v), f"val/{metric}": value(w)},
            "best": {f"test/{metric}": value(v), f"val/{metric}": value(w)},
        }
        for s, (v, w) in enumerate(zip(finals, vals, strict=True))
    ]
    config = {
        "model": {"cell": cell, "n_layers": 1},
        "task": {"length": length},
        "tags": extra.get("tags", []),
    }
    for group, values in extra.get("config", {}).items():
        config[group] = {**config.get(group, {}), **values} if isinstance(values, dict) else values
    return {
        "schema_version": 2,
        "name": f"{task}-{cell}",
        "status": "diverged" if None in finals else "completed",
        "started": extra.get("started", "2026-11-27T10:00:00"),
        "finished": extra.get("finished", "2026-11-27T10:05:00"),
        "path": extra.get("path", f"/runs/{cell}-{task}-{length}"),
        "seeds": list(range(len(finals))),
        "per_seed": per_seed,
        "config": config,
        "task": {
            "name": task,
            "metrics": {metric: direction},
            "primary_metric": metric,
            "baseline": {metric: 1 / 6},
        },
        "model": {
            "cell": cell,
            "param_count": {"simple_rnn": 4965, "lstm": 4918, "gru": 5071}[cell],
        },
        "timing": {"wall_s": 1.0},
    }


def typed(records):
    """Fixture records (run.json's layout) as readers get them: `RunRecord`s."""
    return [RunRecord.from_json(r) for r in records]


RECORDS = [
    record("gru", [0.1, 0.3]),
    record("simple_rnn", [0.17, 0.16, 0.18]),
    record("lstm", [0.01, None, 0.03]),
    record("lstm", [0.6, 0.8], task="copy_memory", length=50, metric="acc", direction="max"),
    record("gru", [0.5, 0.9], task="copy_memory", length=50, metric="acc", direction="max"),
]


def test_means_stds_seed_counts_and_divergence():
    table = build_table(typed(RECORDS))
    assert table.models == ["simple_rnn", "lstm", "gru"]
    adding, copy = table.rows[0], table.rows[1]
    assert (adding.task, adding.metric, copy.task) == (
        "adding (T=100)",
        "mse",
        "copy_memory (T=50)",
    )
    gru = adding.entries["gru"]
    assert gru.mean == pytest.approx(0.2) and gru.std == pytest.approx(np.std([0.1, 0.3], ddof=1))
    lstm = adding.entries["lstm"]
    assert (lstm.n, lstm.n_seeds, lstm.diverged) == (2, 3, 1)
    assert lstm.mean == pytest.approx(0.02) and lstm.values == (0.01, 0.03)
    assert (lstm.solved, gru.solved) == (1, 0)  # mse < 0.1 / 6: 0.01, not 0.03 nor the diverged
    assert copy.entries["gru"].solved is None  # no success rule reads copy memory's "acc"
    assert adding.best() == {"lstm"}  # min; Welch's p = 0.011 against the RNN's 0.17
    assert adding.comparison().runner_up == "simple_rnn"
    assert copy.best() == set()  # 0.7 each: a tie is not significant, nothing is marked
    assert "simple_rnn" not in copy.entries


def test_markdown_marks_the_best_and_shows_seeds():
    text = render_markdown(build_table(typed(RECORDS)))
    lines = text.splitlines()
    assert lines[0] == "| task | metric | baseline | simple_rnn | lstm | gru |"
    # the RNN: CI [0.16, 0.18] (half-width 0.01: two decimals of precision, the 2nd significant
    # digit at 0.001); the LSTM and GRU, two seeds: no CI, rounded by their std
    assert lines[2] == (
        "| adding (T=100) | mse ↓ | 0.1667 | 0.170 ± 0.010 [0.160, 0.180] (n=3, 0/3 solved) "
        "| **0.020 ± 0.014** [n/a] (n=2/3, 1 diverged, 1/3 solved) "
        "| 0.20 ± 0.14 [n/a] (n=2, 0/2 solved) |"
    )
    assert "| copy_memory (T=50) | acc ↑ |" in lines[3] and "–" in lines[3]
    assert lines[4] == "| adding (T=100) | parameters |  | 4,965 | 4,918 | 5,071 |"


def test_tasks_are_ordered_by_family_then_length_as_a_number():
    lengths = [10, 100, 1600, 200]  # as strings, T=1600 would come before T=200
    records = [record("gru", [0.1], length=t) for t in lengths]
    records.append(record("gru", [0.1], length=50, config={"task": {"variant": "arjovsky"}}))
    records.append(record("lstm", [0.1], task="copy_memory", length=5))
    table = build_table(typed(records))
    tasks = [
        "adding (T=10)",
        "adding (T=100)",
        "adding (T=200)",
        "adding (T=1600)",
        "adding (T=50, arjovsky)",
        "copy_memory (T=5)",
    ]
    assert [row.task for row in table.rows] == tasks and list(table.params) == tasks
    lines = render_markdown(table).splitlines()
    assert [line.split(" | ")[0] for line in lines[2:8]] == [f"| {t}" for t in tasks]
    assert [line.split(" | ")[0] for line in lines[8:14]] == [f"| {t}" for t in tasks]
    assert all(" | parameters | " in line for line in lines[8:14])
    rows = list(csv.DictReader(io.StringIO(render_csv(table))))
    assert list(dict.fromkeys(r["task"] for r in rows)) == tasks


def test_direction_max_picks_the_largest():
    records = [
        record("lstm", [0.9, 0.91, 0.92], metric="acc", direction="max"),
        record("gru", [0.8, 0.81, 0.79], metric="acc", direction="max"),
    ]
    assert build_table(typed(records)).rows[0].best() == {"lstm"}
    single = [record("lstm", [0.9], metric="acc", direction="max"), record("gru", [0.8])]
    assert build_table(typed(single)).rows[0].best() == set()  # one seed each: no test, no mark


def test_all_seeds_diverged_is_shown_not_dropped():
    text = render_markdown(build_table(typed([record("simple_rnn", [None, None])])))
    assert "diverged (n=0/2, 2 diverged, 0/2 solved)" in text


def test_model_selection_and_order_and_metric_filter():
    table = build_table(typed(RECORDS), models=["gru", "lstm"], metrics=["acc"])
    assert table.models == ["gru", "lstm"]
    assert [r.metric for r in table.rows] == ["acc"]


def test_a_rerun_of_the_same_configuration_counts_once_the_latest(capsys):
    older = record("gru", [0.5], finished="2026-11-27T09:00:00", path="/a")
    newer = record("gru", [0.4], finished="2026-11-27T11:00:00", path="/b", config={"seeds": [7]})
    table = build_table(typed([newer, older]))
    assert table.rows[0].entries["gru"].mean == pytest.approx(0.4)
    assert table.selections == [] and "chose" not in capsys.readouterr().err


def test_the_configuration_is_chosen_on_validation_and_its_test_value_reported():
    # lr=0.1 has the better test value but the worse validation value: lr=0.01 must be chosen
    high = record("lstm", [0.01, 0.01], vals=[0.05, 0.07], config={"optimizer": {"lr": 0.1}})
    low = record("lstm", [0.03, 0.05], vals=[0.02, 0.02], config={"optimizer": {"lr": 0.01}})
    bad = record("lstm", [None, None], config={"optimizer": {"lr": 1.0}}, finished="2026-12-01")
    table = build_table(typed([high, low, bad]))
    entry = table.rows[0].entries["lstm"]
    assert entry.mean == pytest.approx(0.04) and entry.n == 2
    (selection,) = table.selections
    assert selection.differs == {"optimizer.lr": 0.01} and selection.n_configs == 3
    assert selection.score == pytest.approx(0.02)
    note = (
        "adding (T=100) / lstm: optimizer.lr=0.01 (best mean val/mse 0.0200, of 3 configurations)"
    )
    assert f"Chosen on validation: {note}." in render_markdown(table)
    assert f"% Chosen on validation: {note}." in render_latex(table)


def test_pooled_keys_make_runs_of_one_configuration_its_seeds():
    # one run per data split (Walker et al.'s protocol): pooled, the five are one entry of 5 seeds
    splits = [
        record(
            "gru",
            [0.1 * (k + 1)],
            vals=[0.2],
            config={"task": {"split_seed": seed}, "optimizer": {"lr": 0.01}},
            path=f"/split{k}",
        )
        for k, seed in enumerate((2345, 3456, 4567, 5678, 6789))
    ]
    other_lr = record(
        "gru", [0.9], vals=[0.9], config={"task": {"split_seed": 2345}, "optimizer": {"lr": 1.0}}
    )
    unpooled = build_table(typed([*splits, other_lr]))
    assert unpooled.rows[0].entries["gru"].n == 1  # one split chosen on validation
    pooled = build_table(typed([*splits, other_lr]), pool=("task.split_seed",))
    entry = pooled.rows[0].entries["gru"]
    assert entry.n == 5 and entry.mean == pytest.approx(0.3)
    (selection,) = pooled.selections
    assert selection.n_configs == 2 and selection.differs == {"optimizer.lr": 0.01}


def test_selection_respects_a_metric_to_maximise_and_the_final_evaluation():
    def acc(test, val, lr, best_val=None):
        r = record("gru", test, metric="acc", direction="max", vals=val, config={"o": {"lr": lr}})
        if best_val is not None:  # a different validation value at the best evaluation
            for seed, v in zip(r["per_seed"], best_val, strict=True):
                seed["best"]["val/acc"] = v
        return r

    a = acc([0.6], [0.9], 1, best_val=[0.5])
    b = acc([0.8], [0.7], 2, best_val=[0.95])
    assert build_table(typed([a, b]), which="final").rows[0].entries["gru"].mean == pytest.approx(
        0.6
    )
    assert build_table(typed([a, b]), which="best").rows[0].entries["gru"].mean == pytest.approx(
        0.8
    )


def sized(cell, finals, count, budget, **extra):
    """A fixture record of a model with `count` parameters sized to `budget` (None: no budget)."""
    r = record(
        cell, finals, config={"model": {"budget": budget}, **extra.pop("config", {})}, **extra
    )
    r["model"].update(param_count=count, param_budget=budget)
    return r


def test_a_cell_chosen_among_different_sizes_is_warned_about_once_and_marked(capsys):
    small = sized("lstm", [0.05], 4918, 5000, vals=[0.05])
    large = sized("lstm", [0.01], 9836, 10000, vals=[0.01])
    gru = [
        sized("gru", [0.2], 5071, 5000),
        sized("gru", [0.3], 5071, 5000, config={"o": {"lr": 1}}),
    ]
    table = build_table(typed([small, large, *gru]))
    err = capsys.readouterr().err.splitlines()
    warning = (
        "seqbench: warning: row 'adding (T=100)', column 'lstm' pools runs of different sizes, "
        "parameter counts 4,918, 9,836 (budgets 5,000, 10,000); its entry is the configuration "
        "chosen on validation"
    )
    assert err == [warning]  # once, and not for the GRU, whose two configurations are one size
    markdown = render_markdown(table).splitlines()
    assert markdown[2].endswith(
        "| 0.0100 ± n/a [n/a] (n=1, 1/1 solved) † | 0.2000 ± n/a [n/a] (n=1, 0/1 solved) |"
    )
    note = "adding (T=100) / lstm, parameter counts 4,918, 9,836 (budgets 5,000, 10,000)."
    assert any(line.startswith("† ") and line.rstrip().endswith(note) for line in markdown)
    latex = render_latex(table)
    assert latex.count(r"$^\dagger$") == 1 and r"(n=1, 1/1 solved)}$^\dagger$ & " in latex
    assert any(line.startswith("% † ") and line.endswith(note) for line in latex.splitlines())


@pytest.mark.parametrize(
    ("counts", "budgets", "mixed"),
    [
        ((5000, 5099), (None, None), False),  # 1.98% apart: one size within the tolerance
        ((5000, 5101), (None, None), True),  # 2.02% apart
        ((5000, 5000), (5000, 5001), True),  # two budgets, however close the counts
        ((5000, 5050), (5000, None), False),  # a budgeted and an unbudgeted run of one size
    ],
)
def test_sizes_differ_beyond_the_budget_tolerance_or_by_budget(counts, budgets, mixed, capsys):
    records = [
        sized("gru", [0.1], count, budget, config={"o": {"lr": i}})
        for i, (count, budget) in enumerate(zip(counts, budgets, strict=True))
    ]
    table = build_table(typed(records))
    assert bool(table.mixed_sizes()) == mixed
    assert ("pools runs of different sizes" in capsys.readouterr().err) == mixed
    assert ("†" in render_markdown(table)) == mixed


def test_reference_columns(tmp_path):
    path = tmp_path / "ref.yaml"
    path.write_text(
        "source: Bai et al. 2018, Table 1\n"
        "columns:\n"
        "  LSTM [Bai]:\n"
        "    adding (T=100): {mse: 0.001}\n"
        "    adding (T=600): {mse: 0.164}\n"
        "  TCN [Bai]:\n"
        "    adding (T=600): {mse: 5.8e-5}\n"
    )
    table = build_table(typed(RECORDS), references=load_references(path))
    assert table.references == ["LSTM [Bai]"]  # a column matching no row is left out
    adding = table.rows[0]
    assert adding.references == {"LSTM [Bai]": 0.001}
    # the LSTM's two seeds (0.01, 0.03) against the published 0.001: one-sample t-test, p = 0.31
    comparison = adding.comparison()
    assert (comparison.best, comparison.runner_up, comparison.test) == (
        "LSTM [Bai]",
        "lstm",
        "one-sample",
    )
    assert comparison.p == pytest.approx(0.308, abs=1e-3) and adding.best() == set()
    text = render_markdown(table)
    assert text.splitlines()[0].endswith("| gru | LSTM [Bai] |")
    assert "| 0.0010 |" in text and "Reference columns: Bai et al. 2018, Table 1." in text
    rows = list(csv.DictReader(io.StringIO(render_csv(table))))
    ref = [r for r in rows if r["kind"] == "reference"]
    assert ref == [dict(ref[0], column="LSTM [Bai]", mean="0.001", best="0")]
    assert float(ref[0]["p_vs_runner_up"]) == pytest.approx(comparison.p)
    # a published number far from three tight seeds is marked
    tight = [record("gru", [0.101, 0.1, 0.099])]
    marked = build_table(typed(tight), references=load_references(path)).rows[0]
    assert marked.best() == {"LSTM [Bai]"}
    assert "**0.0010**" in render_markdown(
        build_table(typed(tight), references=load_references(path))
    )


@pytest.mark.parametrize("content", ["columns: [1, 2]", "{unclosed", "columns: {a: {t: 3}}"])
def test_bad_reference_file(tmp_path, content):
    path = tmp_path / "ref.yaml"
    path.write_text(content)
    with pytest.raises(ValueError, match="reference file"):
        load_references(path)


def test_latex_is_booktabs_with_escapes_and_bold_best():
    text = render_latex(build_table(typed(RECORDS)))
    lines = text.splitlines()
    assert lines[0] == r"\begin{tabular}{llrrrr}" and lines[1] == r"\toprule"
    assert lines[2] == r"Task & Metric & Baseline & simple\_rnn & lstm & gru \\"
    assert r"\mathbf{0.020 \pm 0.014}" in text
    assert r"copy\_memory (T=50) & acc $\uparrow$" in text
    end = lines.index(r"\end{tabular}")
    assert lines[end - 1] == r"\bottomrule"
    assert all(line.startswith("% ") for line in lines[end + 1 :])
    # the seed counts and the parameter rows, as in the Markdown table
    assert (
        r"\mathbf{0.020 \pm 0.014}$ {\footnotesize [n/a] (n=2/3, 1 diverged, 1/3 solved)}" in text
    )
    assert r"$0.170 \pm 0.010$ {\footnotesize [0.160, 0.180] (n=3, 0/3 solved)}" in text
    assert r"adding (T=100) & parameters &  & 4,965 & 4,918 & 5,071 \\" in lines


def test_csv_is_tidy_and_complete():
    rows = list(csv.DictReader(io.StringIO(render_csv(build_table(typed(RECORDS))))))
    assert len(rows) == 5
    lstm = next(r for r in rows if r["column"] == "lstm" and r["metric"] == "mse")
    assert (lstm["n"], lstm["n_seeds"], lstm["diverged"], lstm["best"]) == ("2", "3", "1", "1")
    assert (lstm["solved"], lstm["ci_low"], lstm["values"]) == ("1", "", "0.01;0.03")
    assert float(lstm["mean"]) == pytest.approx(0.02)
    assert float(lstm["std"]) == pytest.approx(np.std([0.01, 0.03], ddof=1))
    assert float(lstm["p_vs_runner_up"]) == pytest.approx(0.011, abs=1e-3)
    rnn = next(r for r in rows if r["column"] == "simple_rnn")
    assert (float(rnn["median"]), float(rnn["min"]), float(rnn["max"])) == (0.17, 0.16, 0.18)
    assert float(rnn["ci_low"]) == pytest.approx(0.16) and float(rnn["ci_high"]) == pytest.approx(
        0.18
    )
    copy = next(r for r in rows if r["column"] == "gru" and r["metric"] == "acc")
    assert (copy["solved"], copy["best"], copy["p_vs_runner_up"]) == ("", "0", "1.0")  # a tie


def write_runs(root):
    for i, r in enumerate(RECORDS):
        folder = root / str(i)
        folder.mkdir(parents=True)
        r = dict(r, tags=None)
        r["config"] = dict(r["config"], tags=["paper"] if i % 2 else [])
        r["started"] = f"2026-11-{20 + i}T10:00:00"
        (folder / "run.json").write_text(json.dumps(r))


def test_runs_filters(tmp_path, capsys):
    write_runs(tmp_path)
    cli_main(["runs", str(tmp_path), "--where", "task.length=50"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all("copy_memory (T=50)" in line for line in lines)
    cli_main(["runs", str(tmp_path), "--model", "lstm", "--tag", "paper"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "copy_memory" in lines[0] and lines[0].endswith("/3")
    cli_main(["runs", str(tmp_path), "--status", "diverged", "--since", "2026-11-22"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "lstm" in lines[0] and "acc" not in lines[0]
    cli_main(["runs", str(tmp_path), "--until", "2026-11-20", "--metrics", "mse"])
    assert "test/mse=0.2000±0.1414" in capsys.readouterr().out
    cli_main(["runs", str(tmp_path), "--model", "gru", "--task", "adding"])
    assert "val/mse=0.2000±0.1414 test/mse=0.2000±0.1414" in capsys.readouterr().out


def test_table_cli_formats_and_errors(tmp_path, capsys):
    write_runs(tmp_path / "runs")
    out = tmp_path / "t" / "table.tex"
    cli_main(["table", str(tmp_path / "runs"), "--format", "latex", "--out", str(out)])
    assert out.read_text().startswith(r"\begin{tabular}")
    with pytest.raises(SystemExit, match="no run matches"):
        cli_main(["table", str(tmp_path / "runs"), "--where", "task.length=7"])
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        cli_main(["runs", str(tmp_path / "runs"), "--where", "nonsense"])
    with pytest.raises(SystemExit, match="no such file"):
        cli_main(["table", str(tmp_path / "missing")])


def with_curves(r, values):
    """Attach eval curves (E, S) to a fixture record; NaN marks a diverged seed's later steps."""
    values = np.asarray(values, dtype=float)
    metric = r["task"]["primary_metric"]
    return dict(
        r,
        curves={
            "eval_steps": list(range(0, 10 * len(values), 10)),
            "eval": {f"test/{metric}": values.tolist(), f"val/{metric}": (values + 1).tolist()},
        },
    )


def test_curve_mean_and_band_skip_diverged_seeds():
    from seqbench.report.plot import curve

    r = with_curves(record("lstm", [0.1, None]), [[1.0, 3.0], [0.5, np.nan], [np.nan, np.nan]])
    r = RunRecord.from_json(r)
    steps, mean, low, high = curve(r, "mse")
    np.testing.assert_allclose(curve(r, "val/mse")[1][:2], [3.0, 1.5])
    assert steps.tolist() == [0, 10, 20]
    np.testing.assert_allclose(mean[:2], [2.0, 0.5])
    np.testing.assert_allclose(low[:2], [1.0, 0.5])
    np.testing.assert_allclose(high[:2], [3.0, 0.5])
    assert np.isnan(mean[2]) and np.isnan(low[2])


def test_plot_writes_png_and_svg(tmp_path, capsys):
    root = tmp_path / "runs"
    curves = {
        "simple_rnn": [[1.0, 1.2], [0.17, 0.16], [0.17, 0.17]],
        "gru": [[1.0, 0.9], [0.01, 0.02], [0.001, 0.002]],
        "lstm": [[0.9, 1.0], [0.05, np.nan], [0.01, np.nan]],
    }
    for i, (cell, values) in enumerate(curves.items()):
        folder = root / str(i)
        folder.mkdir(parents=True)
        r = with_curves(record(cell, [v for v in values[-1]]), values)
        (folder / "run.json").write_text(json.dumps(r))
    cli_main(["plot", str(root), "--out", str(tmp_path / "fig" / "curves")])
    written = capsys.readouterr().out.split()
    assert written == [str(tmp_path / "fig" / "curves.png"), str(tmp_path / "fig" / "curves.svg")]
    png = (tmp_path / "fig" / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    svg = (tmp_path / "fig" / "curves.svg").read_text()
    assert "<svg" in svg and "adding (T=100)" in svg and "baseline" in svg
    with pytest.raises(SystemExit, match="no metric 'test/acc'"):
        cli_main(["plot", str(root), "--metric", "acc", "--out", str(tmp_path / "x")])
    assert "GRU (n=2)" in svg and "test MSE" in svg  # display names and units
    cli_main(["plot", str(root), "--format", "pdf", "--out", str(tmp_path / "fig" / "paper")])
    assert (tmp_path / "fig" / "paper.pdf").read_bytes().startswith(b"%PDF")
    with pytest.raises(SystemExit, match="unknown eps"):
        cli_main(["plot", str(root), "--format", "eps"])


def test_runs_show_the_config_keys_that_tell_them_apart(tmp_path, capsys):
    for i, lr in enumerate([0.1, 0.01]):
        folder = tmp_path / str(i)
        folder.mkdir()
        r = record("gru", [0.2], config={"optimizer": {"lr": lr}, "logger": {"name": str(i)}})
        (folder / "run.json").write_text(json.dumps(r))
    cli_main(["runs", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert ["optimizer.lr=0.1  " in lines[0], "optimizer.lr=0.01  " in lines[1]] == [True, True]
    assert not any("logger" in line for line in lines)  # logging does not change a result


def test_figures_name_models_and_metrics_for_readers():
    from seqbench.report.plot import display_metric, figure_metric
    from seqbench.report.table import display_model

    assert [display_model(m) for m in ("lstm", "bi-gru ×2", "minlstm (unnormalised)")] == [
        "LSTM",
        "bi-GRU ×2",
        "minLSTM (unnormalised)",
    ]
    assert display_model("simple_rnn (relu)") == "RNN (relu)" and display_model("irnn") == "irnn"
    assert display_metric("cross_entropy") == "test cross-entropy (nats)"
    assert display_metric("val/bpc") == "val bits per character"
    copy = record("gru", [0.1], task="copy_memory", metric="cross_entropy")
    copy["task"]["metrics"]["recall_accuracy"] = "max"
    # a record from before tasks named their figure metric: the registered copy_memory's
    assert figure_metric(RunRecord.from_json(copy)) == "recall_accuracy"
    copy["task"]["figure_metric"] = "cross_entropy"
    assert figure_metric(RunRecord.from_json(copy)) == "cross_entropy"
    assert figure_metric(RunRecord.from_json(record("gru", [0.1]))) == "mse"
    # a task registered after the data sets (whose classes name no task) and one not registered
    parity = record("gru", [0.9], task="parity", metric="accuracy", direction="max")
    assert figure_metric(RunRecord.from_json(parity)) == "accuracy"
    assert figure_metric(RunRecord.from_json(record("gru", [0.1], task="nosuch"))) == "mse"


def test_a_figure_of_several_tasks_has_one_legend(tmp_path):
    from seqbench.report.plot import plot_curves

    runs = [
        with_curves(record(cell, [0.1, 0.2], task=task, path=f"/r/{cell}-{task}"), [[1.0, 1.0]])
        for cell in ("lstm", "gru")
        for task in ("adding", "copy_memory")
    ]
    (svg,) = plot_curves(typed(runs), tmp_path / "curves", formats=("svg",))
    text = svg.read_text()
    assert text.count("LSTM (n=2)") == 1 and text.count("GRU (n=2)") == 1


def test_load_runs_gives_one_row_per_run_and_seed(tmp_path):
    pytest.importorskip("pandas")  # not a dependency: the data extra brings it
    from seqbench.report.frame import ID_COLUMNS, load_runs

    write_runs(tmp_path)
    runs = load_runs(tmp_path)  # every fixture record is finished: completed or diverged
    assert len(runs) == sum(len(r["per_seed"]) for r in RECORDS)
    assert list(runs.columns[: len(ID_COLUMNS)]) == list(ID_COLUMNS)
    lstm = runs[(runs.model == "lstm") & (runs.task == "adding (T=100)")]
    assert lstm.seed.tolist() == [0, 1, 2] and lstm["test/mse"].isna().tolist() == [
        False,
        True,
        False,
    ]
    assert lstm["config.model.cell"].tolist() == ["lstm"] * 3
    assert load_runs(tmp_path / "nothing-here").empty
    with pytest.raises(ValueError, match="choose best or final"):
        load_runs(tmp_path, which="last")
