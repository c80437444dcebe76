"""Induction heads: layout, the answer recovered from the inputs, baseline, determinism, options."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqbench.config import ConfigError
from seqbench.store import validate
from seqbench.tasks.induction_heads import InductionHeads, InductionHeadsConfig
from seqbench.tasks.registry import build_task


def recover_answers(inputs, trigger):
    """NumPy: the token after the first occurrence of the trigger, which also ends each row."""
    answers = []
    for row in inputs:
        (where,) = np.nonzero(row == trigger)
        assert len(where) == 2 and where[1] == len(row) - 1  # once inside, once at the end
        answers.append(row[where[0] + 1])
    return np.array(answers)


@settings(max_examples=6, deadline=None)
@given(length=st.integers(3, 50), vocab_size=st.integers(3, 20), seed=st.integers(0, 2**31 - 1))
def test_induction_heads_batch_is_well_formed(length, vocab_size, seed):
    task = InductionHeads(InductionHeadsConfig(length, vocab_size=vocab_size))
    batch = task.sample(jax.random.key(seed), 6)
    assert batch.seq_lengths is None
    assert batch.inputs.dtype == jnp.int32 and batch.targets.dtype == jnp.int32
    inputs, targets = np.asarray(batch.inputs), np.asarray(batch.targets)
    assert inputs.shape == (6, length + 1) == (6, task.spec.seq_len) and targets.shape == (6,)
    assert ((inputs >= 0) & (inputs < vocab_size - 1)).all()  # the no-op id V - 1 never occurs
    assert ((targets >= 0) & (targets < task.spec.output_dim)).all()
    np.testing.assert_array_equal(targets, recover_answers(inputs, vocab_size - 2))


def test_spec_and_the_published_size():
    task = InductionHeads(InductionHeadsConfig(length=256, vocab_size=16))
    assert task.spec.input_kind == "tokens" and task.spec.readout == "last"
    assert (task.spec.input_dim, task.spec.output_dim, task.spec.seq_len) == (16, 14, 257)
    assert task.label == "induction_heads (T=256)"


def test_mamba_preset_is_the_published_setting(compose_config):
    cfg = validate(compose_config(["experiment=induction_heads_mamba"]))
    task = build_task(cfg.task)
    assert isinstance(task, InductionHeads)
    assert (task.length, task.vocab_size) == (256, 16)
    assert cfg.task.eval_lengths and min(cfg.task.eval_lengths) > 256


def test_trigger_position_and_answer_vary_uniformly():
    length, n = 12, 20_000
    task = InductionHeads(InductionHeadsConfig(length))
    batch = task.sample(jax.random.key(1), n)
    inputs, targets = np.asarray(batch.inputs), np.asarray(batch.targets)
    first = (inputs[:, :length] == task.trigger).argmax(axis=1)
    # uniform over [0, L - 2), as the reference's rng.integers(L - 2)
    counts = np.bincount(first, minlength=length)
    assert counts[length - 2 :].sum() == 0
    np.testing.assert_allclose(counts[: length - 2] / n, 1 / (length - 2), atol=0.01)
    np.testing.assert_allclose(np.bincount(targets, minlength=14) / n, 1 / 14, atol=0.01)
    # the other tokens are uniform over the data symbols too
    others = inputs[:, :length][inputs[:, :length] != task.trigger]
    np.testing.assert_allclose(np.bincount(others, minlength=14) / others.size, 1 / 14, atol=0.005)


def test_memoryless_predictor_scores_the_baseline():
    task = InductionHeads(InductionHeadsConfig(length=10, n_eval=20_000))
    batch = task.eval_set("test")
    metrics = task.metrics(jnp.zeros((20_000, 14)), batch)  # uniform over the 14 data symbols
    assert task.baseline() == {"accuracy": pytest.approx(1 / 14), "cross_entropy": math.log(14)}
    assert float(jnp.mean(metrics["cross_entropy"])) == pytest.approx(math.log(14), rel=1e-6)
    assert float(jnp.mean(metrics["accuracy"])) == pytest.approx(1 / 14, abs=0.005)
    assert task.example_weights(batch) is None


def test_perfect_predictor_scores_one():
    task = InductionHeads(InductionHeadsConfig(length=10))
    batch = task.sample(jax.random.key(3), 32)
    logits = 50.0 * jax.nn.one_hot(batch.targets, 14)
    metrics = task.metrics(logits, batch)
    assert metrics["accuracy"].shape == metrics["cross_entropy"].shape == (32,)
    assert float(jnp.min(metrics["accuracy"])) == 1.0
    assert float(jnp.max(metrics["cross_entropy"])) < 1e-6
    assert float(task.loss(logits, batch)) == pytest.approx(0.0, abs=1e-6)
    wrong = 50.0 * jax.nn.one_hot((batch.targets + 1) % 14, 14)
    assert float(jnp.max(task.metrics(wrong, batch)["accuracy"])) == 0.0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: InductionHeadsConfig(length=0), "task.length"),
        (lambda: InductionHeadsConfig(length=2), "task.length: induction heads needs at least 3"),
        (lambda: InductionHeadsConfig(vocab_size=2), "task.vocab_size"),
        (lambda: InductionHeadsConfig(n_eval=0), "task.n_eval"),
        (lambda: InductionHeadsConfig(eval_seed=-1), "task.eval_seed"),
        (
            lambda: InductionHeadsConfig(length=10, eval_lengths=[20, 2]),
            r"task.eval_lengths: 2 is not a valid length \(task.length",
        ),
        (lambda: InductionHeadsConfig(eval_lengths=[20, 20]), "task.eval_lengths"),
    ],
)
def test_bad_options_raise_a_config_error(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_eval_lengths_add_test_splits_at_each_length():
    task = InductionHeads(InductionHeadsConfig(length=10, n_eval=8, eval_lengths=[40, 25]))
    sets = task.eval_sets()
    assert list(sets) == ["val", "test", "test@40", "test@25"]
    for length in (40, 25):
        longer = sets[f"test@{length}"]
        assert longer.inputs.shape == (8, length + 1) and longer.targets.shape == (8,)
        alone = InductionHeads(InductionHeadsConfig(length, n_eval=8)).eval_set("test")
        np.testing.assert_array_equal(longer.inputs, alone.inputs)
        np.testing.assert_array_equal(
            longer.targets, recover_answers(np.asarray(longer.inputs), 14)
        )
    described = task.describe()
    assert described["eval_lengths"] == [40, 25]
    assert described["eval_baselines"]["40"]["cross_entropy"] == pytest.approx(math.log(14))


def test_label_family_and_composition(compose_config):
    task = build_task(validate(compose_config(["task=induction_heads"])).task)
    assert isinstance(task, InductionHeads)
    assert (task.label, task.family) == ("induction_heads (T=64)", "induction_heads")
    other = InductionHeads(InductionHeadsConfig(length=30, vocab_size=10))
    assert (other.label, other.family) == ("induction_heads (T=30, V=10)", "induction_heads (V=10)")
    assert other.spec.output_dim == 8 and other.baseline()["accuracy"] == pytest.approx(1 / 8)
