"""The default benchmark's claim, rerun from its frozen presets (slow: `make test-all`)."""

import pytest

from seqbench.cli.train import train_from_config
from seqbench.store import validate

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("experiment", "cell", "solves"),
    [
        ("benchmark_adding", "simple_rnn", False),
        ("benchmark_adding", "gru", True),
        ("benchmark_copy_memory", "simple_rnn", False),
        ("benchmark_copy_memory", "lstm", True),
    ],
)
def test_plain_rnn_stays_at_baseline_where_gated_cells_beat_it(
    compose_config, tmp_path, experiment, cell, solves
):
    overrides = [f"experiment={experiment}", f"model={cell}", "trainer.progress=false"]
    cfg = validate(compose_config(overrides))
    record = train_from_config(cfg, {}, tmp_path)
    primary = record.task.primary_metric
    baseline = record.task.baseline[primary]
    finals = [seed.final[f"test/{primary}"] for seed in record.per_seed]
    if solves:
        # Below the baseline on every seed and clearly below it on average; how far one seed gets
        # in 3,000 steps varies (and shifts with float summation order).
        assert all(value < baseline for value in finals), finals
        assert sum(finals) / len(finals) < 0.95 * baseline, finals
    else:
        assert all(value > 0.98 * baseline for value in finals), finals
