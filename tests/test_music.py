"""Polyphonic music: piano rolls from the pickles and from music21, loss and metrics against NumPy,
the constant-predictor baseline, data errors, the offline cache and one smoke training run."""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from datafiles import PIECES, write_pickle

from seqbench.config import ConfigError
from seqbench.store import validate
from seqbench.tasks import music
from seqbench.tasks.dataset import DataError
from seqbench.tasks.formats.pianoroll import roll_from_notes, roll_from_score
from seqbench.tasks.music import MusicConfig, PolyphonicMusic, load_chorale_rolls
from seqbench.train.program import make_train


def roll(piece):
    out = np.zeros((len(piece), 88), np.float32)
    for t, step in enumerate(piece):
        for pitch in step:
            out[t, pitch - 21] = 1
    return out


def bce(logits, targets):
    """(..., 88) -> (...): binary cross-entropy with logits summed over keys, in float64."""
    logits, targets = np.asarray(logits, np.float64), np.asarray(targets, np.float64)
    log_p, log_q = -np.logaddexp(0, -logits), -np.logaddexp(0, logits)
    return -np.sum(targets * log_p + (1 - targets) * log_q, axis=-1)


def frame_accuracy(logits, targets):
    predicted = np.asarray(logits) > 0
    truth = np.asarray(targets) > 0.5
    tp = np.sum(predicted & truth)
    denominator = tp + np.sum(predicted ^ truth)
    return 1.0 if denominator == 0 else tp / denominator


@pytest.fixture
def task(tmp_path):
    write_pickle(tmp_path)
    return PolyphonicMusic(MusicConfig(source="files", data_dir=str(tmp_path), name="jsb_chorales"))


@pytest.mark.parametrize("compress", [False, True])
def test_pickle_gives_rolls_shifted_by_one_step(tmp_path, compress):
    write_pickle(tmp_path, compress=compress)
    task = PolyphonicMusic(MusicConfig(source="files", data_dir=str(tmp_path), name="jsb_chorales"))
    assert task.name == "music_jsb_chorales" and task.label == "JSB Chorales"
    assert task.spec.seq_len == 6 and task.spec.readout == "every_step"
    assert (task.spec.input_dim, task.spec.output_dim, task.spec.input_kind) == (88, 88, "real")
    assert task.sizes() == {"train": 3, "val": 2, "test": 2}
    for split, key in (("train", "train"), ("val", "valid"), ("test", "test")):
        data = task.splits[split]
        assert data.inputs.shape == data.targets.shape == (len(PIECES[key]), 6, 88)
        assert data.inputs.dtype == data.targets.dtype == np.float32
        for i, piece in enumerate(PIECES[key]):
            rolled, n = roll(piece), len(piece) - 1
            assert data.lengths[i] == n
            np.testing.assert_array_equal(data.inputs[i, :n], rolled[:-1])
            np.testing.assert_array_equal(data.targets[i, :n], rolled[1:])
            assert not data.inputs[i, n:].any() and not data.targets[i, n:].any()
    # key k is MIDI pitch 21 + k: the extremes of the keyboard
    assert task.splits["train"].inputs[0, 3, 0] == 1 and task.splits["train"].inputs[0, 3, 87] == 1
    steps = task.describe()["steps"]
    assert steps["test"] == {"min": 4, "max": 7, "scored": 9}


def test_max_steps_crops_longer_pieces(tmp_path):
    write_pickle(tmp_path)
    task = PolyphonicMusic(
        MusicConfig(source="files", data_dir=str(tmp_path), name="jsb_chorales", max_steps=4)
    )
    assert task.spec.seq_len == 3
    np.testing.assert_array_equal(task.splits["test"].lengths, [3, 3])
    np.testing.assert_array_equal(task.splits["val"].lengths, [2, 1])


def padded_logits(task, split, seed=0):
    """Random logits for a split, with huge values at padded steps (which must not count)."""
    data = task.splits[split]
    logits = np.random.default_rng(seed).normal(0, 2, data.targets.shape).astype(np.float32)
    padding = np.arange(logits.shape[1])[None, :] >= data.lengths[:, None]
    logits[padding] = 50.0
    return logits


def test_loss_and_metrics_match_numpy(task):
    data = task.splits["train"]
    logits = padded_logits(task, "train")
    batch = data.batch()
    per_step = [bce(logits[i, :n], data.targets[i, :n]) for i, n in enumerate(data.lengths)]
    expected_loss = sum(s.sum() for s in per_step) / data.lengths.sum()
    assert float(task.loss(jnp.asarray(logits), batch)) == pytest.approx(expected_loss, rel=1e-5)
    metrics = task.metrics(jnp.asarray(logits), batch)
    np.testing.assert_allclose(metrics["nll"], [s.mean() for s in per_step], rtol=1e-5)
    accuracy = [
        frame_accuracy(logits[i, :n], data.targets[i, :n]) for i, n in enumerate(data.lengths)
    ]
    np.testing.assert_allclose(metrics["accuracy"], accuracy, rtol=1e-5)
    np.testing.assert_array_equal(task.example_weights(batch), data.lengths)
    # a perfect prediction: accuracy 1 and a tiny nll
    perfect = jnp.asarray(np.where(data.targets > 0, 30.0, -30.0))
    perfect_metrics = task.metrics(perfect, batch)
    np.testing.assert_allclose(perfect_metrics["accuracy"], 1.0)
    assert float(jnp.max(perfect_metrics["nll"])) < 1e-6


class FixedLinear(nn.Module):
    """A parameter-free 'model': logits = inputs @ weights + bias, non-zero at padded steps too."""

    weights: np.ndarray
    bias: np.ndarray

    @nn.compact
    def __call__(self, inputs, seq_lengths=None, deterministic=True):
        del seq_lengths, deterministic
        return inputs @ jnp.asarray(self.weights) + jnp.asarray(self.bias)


def test_evaluation_is_the_frame_level_average(task):
    """Three pieces of different lengths, evaluated whole, one by one, and in chunks of two (the
    last chunk padded with a zero-weight copy)."""
    rng = np.random.default_rng(1)
    weights = rng.normal(0, 1, (88, 88)).astype(np.float32)
    bias = rng.normal(0, 1, 88).astype(np.float32)
    data = task.splits["train"]
    logits = data.inputs @ weights + bias
    steps = [bce(logits[i, :n], data.targets[i, :n]) for i, n in enumerate(data.lengths)]
    expected_nll = np.concatenate(steps).mean()
    piece_accuracy = [
        frame_accuracy(logits[i, :n], data.targets[i, :n]) for i, n in enumerate(data.lengths)
    ]
    expected_accuracy = np.average(piece_accuracy, weights=data.lengths)
    for chunk in (None, 1, 2):
        program = make_train(FixedLinear(weights, bias), task, optax.sgd(0.1), 1, chunk)
        result = program.evaluate({}, data.batch())
        assert float(result["nll"]) == pytest.approx(expected_nll, rel=1e-5)
        assert float(result["accuracy"]) == pytest.approx(expected_accuracy, rel=1e-5)


def test_baseline_is_the_training_key_frequencies_on_test(task):
    train, test = task.splits["train"], task.splits["test"]
    scored = np.concatenate([train.targets[i, :n] for i, n in enumerate(train.lengths)])
    p = np.clip(scored.astype(np.float64).mean(axis=0), 1e-6, 1 - 1e-6)
    test_steps = np.concatenate([test.targets[i, :n] for i, n in enumerate(test.lengths)])
    expected = -np.mean(test_steps @ np.log(p) + (1 - test_steps) @ np.log(1 - p))
    baseline = task.baseline()
    assert baseline["nll"] == pytest.approx(expected, rel=1e-9)
    assert (p <= 0.5).all() and baseline["accuracy"] == 0.0
    # the same number through the task's own metrics with constant logits
    logits = np.broadcast_to(np.log(p) - np.log1p(-p), test.targets.shape).astype(np.float32)
    values = task.metrics(jnp.asarray(logits), test.batch())
    weighted = np.average(np.asarray(values["nll"]), weights=test.lengths)
    assert weighted == pytest.approx(expected, rel=1e-5)
    assert task.describe()["baseline"] == baseline


def test_missing_file_names_the_path_and_the_offline_source(tmp_path):
    with pytest.raises(DataError) as error:
        PolyphonicMusic(MusicConfig(source="files", data_dir=str(tmp_path), name="nottingham"))
    message = str(error.value)
    assert str(tmp_path / "music" / "Nottingham.pickle") in message
    assert "task.source=offline" in message and "\n" not in message


def test_corrupt_pickles_raise_data_errors(tmp_path):
    path = write_pickle(tmp_path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match="corrupt or truncated pickle"):
        PolyphonicMusic(MusicConfig(source="files", data_dir=str(tmp_path), name="jsb_chorales"))
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="corrupt or truncated pickle"):
        PolyphonicMusic(MusicConfig(source="files", data_dir=str(tmp_path), name="jsb_chorales"))
    path.unlink()
    gz = write_pickle(tmp_path, compress=True)
    gz.write_bytes(gz.read_bytes()[:30])
    with pytest.raises(DataError, match="gzip"):
        PolyphonicMusic(MusicConfig(source="files", data_dir=str(tmp_path), name="jsb_chorales"))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ([[(60,)]], "expected a dict with keys train, valid, test"),
        ({"train": [], "valid": []}, "expected a dict with keys train, valid, test"),
        ({**PIECES, "test": "abc"}, "'test' is a str"),
        ({**PIECES, "test": [[(60,), 61]]}, "test piece 0"),
        ({**PIECES, "test": [[(60,), (20,)]]}, "pitch 20 outside 21-108"),
        ({**PIECES, "valid": [[(60,), (60.5,)]]}, "not an integer"),
        ({**PIECES, "train": [5]}, "train piece 0"),
    ],
)
def test_wrong_structure_raises_a_data_error(tmp_path, data, match):
    write_pickle(tmp_path, data)
    with pytest.raises(DataError, match=match):
        PolyphonicMusic(MusicConfig(source="files", data_dir=str(tmp_path), name="jsb_chorales"))


def test_bad_names_and_sources_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"task\.name: got 'jsb_chorales', .* bach_chorales"):
        MusicConfig(source="offline", cache_dir=str(tmp_path), name="jsb_chorales")
    with pytest.raises(ConfigError, match=r"task\.name: got 'bach_chorales', .* jsb_chorales"):
        MusicConfig(source="files", data_dir=str(tmp_path), name="bach_chorales")
    with pytest.raises(ConfigError, match=r"task\.source: got 'web'"):
        MusicConfig(source="web", data_dir=str(tmp_path))


def test_roll_from_notes_takes_what_sounds_at_each_quarter():
    notes = [(0, 2, 60), (0, 1, 64), (0.5, 1.0, 67), (1.25, 0.5, 70), (3, 1, 21), (3, 0, 108)]
    rolled = roll_from_notes(notes)
    assert rolled.shape == (4, 88)
    active = [set(np.flatnonzero(step) + 21) for step in rolled]
    assert active == [{60, 64}, {60, 67}, set(), {21}]
    assert roll_from_notes(notes, n_steps=2).shape == (2, 88)
    with pytest.raises(ValueError, match="outside"):
        roll_from_notes([(0, 1, 12)])


def make_score(parts, quarter_length=1.0):
    """A music21 score of one part per list of MIDI pitches (tuples become chords)."""
    from music21 import chord, note, stream

    score = stream.Score()
    for pitches in parts:
        part = stream.Part()
        for pitch in pitches:
            element = chord.Chord(list(pitch)) if isinstance(pitch, tuple) else note.Note(pitch)
            element.quarterLength = quarter_length
            part.append(element)
        score.insert(0, part)
    return score


def four_parts(n_steps, base=60):
    return [[base + 7 * v + (t % 3) for t in range(n_steps)] for v in range(3)] + [
        [(40, 43)] * (n_steps // 2) + [45] * (n_steps - n_steps // 2)
    ]


def test_roll_from_score_merges_every_part():
    score = make_score([[60, 62, 64, 65], [(48, 52), 50, 52, 53]])
    rolled = roll_from_score(score)
    active = [set(np.flatnonzero(step) + 21) for step in rolled]
    assert active == [{60, 48, 52}, {62, 50}, {64, 52}, {65, 53}]
    halves = roll_from_score(make_score([[60, 62, 64, 65]], quarter_length=0.5))
    assert [set(np.flatnonzero(step) + 21) for step in halves] == [{60}, {64}]


def fake_corpus(calls):
    def broken():
        raise ValueError("unreadable score")

    def pieces():
        calls.append(1)
        return [
            ("bach/a.mxl", lambda: make_score(four_parts(10))),
            ("bach/b.mxl", broken),
            ("bach/c.mxl", lambda: make_score(four_parts(9)[:2])),
            ("bach/d.mxl", lambda: make_score(four_parts(5))),
            ("bach/e.mxl", lambda: make_score(four_parts(12, base=50))),
        ]

    return pieces


def test_chorale_cache_is_built_reused_and_rebuilt(tmp_path):
    path = tmp_path / "music" / "bach_chorales_v1.npz"
    calls = []
    rolls, names, skipped = load_chorale_rolls(path, fake_corpus(calls))
    assert names == ["bach/a.mxl", "bach/e.mxl"] and [len(r) for r in rolls] == [10, 12]
    assert skipped == {"unparsable": 1, "not_four_parts": 1, "too_short": 1}
    assert path.is_file() and calls == [1]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    again = load_chorale_rolls(path, fake_corpus(calls))
    assert calls == [1] and again[1] == names and again[2] == skipped
    for cached, built in zip(again[0], rolls, strict=True):
        assert cached.dtype == np.float32
        np.testing.assert_array_equal(cached, built)
    path.write_bytes(path.read_bytes()[:100])
    rebuilt = load_chorale_rolls(path, fake_corpus(calls))
    assert calls == [1, 1] and rebuilt[1] == names
    assert load_chorale_rolls(path, fake_corpus(calls))[1] == names and calls == [1, 1]


def test_the_first_load_shows_parsing_progress_and_the_cached_one_is_silent(tmp_path, capsys):
    path = tmp_path / "music" / music.CACHE_NAME
    calls = []
    load_chorale_rolls(path, fake_corpus(calls))
    first = capsys.readouterr().err
    assert "parsing the Bach chorales" in first
    assert "[seqbench] Bach chorales: 100%" in first and "5/5" in first  # every score counted
    load_chorale_rolls(path, fake_corpus(calls))
    assert capsys.readouterr().err == "" and calls == [1]


def test_offline_task_splits_the_cached_chorales(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    rolls = [(rng.random((int(n), 88)) < 0.05).astype(np.float32) for n in rng.integers(8, 20, 10)]
    names = [f"bach/{i:02d}.mxl" for i in range(10)]
    music._write_cache(tmp_path / "music" / music.CACHE_NAME, rolls, names, {"unparsable": 2})

    def no_parsing():
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(music, "corpus_chorales", no_parsing)
    task = PolyphonicMusic(MusicConfig(source="offline", cache_dir=str(tmp_path), split_seed=3))
    assert task.sizes() == {"train": 6, "val": 2, "test": 2}
    assert task.label == "Bach chorales (music21)" and task.name == "music_bach_chorales"
    assert task.describe()["skipped"] == {"unparsable": 2}
    assert task.spec.seq_len == max(len(r) for r in rolls) - 1
    seen = sorted(int(n) + 1 for split in task.splits.values() for n in split.lengths)
    assert seen == sorted(len(r) for r in rolls)
    other = PolyphonicMusic(MusicConfig(source="offline", cache_dir=str(tmp_path), split_seed=3))
    np.testing.assert_array_equal(other.splits["test"].inputs, task.splits["test"].inputs)


def test_music_config_composes_and_checks_values(compose_config):
    cfg = validate(compose_config(["task=music"]))
    assert cfg.task.name == "bach_chorales" and cfg.task.source == "offline"
    assert cfg.task.max_steps is None
    with pytest.raises(ConfigError, match=r"task\.name"):
        validate(compose_config(["task=music", "task.name=nottingham"]))
    with pytest.raises(ConfigError, match=r"task\.name"):
        validate(compose_config(["task=music", "task.source=files"]))
    with pytest.raises(ConfigError, match=r"task\.max_steps"):
        validate(compose_config(["task=music", "task.max_steps=1"]))


@pytest.mark.slow
def test_offline_bach_chorales_from_music21(tmp_path):
    task = PolyphonicMusic(MusicConfig(source="offline", cache_dir=str(tmp_path)))
    sizes = task.sizes()
    assert sum(sizes.values()) > 300 and sizes["train"] > sizes["val"] > 0
    assert task.baseline()["nll"] > 0
    assert (tmp_path / "music" / music.CACHE_NAME).is_file()
