"""The length-generalisation and state-size figures: the numbers they draw, read from fixture
records, and the CLI that writes them."""

import json

import numpy as np
import pytest
from test_report import record

from seqbench.cli.report import main as cli_main
from seqbench.records import RunRecord
from seqbench.report.generalisation import (
    baseline_at,
    evaluation_lengths,
    generalisation_points,
)
from seqbench.report.state_size import state_size_points


def accuracy_record(cell, per_length, train_length=40, state_size=None, **extra):
    """A parity-like record: `per_length` {length: each seed's test accuracy at its best step},
    the training length's values under "test/accuracy", the others under "test@L/accuracy"."""
    seeds = len(per_length[train_length])
    r = record(cell, per_length[train_length], task="parity", length=train_length,
               metric="accuracy", direction="max", **extra)  # fmt: skip
    for column, seed in enumerate(r["per_seed"]):
        for length, values in per_length.items():
            if length != train_length and values[column] is not None:
                seed["best"][f"test@{length}/accuracy"] = values[column]
    r["task"]["length"] = train_length
    r["task"]["baseline"] = {"accuracy": 0.5}
    others = [n for n in per_length if n != train_length]
    r["task"]["eval_lengths"] = others
    r["task"]["eval_baselines"] = {str(n): {"accuracy": 0.5} for n in others}
    if state_size is not None:
        r["model"]["state_size"] = state_size
    assert len(r["per_seed"]) == seeds
    return r


def test_generalisation_points_put_the_training_length_first_in_length_order():
    r = RunRecord.from_json(
        accuracy_record("gru", {40: [1.0, 0.98], 256: [0.5, None], 64: [0.9, 0.7]})
    )
    assert evaluation_lengths(r) == [64, 256]
    lengths, values = generalisation_points(r, "accuracy")
    assert lengths.tolist() == [40, 64, 256]
    np.testing.assert_allclose(values[:2], [[1.0, 0.98], [0.9, 0.7]])
    assert values[2, 0] == 0.5 and np.isnan(values[2, 1])
    assert baseline_at(r, "accuracy", 40) == baseline_at(r, "accuracy", 256) == 0.5
    assert baseline_at(r, "accuracy", 999) is None


def write(root, records):
    for i, r in enumerate(records):
        (root / str(i)).mkdir(parents=True)
        (root / str(i) / "run.json").write_text(json.dumps(r))


def test_generalisation_cli_draws_a_line_per_model_and_refuses_runs_without_lengths(
    tmp_path, capsys
):
    root = tmp_path / "runs"
    write(
        root,
        [
            accuracy_record("gru", {40: [1.0, 0.98], 64: [0.9, 0.7], 128: [0.6, 0.5]}),
            accuracy_record("lstm", {40: [1.0, 1.0], 64: [1.0, 0.99], 128: [0.98, 0.9]}),
        ],
    )
    out = tmp_path / "fig" / "gen"
    cli_main(["plot", str(root), "--generalisation", "--out", str(out)])
    assert capsys.readouterr().out.split() == [f"{out}.png", f"{out}.svg"]
    svg = out.with_suffix(".svg").read_text()
    assert "parity (T=40)" in svg and "evaluation length" in svg and "baseline" in svg
    plain = tmp_path / "plain"
    write(plain, [record("gru", [0.1, 0.2])])
    with pytest.raises(SystemExit, match=r"task\.eval_lengths"):
        cli_main(["plot", str(plain), "--generalisation", "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="pick one figure"):
        cli_main(["plot", str(root), "--generalisation", "--state-size"])
    with pytest.raises(SystemExit, match="bare name"):
        cli_main(["plot", str(root), "--generalisation", "--metric", "val/accuracy"])


def test_state_size_points_are_every_configuration_in_state_order(tmp_path, capsys):
    records = [
        accuracy_record("gru", {40: [0.9, 0.7]}, state_size=64, path="/r/a"),
        accuracy_record("gru", {40: [1.0, 0.8]}, state_size=16, path="/r/b"),
        accuracy_record("lstm", {40: [0.6, 0.5]}, state_size=32, path="/r/c"),
        accuracy_record("lstm", {40: [0.6, 0.5]}, path="/r/d"),  # no state size recorded
    ]
    points = state_size_points([RunRecord.from_json(r) for r in records])
    assert list(points) == ["parity (T=40)"]
    gru = points["parity (T=40)"]["gru"]
    assert [p[0] for p in gru] == [16, 64]
    np.testing.assert_allclose(gru[0][1:], [0.9, 0.8, 1.0])
    np.testing.assert_allclose(gru[1][1:], [0.8, 0.7, 0.9])
    assert [p[0] for p in points["parity (T=40)"]["lstm"]] == [32]
    root = tmp_path / "runs"
    write(root, records)
    out = tmp_path / "state"
    cli_main(["plot", str(root), "--state-size", "--out", str(out), "--format", "svg"])
    captured = capsys.readouterr()
    assert captured.out.split() == [f"{out}.svg"]
    assert "recurrent state (floats per example)" in out.with_suffix(".svg").read_text()
    assert "left out: lstm" in captured.err
