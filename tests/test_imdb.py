"""IMDB: an aclImdb tree written in the real layout, tokeniser, vocabulary, masking, cache, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from datafiles import write_imdb

from seqbench.config import ConfigError, ModelConfig
from seqbench.models.build import build_model
from seqbench.store import validate
from seqbench.tasks.base import TaskSpec
from seqbench.tasks.dataset import DataError
from seqbench.tasks.imdb import (
    OOV,
    IMDBConfig,
    IMDBSentiment,
    build_vocabulary,
    encode,
    standardise,
)


def test_standardise_like_textvectorization():
    assert standardise("A great, GREAT film!<br /><br />Loved it.") == [
        "a", "great", "great", "film", "loved", "it",
    ]  # fmt: skip
    assert standardise("don't stop") == ["dont", "stop"]


def test_vocabulary_ranks_by_count_then_alphabet_and_encodes_with_oov():
    vocab = build_vocabulary([["b", "a", "c"], ["b", "a"], ["d"]], size=4)
    assert vocab == {"a": 2, "b": 3}  # 2 words; a and b tie, alphabetical
    ids, lengths = encode([["a", "x", "b"], [], ["b"] * 5], vocab, max_length=3)
    np.testing.assert_array_equal(ids, [[2, OOV, 3], [OOV, 0, 0], [3, 3, 3]])
    np.testing.assert_array_equal(lengths, [3, 1, 3])


def test_splits_vocabulary_from_training_reviews_only_and_cache(tmp_path):
    write_imdb(tmp_path)
    cache = tmp_path / "cache"
    task = IMDBSentiment(
        IMDBConfig(
            data_dir=str(tmp_path), cache_dir=str(cache), vocab_size=12, max_length=6, n_val=4
        )
    )
    assert task.sizes() == {"train": 20, "val": 4, "test": 24}
    assert task.spec.input_kind == "tokens" and task.spec.seq_len == 6 and task.spec.output_dim == 1
    train = task.splits["train"]
    assert set(np.unique(train.targets)) == {0, 1}
    assert ((train.inputs > 0).sum(axis=1) == train.lengths).all()  # padding only after the end
    assert train.inputs.max() < 12 and 0 < task.truncated < 1
    (cached,) = cache.glob("imdb/tokens-*.npz")
    again = IMDBSentiment(
        IMDBConfig(
            data_dir=str(tmp_path), cache_dir=str(cache), vocab_size=12, max_length=6, n_val=4
        )
    )
    np.testing.assert_array_equal(again.splits["test"].inputs, task.splits["test"].inputs)
    cached.write_bytes(b"not a zip file")  # a damaged cache is rebuilt, not trusted
    rebuilt = IMDBSentiment(
        IMDBConfig(
            data_dir=str(tmp_path), cache_dir=str(cache), vocab_size=12, max_length=6, n_val=4
        )
    )
    np.testing.assert_array_equal(rebuilt.splits["val"].inputs, task.splits["val"].inputs)
    assert task.baseline()["accuracy"] == pytest.approx(0.5)


def test_missing_folder_and_no_offline_copy(tmp_path):
    with pytest.raises(
        DataError,
        match=r"missing train/pos, train/neg, test/pos, test/neg in .*aclImdb.*No offline copy",
    ):
        IMDBSentiment(IMDBConfig(data_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match=r"task\.source: got 'offline', expected one of files"):
        IMDBConfig(source="offline", data_dir=str(tmp_path))
    write_imdb(tmp_path)
    (tmp_path / "aclImdb" / "test" / "neg" / "0_2.txt").write_bytes(b"\xff\xfe bad utf-8 \xff")
    with pytest.raises(DataError, match=r"cannot read .*0_2\.txt"):
        IMDBSentiment(IMDBConfig(data_dir=str(tmp_path), n_val=4))


def test_padding_tokens_never_change_a_bidirectional_models_output():
    model_cfg = ModelConfig(
        architecture="lstm", hidden_size=8, bidirectional=True, encoder="embedding", head_sizes=[5]
    )
    model = build_model(model_cfg, TaskSpec("tokens", 20, 1, 7, "last")).model
    tokens = jnp.array([[3, 4, 5, 0, 0, 0, 0], [6, 7, 8, 9, 10, 11, 12]])
    lengths = jnp.array([3, 7])
    params = model.init(jax.random.key(0), tokens, lengths)
    assert "head_0" in params["params"]
    out = model.apply(params, tokens, lengths)
    noisy = tokens.at[0, 3:].set(jnp.array([13, 14, 15, 16]))
    np.testing.assert_allclose(model.apply(params, noisy, lengths), out, rtol=1e-6, atol=1e-6)


def test_tf_tutorial_preset_has_the_tutorials_parameter_count(compose_config):
    cfg = validate(compose_config(["experiment=imdb_tf_tutorial"]))
    assert (cfg.task.vocab_size, cfg.task.max_length) == (1000, 512)
    spec = TaskSpec("tokens", cfg.task.vocab_size, 1, cfg.task.max_length, "last")
    # TensorFlow's model has 138,369: embedding 64,000, BiLSTM 66,048, Dense 8,256 + 65; the
    # PyTorch-style LSTM has a second bias vector per gate block (2 x 256 more)
    assert build_model(cfg.model, spec).param_count == 138_369 + 512
