"""Temporal order (Hochreiter & Schmidhuber 1997, 6a/6b): layout, targets recomputed from the
inputs, the paper's windows at length 100, baseline, determinism, options and length splits."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqbench.config import ConfigError
from seqbench.tasks.temporal_order import TemporalOrder, TemporalOrderConfig

#: a b c d X Y B E
A, X, Y, B, E = 0, 4, 5, 6, 7
#: the paper's windows (1-based positions at T in [100, 110])
PAPER = {"6a": [(10, 20), (50, 60)], "6b": [(10, 20), (33, 43), (66, 76)]}


def task_of(**options):
    return TemporalOrder(TemporalOrderConfig(**options))


def relevant_positions(row, length):
    """1-based positions of the X/Y symbols among the first `length` tokens of `row`."""
    return [t + 1 for t in range(length) if row[t] in (X, Y)]


def order_class(row, positions):
    """The class the X/Y symbols spell in order, X = 0 and Y = 1, the first most significant."""
    value = 0
    for position in positions:
        value = 2 * value + int(row[position - 1] == Y)
    return value


def check_batch(task, batch, n):
    inputs, targets, lengths = (np.asarray(a) for a in batch)
    L = task.config.length
    k = len(PAPER[task.config.variant])
    T = L + L // 10
    assert inputs.shape == (n, T) and inputs.dtype == np.int32
    assert targets.shape == (n,) and targets.dtype == np.int32
    assert lengths.shape == (n,) and lengths.dtype == np.int32
    assert ((lengths >= L) & (lengths <= T)).all()
    assert ((inputs >= 0) & (inputs < 8)).all() and ((targets >= 0) & (targets < 2**k)).all()
    windows = [(lo * L // 100, hi * L // 100) for lo, hi in PAPER[task.config.variant]]
    for row, target, length in zip(inputs, targets, lengths, strict=True):
        assert row[0] == E and row[length - 1] == B
        assert (row[length:] == A).all()  # padding
        body = row[1 : length - 1]
        assert ((body >= 0) & (body <= Y)).all()
        positions = relevant_positions(row, length)
        assert len(positions) == k
        assert all(lo <= p <= hi for p, (lo, hi) in zip(positions, windows, strict=True))
        assert target == order_class(row, positions)


@settings(max_examples=3, deadline=None)
@given(
    length=st.integers(20, 150),
    variant=st.sampled_from(["6a", "6b"]),
    batch=st.integers(1, 8),
    seed=st.integers(0, 2**31 - 1),
)
def test_batches_are_well_formed(length, variant, batch, seed):
    task = task_of(length=length, variant=variant)
    check_batch(task, task.sample(jax.random.key(seed), batch), batch)


@pytest.mark.parametrize("variant", ["6a", "6b"])
def test_length_100_is_exactly_the_papers_layout(variant):
    task = task_of(length=100, variant=variant, n_eval=4000)
    assert task.spec.seq_len == 110 and task.spec.readout == "last"
    assert task.spec.input_kind == "tokens" and task.spec.input_dim == 8
    assert task.spec.output_dim == (4 if variant == "6a" else 8)
    batch = task.eval_set("test")
    check_batch(task, batch, 4000)
    inputs, targets, lengths = (np.asarray(a) for a in batch)
    assert set(lengths.tolist()) == set(range(100, 111))  # every length 100..110 occurs
    positions = np.array([relevant_positions(r, n) for r, n in zip(inputs, lengths, strict=True)])
    for k, (lo, hi) in enumerate(PAPER[variant]):  # every position of each window occurs
        assert set(positions[:, k].tolist()) == set(range(lo, hi + 1))
    counts = np.bincount(targets, minlength=2 ** len(PAPER[variant]))
    np.testing.assert_allclose(counts / 4000, 1 / len(counts), atol=0.03)
    distractors = np.concatenate([r[1 : n - 1] for r, n in zip(inputs, lengths, strict=True)])
    shares = np.bincount(distractors[distractors < X], minlength=4) / np.sum(distractors < X)
    np.testing.assert_allclose(shares, 0.25, atol=0.01)


@pytest.mark.parametrize("variant", ["6a", "6b"])
def test_scaled_windows_stay_apart_and_inside_the_sequence(variant):
    for L in range(20, 1001):
        windows = [(lo * L // 100, hi * L // 100) for lo, hi in PAPER[variant]]
        assert windows[0][0] >= 2 and windows[-1][1] <= L - 1, (L, windows)
        assert all(a[1] < b[0] for a, b in itertools.pairwise(windows)), (L, windows)
        assert all(lo < hi for lo, hi in windows)
    assert task_of(length=1000, variant=variant).windows == tuple(
        (10 * lo, 10 * hi) for lo, hi in PAPER[variant]
    )


@pytest.mark.parametrize(("variant", "classes"), [("6a", 4), ("6b", 8)])
def test_memoryless_predictor_scores_the_baseline(variant, classes):
    task = task_of(length=20, variant=variant, n_eval=8000)
    batch = task.eval_set("test")
    prior = jnp.zeros((8000, classes))  # the class prior (uniform) as logits
    metrics = task.metrics(prior, batch)
    assert set(metrics) == set(task.metric_directions) and metrics["accuracy"].shape == (8000,)
    assert task.baseline() == pytest.approx(
        {"accuracy": 1 / classes, "cross_entropy": math.log(classes)}
    )
    assert float(jnp.mean(metrics["cross_entropy"])) == pytest.approx(math.log(classes), rel=1e-5)
    assert float(jnp.mean(metrics["accuracy"])) == pytest.approx(1 / classes, abs=0.015)
    assert task.example_weights(batch) is None  # one scored position per example


def test_a_perfect_predictor_scores_accuracy_one():
    task = task_of(length=30, variant="6b")
    batch = task.sample(jax.random.key(3), 32)
    logits = 50.0 * jax.nn.one_hot(batch.targets, 8)
    metrics = task.metrics(logits, batch)
    assert float(jnp.min(metrics["accuracy"])) == 1.0
    assert float(jnp.max(metrics["cross_entropy"])) < 1e-6
    assert float(task.loss(logits, batch)) < 1e-6


def test_eval_lengths_add_longer_test_splits_with_the_same_relative_layout():
    task = task_of(length=20, variant="6b", n_eval=64, eval_lengths=[200, 50])
    sets = task.eval_sets()
    assert list(sets) == ["val", "test", "test@200", "test@50"]
    for L in (200, 50):
        longer = task.at_length(L)
        assert longer.config.variant == "6b" and longer.config.eval_lengths == []
        check_batch(longer, sets[f"test@{L}"], 64)
        alone = task_of(length=L, variant="6b", n_eval=64).eval_set("test")
        np.testing.assert_array_equal(sets[f"test@{L}"].inputs, alone.inputs)
    described = task.describe()
    assert described["eval_lengths"] == [200, 50]
    assert described["eval_baselines"]["200"]["accuracy"] == pytest.approx(1 / 8)


@pytest.mark.parametrize(
    ("options", "label", "family"),
    [
        ({"length": 100}, "temporal_order (T=100)", "temporal_order"),
        ({"length": 60, "variant": "6b"}, "temporal_order (T=60, 6b)", "temporal_order (6b)"),
    ],
)
def test_label_and_family(options, label, family):
    task = task_of(**options)
    assert (task.label, task.family, task.length) == (label, family, options["length"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"length": 19}, "task.length: temporal_order needs at least 20"),
        ({"length": 0}, "task.length"),
        ({"variant": "6c"}, "task.variant"),
        ({"n_eval": 0}, "task.n_eval"),
        ({"eval_seed": -1}, "task.eval_seed"),
        ({"eval_lengths": [10]}, r"task.eval_lengths: 10 is not a valid length \(task.length"),
        ({"eval_lengths": [200, 200]}, "task.eval_lengths: lists a length twice"),
    ],
)
def test_bad_options_raise_a_config_error(options, message):
    with pytest.raises(ConfigError, match=message):
        TemporalOrderConfig(**options)
