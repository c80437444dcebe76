"""Every model option in conf/model trains end to end through the whole trainer: vmapped seeds,
checkpoints, the gradient-flow probe and the run record (state size, receptive field), and the
architectures whose carry is more than one (B, H) array also train by truncated backpropagation
through time on a stateful task."""

import math
from pathlib import Path

import numpy as np
import pytest

from seqbench.cli.train import CONF_DIR, train_from_config
from seqbench.models.architectures import ARCHITECTURES
from seqbench.records import load_record
from seqbench.store import validate

TINY = [
    "trainer=smoke",
    "trainer.steps=2",
    "trainer.eval_every=2",
    "trainer.gradient_flow_steps=[0,2]",
    "trainer.gradient_flow_batch=4",
    "model.hidden_size=4",
    "model.n_layers=2",
    "seeds=[0,1]",
]
MODELS = sorted(path.stem for path in (Path(CONF_DIR) / "model").glob("*.yaml"))
#: the classic cells train end to end in many other tests: here only with -m slow
CLASSIC = ("simple_rnn", "lstm", "gru")


def test_every_registered_architecture_has_a_model_option():
    assert set(MODELS) == set(ARCHITECTURES)


@pytest.mark.parametrize(
    "model",
    [pytest.param(m, marks=[pytest.mark.slow] if m in CLASSIC else []) for m in MODELS],
)
def test_a_tiny_adding_run_of_every_model_records_flow_and_state_size(
    compose_config, tmp_path, model
):
    overrides = [f"model={model}", "task=adding", "task.length=6", "task.n_eval=16", *TINY]
    if model == "tcn":
        overrides.append("model.cell.levels=2")
    cfg = validate(compose_config(overrides))
    (tmp_path / "run").mkdir()
    record = train_from_config(cfg, {}, tmp_path / "run")
    assert record.status == "completed"
    assert math.isfinite(record.summary.best["test/mse"].mean)
    spec = ARCHITECTURES[model]
    assert record.model.state_size > 0
    assert (record.model.receptive_field is None) == (spec.receptive_field is None)
    flow = np.asarray(record.gradient_flow.norm)
    assert flow.shape == (2, 2, 2, 6)  # steps, seeds, layers, T
    assert np.all(np.isfinite(flow)) and np.all(flow[:, :, :, -1] > 0)
    again = load_record(tmp_path / "run" / "run.json")
    assert again.model.state_size == record.model.state_size


@pytest.mark.parametrize(
    "model",
    [
        "rglru",  # a tuple of differently shaped arrays
        pytest.param("lru", marks=pytest.mark.slow),  # the complex state as (re, im)
        pytest.param("tcn", marks=pytest.mark.slow),  # one array per convolution
    ],
)
def test_carries_of_several_arrays_train_by_truncated_backpropagation(
    compose_config, tmp_path, model
):
    overrides = [f"model={model}", "task=text", *TINY]
    if model == "tcn":
        overrides.append("model.cell.levels=2")
    cfg = validate(compose_config(overrides))
    (tmp_path / "run").mkdir()
    record = train_from_config(cfg, {}, tmp_path / "run")
    assert record.status == "completed"
    for metric in record.task.metrics:
        assert math.isfinite(record.summary.best[f"test/{metric}"].mean)
