"""Multi-query associative recall: layout, targets recomputed from the inputs, the filler never a
key, the power-law query placement against NumPy's sampler, baseline, determinism, presets."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hypothesis import given, settings
from hypothesis import strategies as st

from seqbench.cli.train import CONF_DIR
from seqbench.config import ConfigError
from seqbench.store import validate
from seqbench.tasks.base import Batch, TaskSpec
from seqbench.tasks.mqar import MQARConfig, MultiQueryAssociativeRecall
from seqbench.tasks.registry import build_task
from seqbench.tasks.synthetic import split_key


def make(**options):
    return MultiQueryAssociativeRecall(MQARConfig(**options))


def recomputed_targets(inputs, n):
    """The answer at each position after the pairs: when the token there occurs earlier as a key
    of the pairs (even positions < 2n), the token that follows that first occurrence; else -1."""
    targets = np.full(inputs.shape, -1)
    for b, row in enumerate(inputs):
        first = {}
        for i in range(0, 2 * n, 2):
            first.setdefault(int(row[i]), int(row[i + 1]))
        for p in range(2 * n, len(row)):
            targets[b, p] = first.get(int(row[p]), -1)
    return targets


def draw(task, seed, batch_size):
    """A batch as NumPy arrays, drawn by the jitted sampler (compiled once per shape)."""
    return jax.device_get(jax.jit(task.sample, static_argnums=1)(jax.random.key(seed), batch_size))


#: the task most tests share (one compiled sampler): T=40, N=4, V=16 (keys 1..7, values 8..15)
SMALL = {"length": 40, "num_kv_pairs": 4, "vocab_size": 16}


@pytest.fixture(scope="module")
def big_batch():
    task = make(**SMALL)
    return task, draw(task, 1, 4000)


@pytest.mark.parametrize(
    ("length", "n", "vocab", "random_filler"),
    [
        (17, 2, 6, True),  # odd length, the smallest vocabulary (keys 1..2)
        (16, 4, 10, True),  # length = 4 N: every even slot after the pairs is a query
        (40, 3, 30, False),  # zero filler
    ],
)
def test_batch_is_well_formed(length, n, vocab, random_filler):
    task = make(length=length, num_kv_pairs=n, vocab_size=vocab, random_non_queries=random_filler)
    inputs, targets, lengths = draw(task, length, 64)
    assert inputs.shape == targets.shape == (64, length) and lengths is None
    assert inputs.dtype == targets.dtype == np.int32
    assert ((inputs >= 0) & (inputs < vocab)).all()
    half = vocab // 2
    keys, values = inputs[:, : 2 * n : 2], inputs[:, 1 : 2 * n : 2]
    assert ((keys >= 1) & (keys < half)).all() and ((values >= half) & (values < vocab)).all()
    assert all(len(set(row)) == n for row in keys) and all(len(set(row)) == n for row in values)
    # every query's value is the one bound at the key's first occurrence, and nothing else scores
    np.testing.assert_array_equal(targets, recomputed_targets(inputs, n))
    scored = targets >= 0
    assert (scored.sum(axis=1) == n).all()
    positions = np.nonzero(scored)[1]
    assert ((positions - 2 * n) % 2 == 0).all() and (positions <= length - 2).all()
    for b in range(64):
        assert sorted(inputs[b, scored[b]]) == sorted(keys[b])  # each key queried exactly once
        # its pair and its query: the filler is never a key of the example
        assert np.isin(inputs[b], keys[b]).sum() == 2 * n
        filler = inputs[b, 2 * n :][~scored[b, 2 * n :]]
        if not random_filler:
            assert (filler == 0).all()
    if length == 4 * n:
        assert scored[:, 2 * n :: 2].all()


def test_random_filler_is_uniform_over_the_tokens_that_are_not_keys(big_batch):
    task, (inputs, targets, _) = big_batch
    n, vocab = task.num_kv_pairs, task.vocab_size
    keys = inputs[:, : 2 * n : 2]
    counts, opportunities = np.zeros(vocab), np.zeros(vocab)
    for b in range(len(inputs)):
        tokens = inputs[b, 2 * n :][targets[b, 2 * n :] < 0]
        counts += np.bincount(tokens, minlength=vocab)
        opportunities += ~np.isin(np.arange(vocab), keys[b]) * len(tokens)
    frequency = counts / opportunities  # per token, over the examples where it is not a key
    np.testing.assert_allclose(frequency, 1 / (vocab - n), rtol=0.05)


FILLER_TASK = make(**SMALL)
FILLER = jax.jit(FILLER_TASK.filler)


@settings(max_examples=20, deadline=None)
@given(
    keys=st.lists(st.integers(1, 7), min_size=4, max_size=4, unique=True),
    seed=st.integers(0, 2**31 - 1),
)
def test_filler_covers_exactly_the_tokens_that_are_not_keys(keys, seed):
    """Any N distinct keys in any order: the filler hits every other token and never a key."""
    rows = jnp.asarray([keys] * 50, jnp.int32)
    tokens = np.asarray(FILLER(jax.random.key(seed), rows))
    assert tokens.shape == (50, SMALL["length"])
    assert set(np.unique(tokens)) == set(range(SMALL["vocab_size"])) - set(keys)


def gap_inclusion_of_numpys_sampler(space, n, power_a, draws):
    """How often each gap is drawn by NumPy's choice(replace=False, p), the reference's sampler,
    with p proportional to power_a * (g + 1) ** (power_a - 1)."""
    p = power_a * np.arange(1, space + 1) ** (power_a - 1)
    p /= p.sum()
    rng = np.random.default_rng(0)
    counts = np.zeros(space)
    for _ in range(draws):
        counts[rng.choice(space, n, replace=False, p=p)] += 1
    return counts / draws


@pytest.mark.parametrize("power_a", [0.01, 1.0])
def test_query_gaps_follow_numpys_choice_without_replacement(big_batch, power_a):
    if power_a == MQARConfig().power_a:  # zoology's 0.01, the default
        task, (_, targets, _) = big_batch
    else:
        task = make(**SMALL, power_a=power_a)
        targets = draw(task, 2, 4000)[1]
    n, space = task.num_kv_pairs, task.n_gaps
    gaps = (np.nonzero(targets >= 0)[1] - 2 * n) // 2
    ours = np.bincount(gaps, minlength=space) / len(targets)
    reference = gap_inclusion_of_numpys_sampler(space, n, power_a, 4000)
    np.testing.assert_allclose(ours, reference, atol=0.05)
    if power_a == 1.0:  # uniform: every query slot, each as often
        np.testing.assert_allclose(ours, n / space, atol=0.05)
        assert (ours > 0).all()
    else:
        assert ours[0] > 0.5 and ours[-1] < ours[0] / 3  # the queries crowd the start
    first_query = (targets >= 0).argmax(axis=1)
    assert np.std(first_query) > 0.5  # the query positions vary from example to example


def test_every_key_and_value_token_occurs(big_batch):
    task, (inputs, _, _) = big_batch
    n, half = task.num_kv_pairs, task.vocab_size // 2
    assert set(np.unique(inputs[:, : 2 * n : 2])) == set(range(1, half))
    assert set(np.unique(inputs[:, 1 : 2 * n : 2])) == set(range(half, task.vocab_size))
    key_counts = np.bincount(inputs[:, : 2 * n : 2].ravel(), minlength=half)[1:]
    np.testing.assert_allclose(key_counts / key_counts.sum(), 1 / (half - 1), rtol=0.1)


def test_memoryless_predictor_scores_the_baseline(big_batch):
    task, (inputs, targets, _) = big_batch
    half, vocab = task.vocab_size // 2, task.vocab_size
    logits = np.full((*targets.shape, vocab), -1e9, np.float32)
    logits[..., half:] = 0.0  # uniform over the values [V // 2, V)
    metrics = task.metrics(jnp.asarray(logits), Batch(inputs, targets))
    n_values = vocab - half
    assert task.baseline() == pytest.approx(
        {"accuracy": 1 / n_values, "cross_entropy": math.log(n_values)}
    )
    np.testing.assert_allclose(metrics["cross_entropy"], math.log(n_values), rtol=1e-5)
    assert float(jnp.mean(metrics["accuracy"])) == pytest.approx(1 / n_values, abs=0.01)
    assert make().baseline() == pytest.approx({"accuracy": 1 / 32, "cross_entropy": math.log(32)})


def test_a_perfect_predictor_scores_one_and_ignores_unscored_positions(big_batch):
    task, (inputs, targets, _) = big_batch
    batch = Batch(jnp.asarray(inputs[:16]), jnp.asarray(targets[:16]))
    answers = jnp.where(batch.targets >= 0, batch.targets, 0)  # unscored: token 0, never a value
    logits = 50.0 * jax.nn.one_hot(answers, task.vocab_size)
    metrics = task.metrics(logits, batch)
    assert float(jnp.min(metrics["accuracy"])) == 1.0
    assert float(jnp.max(metrics["cross_entropy"])) < 1e-6
    assert math.isclose(float(task.loss(logits, batch)), 0.0, abs_tol=1e-6)
    wrong = 50.0 * jax.nn.one_hot(jnp.zeros_like(answers), task.vocab_size)
    assert float(jnp.max(task.metrics(wrong, batch)["accuracy"])) == 0.0


def test_same_key_same_batch_fixed_disjoint_eval_sets_jit_and_lengths(big_batch):
    task = make(**SMALL, n_eval=4000, eval_lengths=[21])
    first = big_batch[1]
    again, other = draw(task, 1, 4000), draw(task, 9, 4000)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])
    sets = task.eval_sets()
    assert set(sets) == {"val", "test", "test@21"}
    # eval_set draws eagerly; the jitted sampler gives the same examples from the same key
    jitted = jax.jit(task.sample, static_argnums=1)(split_key(task.config.eval_seed, "test"), 4000)
    np.testing.assert_array_equal(sets["test"].inputs, jitted.inputs)
    np.testing.assert_array_equal(sets["test"].targets, jitted.targets)
    np.testing.assert_array_equal(task.eval_set("val").inputs, sets["val"].inputs)
    val = {tuple(row) for row in np.asarray(sets["val"].inputs)}
    test = {tuple(row) for row in np.asarray(sets["test"].inputs)}
    assert len(val) == len(test) == 4000 and not val & test
    assert sets["test@21"].inputs.shape == sets["test@21"].targets.shape == (4000, 21)
    assert ((np.asarray(sets["test@21"].targets) >= 0).sum(axis=1) == 4).all()
    assert task.describe()["eval_baselines"]["21"] == task.baseline()


def test_labels_name_the_options_that_differ_from_the_default():
    assert (make().label, make().family) == ("mqar (T=64)", "mqar")
    task = make(length=128, num_kv_pairs=8, vocab_size=8192, random_non_queries=False)
    assert task.label == "mqar (T=128, 8 pairs, V=8192, zero filler)"
    assert make(power_a=1.0).family == "mqar (a=1)"
    assert make().spec == TaskSpec("tokens", 64, 64, 64, "every_step")


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"num_kv_pairs": 0}, "task.num_kv_pairs"),
        ({"num_kv_pairs": 4, "length": 15}, "task.length"),
        ({"length": 0}, "task.length"),
        ({"num_kv_pairs": 4, "vocab_size": 9}, "task.vocab_size"),
        ({"power_a": 0.0}, "task.power_a"),
        ({"power_a": -0.5}, "task.power_a"),
        ({"power_a": math.inf}, "task.power_a"),
        ({"power_a": math.nan}, "task.power_a"),
        ({"num_kv_pairs": 4, "eval_lengths": [12]}, "task.eval_lengths"),
        ({"n_eval": 0}, "task.n_eval"),
    ],
)
def test_bad_options_raise_a_config_error_naming_the_key(options, key):
    with pytest.raises(ConfigError, match=key) as error:
        MQARConfig(**options)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("length", "pairs", "batch"), [(64, 4, 512), (128, 8, 512), (256, 16, 256)]
)
def test_zoology_presets_set_the_figure_2_panels(compose_config, length, pairs, batch):
    preset = f"mqar_zoology_{length}"
    cfg = validate(compose_config([f"experiment={preset}", "model=gru"]))
    task = build_task(cfg.task)
    assert isinstance(task, MultiQueryAssociativeRecall)
    assert (task.length, task.num_kv_pairs, task.vocab_size) == (length, pairs, 8192)
    assert (task.power_a, task.random_non_queries, task.n_eval) == (0.01, False, 3000)
    assert cfg.trainer.batch_size == batch and cfg.trainer.steps * batch == 64 * 100_000
    assert (cfg.optimizer.name, cfg.optimizer.weight_decay, cfg.model.n_layers) == ("adamw", 0.1, 2)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        raw = compose("config", overrides=[f"experiment={preset}"], return_hydra_config=True)
    params = raw.hydra.sweeper.params
    rates = [float(x) for x in params["optimizer.lr"].split(",")]
    np.testing.assert_allclose(rates, np.logspace(-4, -2, 4), rtol=1e-4)
    assert params["model.hidden_size"] == "64,128,256,512"
