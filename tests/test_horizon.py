"""Memory-horizon report on fixture run records (ratios to the baseline chosen by hand)."""

import json

import pytest
from test_report import record, typed

from seqbench.cli.report import main as cli_main
from seqbench.records import RunRecord
from seqbench.report.horizon import build_horizon, render_markdown

BASELINE = 1 / 6  # the fixture's adding baseline
BUDGET = {"model": {"param_budget": 5000}, "trainer": {"steps": 3000, "batch_size": 32}}


def run(cell, length, ratios, vals=None, lr=3e-3, config=None, **extra):
    """A horizon-sweep record whose seeds' test mse are `ratios` × the baseline (None: a diverged
    seed); `vals`: validation ratios (default: the test ones)."""

    def scale(values):
        return [None if r is None else r * BASELINE for r in values]

    config = {**BUDGET, "optimizer": {"lr": lr}, **(config or {})}
    return record(
        cell,
        scale(ratios),
        length=length,
        vals=scale(vals if vals is not None else ratios),
        config=config,
        path=f"/runs/{cell}-{length}-{lr}",
        **extra,
    )


RATIOS = {  # cell -> length -> per-seed test mse / baseline
    "simple_rnn": {25: [0.4, 0.6], 50: [0.99, 0.99], 100: [1.0, 1.0], 200: [1.0, 1.02]},
    "lstm": {25: [0.01, 0.01], 50: [0.02, 0.02], 100: [0.04, 0.06], 200: [0.3, None]},
    "gru": {25: [0.001, 0.003], 50: [0.1, 0.3], 100: [0.05, 0.05], 200: [0.4, 0.6]},
}
RECORDS = [run(c, t, r) for c, by_length in RATIOS.items() for t, r in by_length.items()]


def test_ratios_per_seed_and_mean_over_the_seeds_with_a_value():
    (family,) = build_horizon(typed(RECORDS)).families
    assert family.family == "adding" and family.metric == "test/mse"
    assert family.lengths == [25, 50, 100, 200]
    assert family.models == ["simple_rnn", "lstm", "gru"]
    gru = family.points[("gru", 50)]
    assert gru.ratios == pytest.approx((0.1, 0.3)) and gru.ratio == pytest.approx(0.2)
    assert gru.baseline == pytest.approx(BASELINE)
    lstm = family.points[("lstm", 200)]  # one seed diverged: the mean is the other's
    assert lstm.ratios == pytest.approx((0.3,)) and lstm.ratio == pytest.approx(0.3)
    assert (lstm.entry.n, lstm.entry.n_seeds, lstm.entry.diverged) == (1, 2, 1)


def test_horizon_per_cell_none_when_nothing_solved_and_the_monotone_flag():
    horizons = build_horizon(typed(RECORDS)).families[0].horizons
    assert horizons["simple_rnn"].horizon is None and horizons["simple_rnn"].monotone
    assert horizons["lstm"].horizon == 100 and horizons["lstm"].monotone
    assert horizons["gru"].horizon == 100 and horizons["gru"].fails_below == (50,)
    # a looser threshold: the plain RNN's T=25 (0.5) is solved, gru's T=50 (0.2) too
    loose = build_horizon(typed(RECORDS), threshold=0.6).families[0].horizons
    assert loose["simple_rnn"].horizon == 25
    assert loose["gru"].horizon == 200 and loose["gru"].monotone


def test_markdown_table_and_notes():
    lines = render_markdown(build_horizon(typed(RECORDS))).splitlines()
    assert lines[0] == "| adding | T=25 | T=50 | T=100 | T=200 | longest T solved (ratio < 0.1) |"
    assert lines[1] == "|---|---|---|---|---|---|"
    assert lines[2] == "| simple_rnn | 0.500 | 0.990 | 1.00 | 1.01 | none |"
    assert lines[3] == (
        "| lstm | **0.0100** | **0.0200** | **0.0500** | 0.300 (n=1/2, 1 diverged) | 100 |"
    )
    assert lines[4] == "| gru | **0.00200** | 0.200 | **0.0500** | 0.500 | 100 (not monotone) |"
    notes = "\n".join(lines[6:])
    assert "test mse / trivial baseline at each seed's best validation evaluation" in notes
    assert "bold: solved (ratio < 0.1)" in notes
    assert "Every run: 5,000-parameter budget, 3,000 steps of batch 32." in notes
    assert "adding: baseline mse 0.1667 at every T." in notes
    assert "adding / gru: not monotone: fails at T=50 but solves T=100." in notes


def test_which_final_reads_each_seeds_last_evaluation():
    records = [run("lstm", 25, [0.01]), run("lstm", 50, [0.02])]
    for r in records:
        r["per_seed"][0]["final"]["test/mse"] = 0.5 * BASELINE
    best = build_horizon(typed(records)).families[0]
    final = build_horizon(typed(records), which="final").families[0]
    assert best.horizons["lstm"].horizon == 50 and final.horizons["lstm"].horizon is None
    assert final.points[("lstm", 25)].ratio == pytest.approx(0.5)
    assert "at each seed's last evaluation (which=final)" in render_markdown(
        build_horizon(typed(records), which="final")
    )


def test_the_configuration_is_chosen_on_validation_at_each_length():
    # at T=50, lr=0.1 has the better test value but the worse validation value: lr=0.01 wins
    high = run("lstm", 50, [0.01, 0.01], vals=[0.5, 0.7], lr=0.1)
    low = run("lstm", 50, [0.2, 0.4], vals=[0.02, 0.04], lr=0.01)
    records = [run("lstm", 25, [0.01, 0.01], lr=0.01), high, low]
    result = build_horizon(typed(records))
    family = result.families[0]
    assert family.points[("lstm", 50)].ratio == pytest.approx(0.3)
    assert family.horizons["lstm"].horizon == 25
    (selection,) = result.selections
    assert selection.differs == {"optimizer.lr": 0.01} and selection.n_configs == 2
    assert "Chosen on validation: adding (T=50) / lstm: optimizer.lr=0.01" in render_markdown(
        result
    )


def test_task_families_without_the_length():
    def family(r):
        return RunRecord.from_json(r).task.family

    assert family(run("gru", 100, [0.1])) == "adding"
    variant = run("gru", 100, [0.1], config={"task": {"length": 100, "variant": "arjovsky"}})
    assert family(variant) == "adding (arjovsky)"
    copy = record("gru", [0.1], task="copy_memory", length=50)
    copy["task"]["label"] = "copy_memory (T=50, n=5)"
    assert family(copy) == "copy_memory (n=5)"


def test_records_that_cannot_make_a_horizon():
    acc = [run("gru", t, [0.9]) for t in (25, 50)]
    for r in acc:
        r["task"]["metrics"] = {"mse": "min", "acc": "max"}
    with pytest.raises(ValueError, match="acc is a metric to maximise"):
        build_horizon(typed(acc), metric="acc")
    with pytest.raises(ValueError, match="has no metric 'nll'"):
        build_horizon(typed(acc), metric="nll")
    no_baseline = [run("gru", t, [0.1]) for t in (25, 50)]
    no_baseline[1]["task"]["baseline"] = {}
    with pytest.raises(ValueError, match="no positive trivial baseline"):
        build_horizon(typed(no_baseline))
    with pytest.raises(ValueError, match=r"one length only \(T=25\)"):
        build_horizon(typed([run("gru", 25, [0.1]), run("lstm", 25, [0.1])]))
    for threshold in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\]"):
            build_horizon(typed(RECORDS), threshold=threshold)
    data_set = record("gru", [0.1], task="seq_mnist")
    data_set["config"]["task"] = {"mode": "pixel"}
    data_set["task"]["label"] = "seq_mnist (pixel)"
    with pytest.raises(ValueError, match=r"no integer task\.length"):
        build_horizon(typed([data_set, *RECORDS]))
    running = [dict(r, status="running") for r in RECORDS]
    with pytest.raises(ValueError, match="no completed or diverged run"):
        build_horizon(typed(running))


def write_runs(root, records):
    for i, r in enumerate(records):
        folder = root / str(i)
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps(r))


def test_cli_prints_the_table_and_writes_md_png_svg(tmp_path, capsys):
    write_runs(tmp_path / "sweep", RECORDS)
    prefix = tmp_path / "report" / "horizon"
    cli_main(["horizon", str(tmp_path / "sweep"), "--out", str(prefix)])
    captured = capsys.readouterr()
    assert captured.out.startswith("| adding | T=25 | T=50 | T=100 | T=200 |")
    assert (tmp_path / "report" / "horizon.md").read_text() == captured.out
    png = (tmp_path / "report" / "horizon.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    svg = (tmp_path / "report" / "horizon.svg").read_text()
    assert "<svg" in svg and "threshold 0.1" in svg and "longest solved: T=100" in svg
    assert "horizon.md" in captured.err and "horizon.svg" in captured.err
    cli_main(["horizon", str(tmp_path / "sweep"), "--model", "lstm", "--threshold", "0.01"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("| longest T solved (ratio < 0.01) |")
    assert lines[2].startswith("| lstm |") and lines[3] == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--where", "task.length=7"], "no run matches the filters"),
        (["--where", "task.length=25"], "runs at one length only"),
        (["--threshold", "0"], r"--threshold must be in \(0, 1\], got 0"),
        (["--threshold", "1.5"], r"--threshold must be in \(0, 1\]"),
        (
            ["--metrics", "acc"],
            r"--metrics: no metric 'acc' in the selected runs \(they have mse\)",
        ),
        (["--metrics", "mse,acc"], "reads one metric"),
        (["--out", "FILE/horizon"], "cannot write"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_status_2(tmp_path, capsys, args, message):
    write_runs(tmp_path / "sweep", RECORDS)
    (tmp_path / "FILE").write_text("not a folder")
    args = [str(tmp_path / a) if a.startswith("FILE") else a for a in args]
    with pytest.raises(SystemExit, match=message) as raised:
        cli_main(["horizon", str(tmp_path / "sweep"), *args])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("seqbench: error: ") and err.count("\n") == 1


def test_cli_without_records_or_with_a_metric_to_maximise(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no run records") as raised:
        cli_main(["horizon", str(tmp_path / "empty")])
    assert raised.value.code == 2
    acc = [record(c, [0.9], task="copy_memory", length=t, metric="acc", direction="max")
           for c in ("lstm", "gru") for t in (25, 50)]  # fmt: skip
    write_runs(tmp_path / "acc", acc)
    with pytest.raises(SystemExit, match="acc is a metric to maximise"):
        cli_main(["horizon", str(tmp_path / "acc")])
    assert capsys.readouterr().err.count("\n") == 2


def test_a_cell_solving_the_longest_length_it_was_run_at_may_reach_beyond():
    partial = [
        r
        for r in RECORDS
        if not (r["name"].endswith("lstm") and r["config"]["task"]["length"] > 50)
    ]
    notes = render_markdown(build_horizon(typed(partial))).split("\n\n", 1)[1]
    assert "adding / lstm: no run at T=100, T=200." in notes
    assert "adding / lstm solves T=50, the longest length it was run at" in notes
    assert "adding / gru solves" not in notes
