"""Synthetic tasks: shapes, ranges, targets recomputed from the inputs, baselines, determinism."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqbench.config import ConfigError
from seqbench.tasks.synthetic import AddingConfig, AddingProblem, CopyMemory, CopyMemoryConfig


@settings(max_examples=6, deadline=None)
@given(length=st.integers(2, 60), batch=st.integers(1, 16), seed=st.integers(0, 2**31 - 1))
def test_adding_batch_is_well_formed(length, batch, seed):
    task = AddingProblem(AddingConfig(length=length))
    inputs, targets, lengths = jax.device_get(task.sample(jax.random.key(seed), batch))
    assert inputs.shape == (batch, length, 2) and targets.shape == (batch, 1)
    assert lengths is None
    values, markers = inputs[..., 0], inputs[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert set(np.unique(markers)) <= {0.0, 1.0}
    assert (markers.sum(axis=1) == 2).all()
    recomputed = np.array([values[b][markers[b] == 1].sum() for b in range(batch)])
    np.testing.assert_allclose(targets[:, 0], recomputed, rtol=1e-6)


def test_adding_markers_are_uniform_over_positions():
    task = AddingProblem(AddingConfig(length=8))
    markers = np.asarray(task.sample(jax.random.key(1), 40_000).inputs[..., 1])
    frequency = markers.sum(axis=0) / markers.shape[0]
    np.testing.assert_allclose(frequency, 2 / 8, atol=0.01)


def test_arjovsky_variant_puts_one_marker_in_each_half():
    task = AddingProblem(AddingConfig(length=10, variant="arjovsky"))
    markers = np.asarray(task.sample(jax.random.key(2), 2000).inputs[..., 1])
    assert (markers[:, :5].sum(axis=1) == 1).all() and (markers[:, 5:].sum(axis=1) == 1).all()


def test_adding_trivial_baseline_matches_the_data():
    task = AddingProblem(AddingConfig(length=50, n_eval=20_000))
    batch = task.eval_set("test")
    mse_of_one = float(jnp.mean(task.metrics(jnp.ones_like(batch.targets), batch)["mse"]))
    assert task.baseline()["mse"] == pytest.approx(1 / 6)
    assert mse_of_one == pytest.approx(1 / 6, rel=0.03)


@settings(max_examples=10, deadline=None)
@given(length=st.integers(1, 40), n=st.integers(1, 12), seed=st.integers(0, 2**31 - 1))
def test_copy_memory_batch_is_well_formed(length, n, seed):
    task = CopyMemory(CopyMemoryConfig(length=length, n_memorize=n))
    inputs, targets, _ = jax.device_get(task.sample(jax.random.key(seed), 4))
    assert inputs.shape == targets.shape == (4, length + 2 * n)
    digits = inputs[:, :n]
    assert ((digits >= 1) & (digits <= 8)).all()
    assert (inputs[:, n : n + length - 1] == 0).all()
    assert (inputs[:, n + length - 1 :] == 9).all()
    assert (targets[:, : length + n] == 0).all()
    np.testing.assert_array_equal(targets[:, -n:], digits)


def test_copy_memory_matches_the_published_layout():
    task = CopyMemory(CopyMemoryConfig(length=1000))
    assert task.spec.seq_len == 1020 and task.spec.readout == "every_step"
    inputs = np.asarray(task.sample(jax.random.key(0), 1).inputs[0])
    assert (inputs[1009:] == 9).all() and inputs[1008] == 0 and len(inputs[1009:]) == 11


@pytest.mark.parametrize(("length", "expected"), [(500, 0.0400), (1000, 0.0204), (2000, 0.0103)])
def test_copy_memory_baseline_is_the_published_number(length, expected):
    assert CopyMemory(CopyMemoryConfig(length=length)).baseline()["cross_entropy"] == pytest.approx(
        expected, abs=6e-5
    )


def test_copy_memory_memoryless_predictor_scores_the_baseline():
    task = CopyMemory(CopyMemoryConfig(length=30, n_eval=4000))
    batch = task.eval_set("test")
    n, total = task.n_memorize, task.total_length
    logits = np.full((4000, total, 10), -1e9, np.float32)
    logits[:, : total - n, 0] = 0.0
    logits[:, total - n :, 1:9] = 0.0
    metrics = task.metrics(jnp.asarray(logits), batch)
    assert float(jnp.mean(metrics["cross_entropy"])) == pytest.approx(
        task.baseline()["cross_entropy"]
    )
    assert float(jnp.mean(metrics["recall_accuracy"])) == pytest.approx(1 / 8, abs=0.02)


def test_copy_memory_perfect_recall_scores_zero_loss():
    task = CopyMemory(CopyMemoryConfig(length=5))
    batch = task.sample(jax.random.key(3), 16)
    logits = 50.0 * jax.nn.one_hot(batch.targets, 10)
    metrics = task.metrics(logits, batch)
    assert float(jnp.max(metrics["cross_entropy"])) < 1e-6
    assert float(jnp.min(metrics["recall_accuracy"])) == 1.0
    assert math.isclose(float(task.loss(logits, batch)), 0.0, abs_tol=1e-6)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: AddingConfig(length=1), "task.length: adding needs at least 2 steps"),
        (lambda: AddingConfig(length=10, variant="halves"), "task.variant"),
        (lambda: CopyMemoryConfig(length=0), "task.length"),
        (lambda: CopyMemoryConfig(length=10, n_memorize=0), "task.n_memorize"),
        (lambda: AddingConfig(n_eval=0), "task.n_eval"),
        (lambda: CopyMemoryConfig(eval_seed=-1), "task.eval_seed"),
        (
            lambda: AddingConfig(length=10, eval_lengths=[20, 1]),
            r"task.eval_lengths: 1 is not a valid length \(task.length: adding needs at least 2",
        ),
        (lambda: AddingConfig(eval_lengths=[20, 20]), "task.eval_lengths: lists a length twice"),
    ],
)
def test_bad_task_options_raise_a_config_error(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


@pytest.mark.parametrize(
    ("task", "label", "family"),
    [
        (AddingProblem(AddingConfig(length=600)), "adding (T=600)", "adding"),
        (
            AddingProblem(AddingConfig(length=60, variant="arjovsky")),
            "adding (T=60, arjovsky)",
            "adding (arjovsky)",
        ),
        (CopyMemory(CopyMemoryConfig(length=100)), "copy_memory (T=100)", "copy_memory"),
        (
            CopyMemory(CopyMemoryConfig(length=50, n_memorize=5)),
            "copy_memory (T=50, n=5)",
            "copy_memory (n=5)",
        ),
    ],
)
def test_describe_gives_the_family_and_the_swept_length(task, label, family):
    described = task.describe()
    assert described["label"] == label and described["family"] == family
    assert described["length"] == task.config.length


def test_eval_lengths_add_test_splits_drawn_at_each_length():
    task = CopyMemory(CopyMemoryConfig(length=10, n_memorize=3, n_eval=8, eval_lengths=[40, 25]))
    sets = task.eval_sets()
    assert list(sets) == ["val", "test", "test@40", "test@25"]
    for length in (40, 25):
        longer = sets[f"test@{length}"]
        assert longer.inputs.shape == (8, length + 6) == longer.targets.shape
        alone = CopyMemory(CopyMemoryConfig(length=length, n_memorize=3, n_eval=8)).eval_set("test")
        np.testing.assert_array_equal(longer.inputs, alone.inputs)
    assert task.spec.seq_len == 16 and task.sample(jax.random.key(0), 2).inputs.shape == (2, 16)
    described = task.describe()
    assert described["eval_lengths"] == [40, 25]
    assert described["eval_baselines"]["40"]["cross_entropy"] == pytest.approx(3 * math.log(8) / 46)


def test_labels_at_steps_average_over_scored_steps_when_their_count_varies():
    from seqbench.tasks.base import Batch
    from seqbench.tasks.choice import UNSCORED
    from seqbench.tasks.selective_copy import SelectiveCopy, SelectiveCopyConfig

    task = SelectiveCopy(SelectiveCopyConfig(length=4, n_tokens=2, vocab_size=5))
    targets = np.array([[0, UNSCORED, 2], [UNSCORED, UNSCORED, 1]])
    logits = np.random.default_rng(0).normal(size=(2, 3, 5)).astype(np.float32)
    logits[0, 0, 0] = 9.0  # right; [0, 2] and [1, 2] wrong
    logits[0, 2, 2], logits[1, 2, 1] = -9.0, -9.0
    batch = Batch(jnp.zeros((2, 3), jnp.int32), jnp.asarray(targets))
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = {(b, t): -log_p[b, t, targets[b, t]] for b, t in [(0, 0), (0, 2), (1, 2)]}
    metrics = task.metrics(jnp.asarray(logits), batch)
    np.testing.assert_allclose(metrics["accuracy"], [0.5, 0.0])
    np.testing.assert_allclose(
        metrics["cross_entropy"], [(ce[0, 0] + ce[0, 2]) / 2, ce[1, 2]], rtol=1e-5
    )
    np.testing.assert_array_equal(task.example_weights(batch), [2.0, 1.0])
    per_step = sum(ce.values()) / 3
    assert float(task.loss(jnp.asarray(logits), batch)) == pytest.approx(per_step, rel=1e-5)
