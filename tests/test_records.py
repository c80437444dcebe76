"""Run records: atomic writes, per-seed summaries, aggregation, and the Markdown table."""

import json

import numpy as np
import pytest

from seqbench import records


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "run.json"
    records.write_json_atomic(path, {"a": 1})
    records.write_json_atomic(path, {"a": 2, "nan": float("nan"), "arr": np.arange(3)})
    assert json.loads(path.read_text()) == {"a": 2, "nan": None, "arr": [0, 1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_a_failed_write_keeps_the_previous_record(tmp_path):
    path = tmp_path / "run.json"
    records.write_json_atomic(path, {"status": "running"})
    with pytest.raises(TypeError):
        records.write_json_atomic(path, {"status": "completed", "bad": object()})
    assert json.loads(path.read_text()) == {"status": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_seed_summaries_pick_best_by_direction_and_mark_divergence():
    eval_steps = np.array([0, 10, 20])
    metrics = {
        "ce": np.array([[2.0, 2.0], [0.5, 1.0], [0.7, np.nan]]),
        "acc": np.array([[0.1, 0.1], [0.9, 0.5], [0.8, np.nan]]),
    }
    per_seed = records.seed_summaries(
        np.array([0, 1]), eval_steps, metrics, {"ce": "min", "acc": "max"}, "ce", np.array([-1, 15])
    )
    assert per_seed[0]["status"] == "completed" and per_seed[0]["best_step"] == 10
    assert per_seed[0]["best"] == {"ce": 0.5, "acc": 0.9}
    assert per_seed[0]["final"] == {"ce": 0.7, "acc": 0.8}
    assert per_seed[1]["status"] == "diverged" and per_seed[1]["diverged_step"] == 15
    assert per_seed[1]["best"] == {"ce": 1.0, "acc": 0.5}
    summary = records.aggregate(per_seed, "final")
    assert summary["ce"] == {"mean": 0.7, "std": 0.0, "n": 1}


def test_load_record_reports_a_corrupt_file(tmp_path):
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt run record"):
        records.load_record(tmp_path)
