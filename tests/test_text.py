"""Character-level LM: PTB-format files, stream layout recomputed, state carried across segments."""

import importlib.util
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from datafiles import WORDS, write_ptb

from seqbench.config import ConfigError, ModelConfig, OptimizerConfig
from seqbench.models.build import build_model
from seqbench.tasks.base import StatefulTask
from seqbench.tasks.dataset import DataError
from seqbench.tasks.registry import build_task
from seqbench.tasks.text import CharLanguageModel, TextConfig
from seqbench.train.optim import build_optimizer
from seqbench.train.program import make_train

HAS_MUSIC21 = importlib.util.find_spec("music21") is not None


def ptb_task(tmp_path, **kwargs):
    options = {"bptt": 10, "eval_streams": 2, "eval_segment": 20, **kwargs}
    return CharLanguageModel(
        TextConfig(source="files", data_dir=str(tmp_path), corpus="ptb_char", **options)
    )


def test_ptb_char_files_vocabulary_and_unknown_characters(tmp_path):
    texts = write_ptb(tmp_path, extra_test="z q\n")
    task = ptb_task(tmp_path)
    assert set(task.vocabulary) == set("".join(WORDS)) | {"_", "\n"}
    train_text = "\n".join(line.replace(" ", "") for line in texts["train"].splitlines()) + "\n"
    decoded = "".join(sorted(task.vocabulary, key=task.vocabulary.get)[i] for i in task.stream)
    assert decoded == train_text
    assert task.spec.input_dim == len(task.vocabulary) + 1 and task.spec.readout == "every_step"
    assert task.unknown_fraction["val"] == 0 and task.unknown_fraction["test"] > 0


def test_training_segments_follow_the_streams_in_order(tmp_path):
    write_ptb(tmp_path)
    task = ptb_task(tmp_path)
    data, n, batch = task.train_data(), len(task.stream), 4
    per_stream = n // batch
    segments = (per_stream - 1) // 10
    for step in (0, 1, segments - 1, segments, segments + 3):
        got = task.train_batch(data, jax.random.key(0), jnp.int32(step), batch)
        offset = (step % segments) * 10
        for b in range(batch):
            start = b * per_stream + offset
            np.testing.assert_array_equal(got.inputs[b], task.stream[start : start + 10])
            np.testing.assert_array_equal(got.targets[b], task.stream[start + 1 : start + 11])
        restart = bool(task.starts_sequence(data, jnp.int32(step), batch))
        assert restart == (step % segments == 0)


def test_a_carried_state_continues_the_sequence_exactly():
    model = build_model(ModelConfig(architecture="lstm", hidden_size=6, n_layers=2), _spec()).model
    tokens = jax.random.randint(jax.random.key(1), (3, 24), 0, 7)
    params = model.init(jax.random.key(0), tokens[:, :1])
    whole = model.apply(params, tokens)
    first, carry = model.apply(params, tokens[:, :10], return_carry=True)
    second, _ = model.apply(params, tokens[:, 10:], initial_carry=carry, return_carry=True)
    np.testing.assert_allclose(
        jnp.concatenate([first, second], axis=1), whole, rtol=1e-5, atol=1e-6
    )
    fresh = model.apply(params, tokens[:, 10:])
    assert not np.allclose(fresh, second, atol=1e-4)  # the carry matters


def _spec():
    from seqbench.tasks.base import TaskSpec

    return TaskSpec("tokens", 7, 7, 24, "every_step")


def test_stream_evaluation_equals_one_pass_over_each_whole_stream(tmp_path):
    write_ptb(tmp_path)
    task = ptb_task(tmp_path)
    built = build_model(ModelConfig(architecture="gru", hidden_size=8), task.spec)
    program = make_train(built.model, task, build_optimizer(OptimizerConfig(), 10), 4)
    params = jax.jit(program.batched_init)(jnp.asarray([0], jnp.int32)).params
    got = jax.jit(program.batched_evaluate)(params, task.eval_set("test"))["bpc"][0]
    test = task.eval_set("test")
    one = jax.tree_util.tree_map(lambda x: x[0], params)
    logits = built.model.apply({"params": one}, test.inputs)  # whole streams at once
    nats = -jnp.take_along_axis(jax.nn.log_softmax(logits), test.targets[..., None], axis=-1)
    assert float(got) == pytest.approx(float(jnp.mean(nats)) / math.log(2), rel=1e-5)


def test_training_carries_state_and_lowers_the_loss(tmp_path):
    write_ptb(tmp_path, lines=(400, 40, 40))
    task = ptb_task(tmp_path)
    built = build_model(ModelConfig(architecture="lstm", hidden_size=16), task.spec)
    program = make_train(built.model, task, build_optimizer(OptimizerConfig(lr=1e-2), 100), 4)
    state = jax.jit(program.batched_init)(jnp.asarray([0], jnp.int32))
    assert all(float(jnp.abs(c).max()) == 0 for c in jax.tree_util.tree_leaves(state.carry))
    chunk = jax.jit(program.batched_chunk, static_argnums=2)
    state, losses = chunk(state, task.train_data(), 60)
    assert all(float(jnp.abs(c).max()) > 0 for c in jax.tree_util.tree_leaves(state.carry))
    assert float(losses[0, -10:].mean()) < float(losses[0, :10].mean())


def test_baseline_is_the_unigram_entropy_on_test(tmp_path):
    write_ptb(tmp_path)
    task = ptb_task(tmp_path)
    test = task.splits["test"].targets.ravel()
    counts = np.bincount(task.stream, minlength=task.spec.input_dim) / len(task.stream)
    assert task.baseline()["bpc"] == pytest.approx(-np.mean(np.log2(counts[test])))


def test_missing_and_short_corpora(tmp_path):
    with pytest.raises(DataError, match=r"missing ptb\.char\.train\.txt.*task\.source=offline"):
        ptb_task(tmp_path)
    write_ptb(tmp_path, lines=(50, 1, 40))
    with pytest.raises(DataError, match=r"val text .* too short"):
        ptb_task(tmp_path)
    (tmp_path / "text" / "text8").write_text("abc " * 100)
    with pytest.raises(DataError, match="text8 has 100,000,000"):
        CharLanguageModel(TextConfig(source="files", data_dir=str(tmp_path), corpus="text8"))
    with pytest.raises(DataError, match="no offline copy of 'text8'"):
        CharLanguageModel(TextConfig(corpus="text8"))


def test_a_text_task_is_stateful_and_checks_its_options(tmp_path):
    write_ptb(tmp_path)
    task = ptb_task(tmp_path)
    assert isinstance(task, StatefulTask) and task.eval_segment == 20
    assert task.describe()["family"] == task.label == "ptb_char (chars)"
    assert task.describe()["length"] is None
    for key in ("bptt", "eval_streams", "eval_segment"):
        with pytest.raises(ConfigError, match=rf"task\.{key}: must be positive"):
            TextConfig(**{key: 0})


@pytest.mark.skipif(not HAS_MUSIC21, reason="music21 (seqbench[data]) not installed")
def test_offline_abc_corpus():
    task = build_task(TextConfig())  # the same config (and task) as task=text's tiny training
    assert task.label == "abc_folk (chars)"
    sizes = task.sizes()
    assert sizes["train"] > 3_500_000 and 100_000 < sizes["test"] < 400_000
    assert 100 < task.describe()["vocabulary_size"] < 140
