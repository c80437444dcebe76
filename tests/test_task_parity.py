"""Parity (Delétang et al. 2023; xLSTM's lengths): targets recomputed from the bits, lengths,
fixed-length test@L splits, baseline, determinism and options."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqbench.config import ConfigError
from seqbench.tasks.parity import Parity, ParityConfig


def task_of(**options):
    return Parity(ParityConfig(**options))


def check_batch(batch, n, min_length, length):
    inputs, targets, lengths = (np.asarray(a) for a in batch)
    assert inputs.shape == (n, length) and inputs.dtype == np.int32
    assert targets.shape == (n,) and targets.dtype == np.int32
    assert lengths.shape == (n,) and lengths.dtype == np.int32
    assert ((lengths >= min_length) & (lengths <= length)).all()
    assert set(np.unique(inputs)) <= {0, 1} and set(np.unique(targets)) <= {0, 1}
    for row, target, size in zip(inputs, targets, lengths, strict=True):
        assert (row[size:] == 0).all()  # padding
        ones = sum(1 for bit in row[:size] if bit == 1)
        assert target == ones % 2


@settings(max_examples=4, deadline=None)
@given(
    length=st.integers(1, 60),
    data=st.data(),
    batch=st.integers(1, 16),
    seed=st.integers(0, 2**31 - 1),
)
def test_batches_are_well_formed(length, data, batch, seed):
    min_length = data.draw(st.integers(1, length))
    task = task_of(length=length, min_length=min_length)
    assert task.spec.seq_len == length and task.spec.readout == "last"
    assert (task.spec.input_kind, task.spec.input_dim, task.spec.output_dim) == ("tokens", 2, 2)
    check_batch(task.sample(jax.random.key(seed), batch), batch, min_length, length)


def test_lengths_and_bits_vary_as_drawn():
    task = task_of(n_eval=6000)  # the defaults: 3..40 bits
    inputs, targets, lengths = (np.asarray(a) for a in task.eval_set("test"))
    check_batch((inputs, targets, lengths), 6000, 3, 40)
    counts = np.bincount(lengths, minlength=41)[3:]
    assert (counts > 0).all() and counts.sum() == 6000
    np.testing.assert_allclose(counts / 6000, 1 / 38, atol=0.01)  # uniform on 3..40
    valid = np.arange(40)[None, :] < lengths[:, None]
    share_of_ones = (inputs * valid).sum(axis=0) / valid.sum(axis=0)
    np.testing.assert_allclose(share_of_ones, 0.5, atol=0.15)  # every position varies
    assert (inputs * valid).sum() / valid.sum() == pytest.approx(0.5, abs=0.01)
    assert np.mean(targets) == pytest.approx(0.5, abs=0.03)


def test_memoryless_predictor_scores_the_baseline():
    task = task_of(length=20, n_eval=8000)
    batch = task.eval_set("test")
    metrics = task.metrics(jnp.zeros((8000, 2)), batch)  # the class prior (uniform) as logits
    assert set(metrics) == set(task.metric_directions) and metrics["accuracy"].shape == (8000,)
    assert task.baseline() == pytest.approx({"accuracy": 0.5, "cross_entropy": math.log(2)})
    assert float(jnp.mean(metrics["cross_entropy"])) == pytest.approx(math.log(2), rel=1e-5)
    assert float(jnp.mean(metrics["accuracy"])) == pytest.approx(0.5, abs=0.015)
    assert task.example_weights(batch) is None  # one scored position per example


def test_a_perfect_predictor_scores_accuracy_one():
    task = task_of(length=12)
    batch = task.sample(jax.random.key(3), 32)
    logits = 50.0 * jax.nn.one_hot(batch.targets, 2)
    metrics = task.metrics(logits, batch)
    assert float(jnp.min(metrics["accuracy"])) == 1.0
    assert float(jnp.max(metrics["cross_entropy"])) < 1e-6
    assert float(task.loss(logits, batch)) < 1e-6


def test_eval_lengths_give_strings_of_exactly_that_length():
    task = task_of(n_eval=64, eval_lengths=[64, 256])  # trains on 3..40 bits
    sets = task.eval_sets()
    assert list(sets) == ["val", "test", "test@64", "test@256"]
    for L in (64, 256):
        config = task.at_length(L).config
        assert (config.length, config.min_length, config.eval_lengths) == (L, L, [])
        check_batch(sets[f"test@{L}"], 64, L, L)
        assert (np.asarray(sets[f"test@{L}"].seq_lengths) == L).all()
    assert task.sample(jax.random.key(0), 4).inputs.shape == (4, 40)
    described = task.describe()
    assert described["eval_lengths"] == [64, 256]
    assert described["eval_baselines"]["256"]["accuracy"] == 0.5


@pytest.mark.parametrize(
    ("options", "label", "family"),
    [
        ({"length": 40}, "parity (T=40)", "parity"),
        ({"length": 16, "min_length": 1}, "parity (T=16, min 1)", "parity (min 1)"),
    ],
)
def test_label_and_family(options, label, family):
    task = task_of(**options)
    assert (task.label, task.family, task.length) == (label, family, options["length"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"length": 0}, "task.length"),
        ({"min_length": 0}, "task.min_length: must be positive"),
        ({"length": 5, "min_length": 6}, "task.min_length: must be at most task.length=5"),
        ({"n_eval": 0}, "task.n_eval"),
        ({"eval_seed": -1}, "task.eval_seed"),
        ({"eval_lengths": [0]}, r"task.eval_lengths: 0 is not a valid length \(task.length"),
        ({"eval_lengths": [64, 64]}, "task.eval_lengths: lists a length twice"),
    ],
)
def test_bad_options_raise_a_config_error(options, message):
    with pytest.raises(ConfigError, match=message):
        ParityConfig(**options)
