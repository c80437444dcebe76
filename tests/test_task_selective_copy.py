"""Selective copying: layout, targets recomputed from the inputs, baseline, determinism, options."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqbench.config import ConfigError
from seqbench.store import validate
from seqbench.tasks.registry import build_task
from seqbench.tasks.selective_copy import SelectiveCopy, SelectiveCopyConfig


def recompute_targets(inputs, length, n_tokens, vocab_size):
    """NumPy: the data tokens of each row's first `length` steps, in order, as (B, T) targets."""
    targets = np.full(inputs.shape, -1, np.int64)
    for row, sequence in zip(targets, inputs, strict=True):
        region = sequence[:length]
        tokens = region[(region != vocab_size - 1) & (region != 0)]
        assert len(tokens) == n_tokens
        row[length:] = tokens
    return targets


@settings(max_examples=6, deadline=None)
@given(
    length=st.integers(1, 40),
    n_tokens=st.integers(1, 8),
    vocab_size=st.integers(3, 20),
    seed=st.integers(0, 2**31 - 1),
)
def test_selective_copy_batch_is_well_formed(length, n_tokens, vocab_size, seed):
    length = max(length, n_tokens)
    task = SelectiveCopy(SelectiveCopyConfig(length, n_tokens=n_tokens, vocab_size=vocab_size))
    batch = task.sample(jax.random.key(seed), 5)
    assert batch.seq_lengths is None
    assert batch.inputs.dtype == jnp.int32 and batch.targets.dtype == jnp.int32
    inputs, targets = np.asarray(batch.inputs), np.asarray(batch.targets)
    total = length + n_tokens
    assert inputs.shape == targets.shape == (5, total) == (5, task.spec.seq_len)
    assert ((inputs >= 0) & (inputs < task.spec.input_dim)).all()
    region = inputs[:, :length]
    assert (region != 0).all()  # markers only after the region
    assert ((region == vocab_size - 1).sum(axis=1) == length - n_tokens).all()
    assert (inputs[:, length:] == 0).all()
    np.testing.assert_array_equal(targets, recompute_targets(inputs, length, n_tokens, vocab_size))
    scored = targets[:, length:]
    assert ((scored >= 1) & (scored <= vocab_size - 2)).all()


def test_spec_and_the_published_size():
    task = SelectiveCopy(SelectiveCopyConfig(length=4096, n_tokens=16, vocab_size=16))
    assert task.spec.input_kind == "tokens" and task.spec.readout == "every_step"
    assert (task.spec.input_dim, task.spec.output_dim, task.spec.seq_len) == (16, 16, 4112)
    assert task.label == "selective_copy (T=4096, M=16)"


def test_feng2024_preset_is_the_published_setting(compose_config):
    cfg = validate(compose_config(["experiment=selective_copy_feng2024"]))
    task = build_task(cfg.task)
    assert isinstance(task, SelectiveCopy)
    assert (task.length, task.n_tokens, task.vocab_size) == (4096, 16, 16)
    assert "paper" in cfg.tags


def test_token_positions_cover_the_region_uniformly_and_vary():
    length, n_tokens, n = 16, 4, 20_000
    task = SelectiveCopy(SelectiveCopyConfig(length, n_tokens=n_tokens))
    inputs = np.asarray(task.sample(jax.random.key(1), n).inputs)[:, :length]
    is_token = inputs != task.vocab_size - 1
    np.testing.assert_allclose(is_token.mean(axis=0), n_tokens / length, atol=0.015)
    first = is_token.argmax(axis=1)
    last = length - 1 - is_token[:, ::-1].argmax(axis=1)
    assert len(np.unique(first)) == length - n_tokens + 1  # every feasible first position occurs
    assert first.min() == 0 and last.max() == length - 1
    # the data symbols are uniform over 1..V-2
    counts = np.bincount(inputs[is_token], minlength=task.vocab_size)
    assert counts[0] == counts[-1] == 0
    np.testing.assert_allclose(counts[1:-1] / counts.sum(), 1 / 14, atol=0.005)


def test_memoryless_predictor_scores_the_baseline():
    task = SelectiveCopy(SelectiveCopyConfig(length=12, n_tokens=4, n_eval=20_000))
    batch = task.eval_set("test")
    logits = np.full((20_000, task.spec.seq_len, 16), -1e9, np.float32)
    logits[..., 1:15] = 0.0  # uniform over the 14 data symbols
    metrics = task.metrics(jnp.asarray(logits), batch)
    baseline = task.baseline()
    assert baseline == {"accuracy": pytest.approx(1 / 14), "cross_entropy": math.log(14)}
    assert float(jnp.mean(metrics["cross_entropy"])) == pytest.approx(math.log(14), rel=1e-5)
    # argmax of a tie picks symbol 1: right whenever the token is 1
    assert float(jnp.mean(metrics["accuracy"])) == pytest.approx(1 / 14, abs=0.005)
    np.testing.assert_array_equal(task.example_weights(batch), 4.0)  # n_tokens scored steps


def test_perfect_and_partly_right_predictors():
    task = SelectiveCopy(SelectiveCopyConfig(length=10, n_tokens=4))
    batch = task.sample(jax.random.key(3), 16)
    targets = np.asarray(batch.targets)
    logits = 50.0 * jax.nn.one_hot(np.maximum(targets, 0), 16)
    metrics = task.metrics(logits, batch)
    assert metrics["accuracy"].shape == metrics["cross_entropy"].shape == (16,)
    assert float(jnp.min(metrics["accuracy"])) == 1.0
    assert float(jnp.max(metrics["cross_entropy"])) < 1e-6
    assert float(task.loss(logits, batch)) == pytest.approx(0.0, abs=1e-6)
    # the unscored steps do not count: garbage there changes nothing
    noisy = np.asarray(logits).copy()
    noisy[:, :10] = np.random.default_rng(0).normal(size=noisy[:, :10].shape) * 100
    np.testing.assert_allclose(
        task.metrics(jnp.asarray(noisy), batch)["cross_entropy"], 0, atol=1e-6
    )
    # right at the first marker only: accuracy 1/4 per example
    wrong = np.asarray(logits).copy()
    wrong[:, 11:] = 50.0 * np.asarray(jax.nn.one_hot((targets[:, 11:] % 14) + 1, 16))
    assert np.all((targets[:, 11:] % 14) + 1 != targets[:, 11:])
    np.testing.assert_allclose(task.metrics(jnp.asarray(wrong), batch)["accuracy"], 0.25)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SelectiveCopyConfig(length=0), "task.length"),
        (lambda: SelectiveCopyConfig(length=3, n_tokens=4), "task.length: must be at least"),
        (lambda: SelectiveCopyConfig(n_tokens=0), "task.n_tokens"),
        (lambda: SelectiveCopyConfig(vocab_size=2), "task.vocab_size"),
        (lambda: SelectiveCopyConfig(n_eval=0), "task.n_eval"),
        (lambda: SelectiveCopyConfig(eval_seed=-1), "task.eval_seed"),
        (
            lambda: SelectiveCopyConfig(length=10, n_tokens=4, eval_lengths=[20, 3]),
            r"task.eval_lengths: 3 is not a valid length \(task.length",
        ),
    ],
)
def test_bad_options_raise_a_config_error(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_eval_lengths_add_test_splits_at_each_length():
    config = SelectiveCopyConfig(length=10, n_tokens=3, n_eval=8, eval_lengths=[30, 20])
    task = SelectiveCopy(config)
    sets = task.eval_sets()
    assert list(sets) == ["val", "test", "test@30", "test@20"]
    for length in (30, 20):
        longer = sets[f"test@{length}"]
        assert longer.inputs.shape == longer.targets.shape == (8, length + 3)
        alone = SelectiveCopy(SelectiveCopyConfig(length, n_tokens=3, n_eval=8)).eval_set("test")
        np.testing.assert_array_equal(longer.inputs, alone.inputs)
    described = task.describe()
    assert described["label"] == "selective_copy (T=10, M=3)"
    assert described["family"] == "selective_copy (M=3)"
    assert described["eval_baselines"]["30"]["accuracy"] == pytest.approx(1 / 14)


def test_default_task_composes(compose_config):
    task = build_task(validate(compose_config(["task=selective_copy"])).task)
    assert isinstance(task, SelectiveCopy) and task.label == "selective_copy (T=64)"
    assert task.family == "selective_copy"
