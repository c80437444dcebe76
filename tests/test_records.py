"""Run records: atomic writes, per-seed summaries, aggregation, the typed record and its formats."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from seqbench import provenance, records
from seqbench.records import MetricStats, RunRecord

REPO = Path(__file__).resolve().parent.parent
#: run records as seqbench wrote them in format 2 (the default benchmark at 041a7de), before
#: `model.architecture`, `task.family` and `task.length`
FORMAT_2 = Path(__file__).resolve().parent / "records"


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


def test_seed_summaries_pick_best_on_validation_by_direction_and_mark_divergence():
    eval_steps = np.array([0, 10, 20])
    metrics = {  # seed 0: validation is best at step 10, test would be best at step 20
        "val/ce": np.array([[2.0, 2.0], [0.5, 1.0], [0.7, np.nan]]),
        "test/ce": np.array([[2.1, 2.1], [0.6, 1.1], [0.4, np.nan]]),
        "test/acc": np.array([[0.1, 0.1], [0.9, 0.5], [0.8, np.nan]]),
    }
    per_seed = records.seed_summaries(
        np.array([0, 1]), eval_steps, metrics, {"ce": "min", "acc": "max"}, "ce", np.array([-1, 15])
    )
    assert per_seed[0]["status"] == "completed" and per_seed[0]["best_step"] == 10
    assert per_seed[0]["best"] == {"val/ce": 0.5, "test/ce": 0.6, "test/acc": 0.9}
    assert per_seed[0]["final"] == {"val/ce": 0.7, "test/ce": 0.4, "test/acc": 0.8}
    assert per_seed[1]["status"] == "diverged" and per_seed[1]["diverged_step"] == 15
    assert per_seed[1]["best"] == {"val/ce": 1.0, "test/ce": 1.1, "test/acc": 0.5}
    summary = records.aggregate(per_seed, "final")
    assert summary["test/ce"] == {"mean": 0.4, "std": 0.0, "n": 1}


def test_direction_max_selects_the_largest_validation_value():
    metrics = {
        "val/acc": np.array([[0.2], [0.9], [0.5]]),
        "test/acc": np.array([[0.3], [0.7], [0.8]]),
    }
    (seed,) = records.seed_summaries(
        np.array([4]), np.array([0, 5, 10]), metrics, {"acc": "max"}, "acc", np.array([-1])
    )
    assert seed["best_step"] == 5 and seed["best"]["test/acc"] == 0.7


def test_a_format_1_record_is_read_with_its_metrics_as_test_metrics(tmp_path):
    old = {
        "name": "adding-gru",
        "status": "completed",
        "config": {"model": {"cell": "gru"}, "task": {"length": 100}},
        "seeds": [0],
        "task": {
            "name": "adding",
            "metrics": {"mse": "min"},
            "primary_metric": "mse",
            "baseline": {"mse": 1 / 6},
        },
        "model": {"cell": "gru", "param_count": 5071},
        "per_seed": [{"seed": 0, "final": {"mse": 0.2}, "best": {"mse": 0.1}}],
        "summary": {"final": {"mse": {"mean": 0.2, "std": 0.0, "n": 1}}},
        "curves": {"eval_steps": [0], "eval": {"mse": [[0.2]]}},
    }
    (tmp_path / "run.json").write_text(json.dumps(old))
    record = records.load_record(tmp_path)
    assert record.to_json()["schema_version"] == records.SCHEMA_VERSION
    assert record.per_seed[0].best == {"test/mse": 0.1}
    assert record.summary.final == {"test/mse": MetricStats(mean=0.2, std=0.0, n=1)}
    assert record.curves.eval == {"test/mse": [[0.2]]}
    assert record.model.architecture == "gru"
    assert (record.task.label, record.task.family, record.task.length) == (
        "adding (T=100)",
        "adding",
        100,
    )


def test_a_record_from_a_newer_seqbench_is_refused(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"schema_version": 99, "status": "completed"}))
    with pytest.raises(ValueError, match="format 99, newer than this seqbench reads"):
        records.load_record(tmp_path)


def test_config_identity_ignores_seeds_names_and_logging_only():
    base = {
        "seeds": [0, 1],
        "name": "a",
        "tags": [],
        "logger": {"name": "none"},
        "trainer": {"steps": 10, "progress": True, "compilation_cache_dir": "/x"},
        "optimizer": {"lr": 0.1},
    }
    same = json.loads(json.dumps(base))
    same.update(seeds=[5], name="b", tags=["t"], logger={"name": "wandb"}, tuned_by="search/x")
    same["trainer"].update(progress=False, compilation_cache_dir=None)
    other = json.loads(json.dumps(base))
    other["optimizer"]["lr"] = 0.2
    assert records.config_identity(base) == records.config_identity(same)
    assert records.config_identity(base) != records.config_identity(other)
    assert records.flatten_config(other)["optimizer.lr"] == 0.2


@pytest.mark.parametrize(("option", "neutral"), list(records.ADDED_OPTIONS.items()))
def test_an_option_added_since_a_record_was_written_hashes_as_absent_at_its_neutral_value(
    option, neutral
):
    group, name = option.split(".")
    older = {"task": {"length": 10}, "optimizer": {"lr": 0.1}}
    newer = json.loads(json.dumps(older))
    newer[group][name] = neutral
    assert records.config_identity(older) == records.config_identity(newer)
    newer[group][name] = [7]  # another value computes something else
    assert records.config_identity(older) != records.config_identity(newer)


def test_load_record_reports_a_corrupt_file(tmp_path):
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt run record"):
        records.load_record(tmp_path)


def test_deterministic_flags_are_added_once_and_recorded(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    provenance.use_deterministic_flags()
    provenance.use_deterministic_flags()
    flags = provenance.determinism_info(True)["xla_flags"].split()
    assert flags == ["--xla_cpu_enable_fast_math=false", "--xla_gpu_deterministic_ops=true"]
    assert provenance.determinism_info(True)["gpu_needs"] == ["--xla_gpu_deterministic_ops=true"]


def test_a_committed_format_2_record_loads_with_family_and_length_derived(tmp_path):
    path = tmp_path / "run.json"
    shutil.copy(FORMAT_2 / "format2_adding.json", path)
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == 2 and "family" not in raw["task"] and "cell" in raw["model"]
    record = records.load_record(path.parent)
    assert record.path == str(path.parent)
    assert (record.task.label, record.task.family, record.task.length) == (
        "adding (T=100)",
        "adding",
        100,
    )
    assert record.model.architecture == raw["model"]["cell"] == "simple_rnn"
    assert record.model.param_count == raw["model"]["param_count"]
    assert record.task.primary_metric == "mse" and record.task.metrics == {"mse": "min"}
    assert [s.seed for s in record.per_seed] == raw["seeds"] == record.seeds
    best = raw["summary"]["best"]["test/mse"]
    assert record.summary.best["test/mse"] == MetricStats(best["mean"], best["std"], best["n"])
    assert record.timing.wall_s == raw["timing"]["wall_s"]
    assert record.curves.eval == raw["curves"]["eval"]
    # the same in meaning: only the version, the architecture's name and the new task fields differ
    upgraded = json.loads(json.dumps(raw))
    upgraded["schema_version"] = records.SCHEMA_VERSION
    upgraded["model"]["architecture"] = upgraded["model"].pop("cell")
    upgraded["task"].update(family="adding", length=100)
    assert record.to_json() == upgraded


@pytest.mark.parametrize(
    ("label", "length", "variant", "family"),
    [
        ("copy_memory (T=50, n=5)", 50, None, "copy_memory (n=5)"),
        ("adding (T=100, arjovsky)", 100, "arjovsky", "adding (arjovsky)"),
        (None, 200, "arjovsky", "adding (arjovsky)"),  # before labels: from the config
        ("seq_mnist (pixel)", None, None, "seq_mnist (pixel)"),
    ],
)
def test_an_old_record_gets_its_family_and_length_from_its_label_and_config(
    label, length, variant, family
):
    data = json.loads((FORMAT_2 / "format2_adding.json").read_text())
    data["task"]["label"] = label
    data["config"]["task"] = {"length": length, "variant": variant}
    task = RunRecord.from_json(data, "old").task
    assert (task.family, task.length) == (family, length)


def test_a_record_with_its_own_family_and_length_keeps_them():
    data = json.loads((FORMAT_2 / "format2_copy_memory.json").read_text())
    data["schema_version"] = records.SCHEMA_VERSION
    data["model"]["architecture"] = data["model"].pop("cell")
    data["task"].update(family="recall", length=7)
    task = RunRecord.from_json(data, "new").task
    assert (task.family, task.length) == ("recall", 7)
    data["model"]["cell"] = data["model"].pop("architecture")  # format 3 names no cell
    with pytest.raises(ValueError, match=r"'model\.architecture' is missing"):
        RunRecord.from_json(data, "new")


@pytest.mark.parametrize("path", sorted((REPO / "results").rglob("run.json")), ids=str)
def test_from_json_of_to_json_is_the_identity_for_every_committed_record(path):
    record = records.load_record(path)
    data = record.to_json()
    again = RunRecord.from_json(data, path)
    assert again == record
    assert again.to_json() == data
    assert json.loads(json.dumps(data)) == data  # plain JSON


def test_write_record_writes_run_json_atomically(tmp_path):
    record = records.load_record(REPO / "results" / "default_benchmark" / "1")
    records.write_record(tmp_path, record)
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]
    assert records.load_record(tmp_path) == record
    assert json.loads((tmp_path / "run.json").read_text()) == record.to_json()


def test_the_device_record_explains_cpu_differences(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")
    info = provenance.device_info()
    assert info["xla_flags"] == "--xla_backend_optimization_level=0"
    assert info["threads"] == len(info["cpu_affinity"]) >= 1
    flags = info["cpu_vector_flags"]
    if Path("/proc/cpuinfo").exists():  # Linux: the vector extensions only, sorted
        assert flags == sorted(flags) and all(
            f.startswith(provenance.VECTOR_FLAG_PREFIXES) for f in flags
        )
        assert "avx" in flags or "asimd" in flags or "neon" in flags
