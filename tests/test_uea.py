"""UEA/UCR classification from .ts files: the parser, its errors, splits, normalisation, masking."""

import gzip
import importlib.util

import jax
import numpy as np
import pytest
from datafiles import TS_HEADER as HEADER
from datafiles import case_text, tiny_cases, write_uea

from seqbench.config import ConfigError, ModelConfig
from seqbench.models.build import build_model
from seqbench.store import validate
from seqbench.tasks.dataset import DataError
from seqbench.tasks.formats.ts import fill_missing, read_ts
from seqbench.tasks.uea import UEAClassification, UEAConfig

needs_sktime = pytest.mark.skipif(
    importlib.util.find_spec("sktime") is None, reason="sktime (seqbench[data]) is not installed"
)

# case 0: both channels complete; case 1: a missing value mid-series; case 2: a leading missing value
SMALL = HEADER + "1,2,3:4,5,6:a\n7,8,9,10:0.5,?,?,2:b\n\n?,?,3:1,2,3:a\n"


@pytest.fixture
def data_dir(tmp_path):
    return write_uea(tmp_path)


def tiny_task(data_dir, **kwargs):
    return UEAClassification(
        UEAConfig(source="files", data_dir=str(data_dir), name="Tiny", **kwargs)
    )


def test_parser_reads_shapes_values_and_labels(tmp_path):
    path = tmp_path / "small.ts"
    path.write_text(SMALL)
    data = read_ts(path)
    assert data.problem_name == "Tiny" and data.class_labels == ("b", "a")
    assert data.labels == ["a", "b", "a"]
    assert [s.shape for s in data.series] == [(3, 2), (4, 2), (3, 2)]
    assert all(s.dtype == np.float32 for s in data.series)
    np.testing.assert_array_equal(data.series[0], [[1, 4], [2, 5], [3, 6]])
    # missing values carry the last value forward; before the first observation, the first one
    np.testing.assert_array_equal(data.series[1][:, 1], [0.5, 0.5, 0.5, 2])
    np.testing.assert_array_equal(data.series[2][:, 0], [3, 3, 3])


def test_parser_reads_gzip_and_fill_missing_is_per_channel(tmp_path):
    path = tmp_path / "small.ts.gz"
    path.write_bytes(gzip.compress(SMALL.encode()))
    assert read_ts(path).labels == ["a", "b", "a"]
    filled = fill_missing(np.array([[np.nan, 1], [2, np.nan], [np.nan, np.nan]], np.float32))
    np.testing.assert_array_equal(filled, [[2, 1], [2, 1], [2, 1]])
    empty = fill_missing(np.array([[np.nan, 1], [np.nan, 3]], np.float32))
    np.testing.assert_array_equal(empty, [[0, 1], [0, 3]])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (SMALL.replace("@timeStamps false", "@timeStamps true"), ":3: @timeStamps true"),
        (HEADER.replace("@data\n", ""), "no @data line"),
        (HEADER, "no cases after @data"),
        (HEADER + "1,2,3:4,5,6:a\n1,2,3:4,5", ":11: 1 channel(s) and a label, expected 2"),
        (HEADER + "1,2,3:4,5,6:a\n1,2,3:4,5,6:", ":11: class label '' is not among"),
        (HEADER + "1,2,3", ":10: no ':' between values and class label"),
        (HEADER + "1,2:3,4:5,6:a", ":10: 3 channel(s) and a label, expected 2"),
        (HEADER + "1,2,3:4,5,6:z", ":10: class label 'z' is not among @classLabel b a"),
        (HEADER + "1,x,3:4,5,6:a", ":10: not a number"),
        (HEADER + "1,2,3:4,5:a", ":10: channels of different lengths [2, 3]"),
        (HEADER + "1,inf:4,5:a", ":10: infinite value"),
        (SMALL.replace("@classLabel true b a", "@classLabel false"), ":9: no @classLabel true"),
        (SMALL.replace("@classLabel true b a", "@targetLabel true"), ":8: @targetLabel"),
        (SMALL.replace("@dimensions 2", "@dimensions two"), ":6: @dimensions must be a positive"),
        (SMALL + "@problemName again\n", ":14: header line @problemName after @data"),
        ("1,2,3:a\n" + HEADER, ":1: data line before @data"),
    ],
)
def test_malformed_or_truncated_files_raise_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad_TRAIN.ts"
    path.write_text(text)
    with pytest.raises(DataError) as raised:
        read_ts(path)
    assert str(path) in str(raised.value) and message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_missing_files_name_the_expected_files(tmp_path):
    with pytest.raises(DataError) as raised:
        UEAClassification(UEAConfig(source="files", data_dir=str(tmp_path), name="GunPoint"))
    message = str(raised.value)
    assert "GunPoint_TRAIN.ts" in message and "GunPoint_TEST.ts" in message
    assert str(tmp_path / "uea" / "GunPoint") in message and "task.source=offline" in message


def test_task_pads_to_the_longest_case_of_any_split(data_dir):
    task = tiny_task(data_dir, normalise=False)
    assert task.name == "uea_tiny" and task.label == "Tiny (UEA)"
    assert task.sizes() == {"train": 10, "val": 2, "test": 4}
    assert task.spec.input_dim == 2 and task.spec.output_dim == 2 and task.spec.seq_len == 8
    assert task.spec.readout == "last" and task.lengths_range == (2, 8)
    test = task.eval_set("test")
    assert test.inputs.shape == (4, 8, 2)
    np.testing.assert_array_equal(test.seq_lengths, [8, 2, 5, 7])
    np.testing.assert_array_equal(test.targets, [1, 0, 1, 0])  # "a" -> 1: @classLabel order b a
    assert (test.inputs[1, 2:] == 0).all()


def case_ids(split):
    return set(split.inputs[:, 0, 0].astype(int).tolist())


def test_validation_split_is_deterministic_and_disjoint(data_dir):
    first, again = tiny_task(data_dir, normalise=False), tiny_task(data_dir, normalise=False)
    other = tiny_task(data_dir, normalise=False, split_seed=3, n_val=4)
    train, val = case_ids(first.splits["train"]), case_ids(first.splits["val"])
    assert not train & val
    # case 1's first value is missing (filled with its second), every other starts with 100 + i
    second = int(tiny_cases(12, 0, [3, 4, 5, 6])[1][0][1, 0])
    assert train | val == {second} | {100 + i for i in range(12) if i != 1}
    assert case_ids(again.splits["val"]) == val
    assert len(other.splits["val"]) == 4 and case_ids(other.splits["val"]) != val


def test_normalisation_uses_valid_training_steps_only(data_dir):
    raw, task = tiny_task(data_dir, normalise=False), tiny_task(data_dir)
    train = raw.splits["train"]
    valid = np.concatenate([x[:n] for x, n in zip(train.inputs, train.lengths, strict=True)])
    np.testing.assert_allclose(task.channel_mean, valid.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(task.channel_std, valid.std(axis=0), rtol=1e-6)
    for split in ("train", "val", "test"):
        before, after = raw.splits[split], task.splits[split]
        mask = np.arange(8)[None, :] < before.lengths[:, None]
        expected = (before.inputs - task.channel_mean) / task.channel_std
        np.testing.assert_allclose(after.inputs[mask], expected[mask], rtol=1e-5, atol=1e-5)
        assert (after.inputs[~mask] == 0).all()
    normalised = np.concatenate(
        [x[:n] for x, n in zip(task.splits["train"].inputs, train.lengths, strict=True)]
    )
    np.testing.assert_allclose(normalised.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(normalised.std(axis=0), 1, atol=1e-5)


def test_padded_steps_do_not_reach_the_outputs(data_dir):
    task = tiny_task(data_dir)
    model = build_model(ModelConfig(architecture="gru", hidden_size=8), task.spec).model
    batch = task.eval_set("test")
    params = model.init(jax.random.key(0), batch.inputs, batch.seq_lengths)
    padded = np.arange(8)[None, :] >= batch.seq_lengths[:, None]
    assert padded.any()
    noise = np.random.default_rng(0).normal(0, 50, batch.inputs.shape).astype(np.float32)
    altered = np.where(padded[..., None], noise, batch.inputs)
    outputs = model.apply(params, batch.inputs, batch.seq_lengths)
    np.testing.assert_allclose(model.apply(params, altered, batch.seq_lengths), outputs, rtol=1e-6)
    # without the lengths the same change does reach the outputs: the check above has teeth
    assert not np.allclose(model.apply(params, altered), model.apply(params, batch.inputs))
    losses = task.metrics(outputs, batch)["cross_entropy"]
    assert np.isfinite(np.asarray(losses)).all()


@needs_sktime
def test_offline_japanese_vowels_loads():
    task = UEAClassification(UEAConfig())
    sizes = task.sizes()
    assert sizes["train"] + sizes["val"] == 270 and sizes["test"] == 370
    assert sizes["val"] == 54
    assert (task.spec.input_dim, task.spec.output_dim, task.spec.seq_len) == (12, 9, 29)
    assert task.lengths_range == (7, 29) and task.class_labels == tuple("123456789")
    assert all(np.isfinite(split.inputs).all() for split in task.splits.values())


@needs_sktime
def test_offline_unknown_name_lists_the_shipped_data_sets():
    with pytest.raises(DataError, match="JapaneseVowels") as raised:
        UEAClassification(UEAConfig(name="NoSuchSet"))
    assert "BasicMotions" in str(raised.value) and "task.source=files" in str(raised.value)


def test_config_defaults_and_checks(compose_config):
    cfg = validate(compose_config(["task=uea"]))
    assert cfg.task.source == "offline" and cfg.task.name == "JapaneseVowels"
    assert cfg.task.n_val is None and cfg.task.normalise is True
    for override, key in [("task.n_val=0", "task.n_val"), ("task.name=' '", "task.name")]:
        with pytest.raises(ConfigError, match=key):
            validate(compose_config(["task=uea", override]))


def test_offline_without_sktime_says_what_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"pip install 'seqbench\[data\]'"):
        UEAClassification(UEAConfig())


def write_equal_length(data_dir, n_train=14, n_test=7):
    """<data_dir>/uea/Even/Even_{TRAIN,TEST}.ts: cases of 5 steps and 2 channels whose first value
    is 100 + the case's index in the merged files; test case 2 repeats training case 3."""
    folder = data_dir / "uea" / "Even"
    folder.mkdir(parents=True)
    cases = tiny_cases(n_train + n_test, 0, [5])
    for i, (values, _) in enumerate(cases):
        values[0, 0] = 100 + i
    cases[n_train + 2] = (cases[3][0].copy(), cases[3][1])
    lines = [case_text(v, y) for v, y in cases]
    header = HEADER.replace("Tiny", "Even")
    (folder / "Even_TRAIN.ts").write_text(header + "\n".join(lines[:n_train]) + "\n")
    (folder / "Even_TEST.ts").write_text(header + "\n".join(lines[n_train:]) + "\n")
    return np.stack([v for v, _ in cases]).astype(np.float32)


def walker_task(data_dir, seed, **kwargs):
    config = UEAConfig(
        source="files",
        data_dir=str(data_dir),
        name="Even",
        split_protocol="walker2024",
        split_seed=seed,
        normalise=False,
        **kwargs,
    )
    return UEAClassification(config)


def test_walker2024_merges_deduplicates_and_splits_70_15_15_as_their_code(tmp_path):
    merged = write_equal_length(tmp_path)
    task = walker_task(tmp_path, 2345)
    assert task.label == "Even (UEA, walker2024)" and task.describe()["repeated_cases_dropped"] == 1
    assert task.sizes() == {"train": 14, "val": 3, "test": 3}  # 20 distinct: int(14.0), int(17.0)
    # their steps, literally (data_dir/process_uea.py and datasets.py at commit 091fb48; train.py)
    _, indices = np.unique(merged, axis=0, return_index=True)
    data = merged[indices]
    with jax.threefry_partitionable(False):
        dataset_key = jax.random.split(jax.random.PRNGKey(2345), 4)[0]
        permutation_key, _ = jax.random.split(dataset_key)
        permutation = np.asarray(jax.random.permutation(permutation_key, len(data)))
    bound1, bound2 = int(len(data) * 0.7), int(len(data) * 0.85)
    for name, part in (("train", slice(None, bound1)), ("val", slice(bound1, bound2))):
        np.testing.assert_array_equal(task.splits[name].inputs, data[permutation[part]])
    np.testing.assert_array_equal(task.splits["test"].inputs, data[permutation[bound2:]])
    ids = [int(v) for s in task.splits.values() for v in s.inputs[:, 0, 0]]
    assert sorted(ids) == sorted({*range(100, 121)} - {100 + 14 + 2})  # the repeat kept once


def test_walker2024_permutation_is_the_one_jax_0_4_drew(tmp_path):
    """JAX 0.4.30 (the Log-NCDE runs' JAX 0.4 line) gives, for seed 2345 and 20 cases, the
    permutation below (jax.random.permutation of the first split of the first of split(PRNGKey(2345),
    4)); later JAX draws different bits unless told otherwise, which the split must not follow."""
    drawn_by_jax_0_4_30 = [9, 16, 6, 17, 7, 3, 19, 13, 18, 15, 0, 5, 8, 1, 2, 11, 14, 4, 10, 12]
    merged = write_equal_length(tmp_path)
    _, indices = np.unique(merged, axis=0, return_index=True)
    task = walker_task(tmp_path, 2345)
    expected = merged[indices][drawn_by_jax_0_4_30[:14]]
    np.testing.assert_array_equal(task.splits["train"].inputs, expected)


def test_walker2024_splits_differ_by_seed_and_repeat_for_one(tmp_path):
    write_equal_length(tmp_path)
    first, again, other = (walker_task(tmp_path, s) for s in (2345, 2345, 3456))
    np.testing.assert_array_equal(first.splits["val"].inputs, again.splits["val"].inputs)
    assert not np.array_equal(first.splits["val"].inputs, other.splits["val"].inputs)
    assert other.sizes() == first.sizes()


def test_walker2024_refuses_ragged_series_and_n_val(data_dir, compose_config):
    with pytest.raises(DataError, match=r"walker2024 needs series of one length.* 2 to 8 steps"):
        tiny_task(data_dir, split_protocol="walker2024")
    with pytest.raises(ConfigError, match=r"task\.n_val"):
        UEAConfig(split_protocol="walker2024", n_val=3)
    with pytest.raises(ConfigError, match=r"task\.split_protocol"):
        validate(compose_config(["task=uea", "task.split_protocol=walker"]))


def test_the_walker2024_preset_and_its_references(compose_config):
    from pathlib import Path

    from seqbench.report.table import load_references
    from seqbench.tasks.uea import WALKER2024_SEEDS

    cfg = validate(compose_config(["experiment=uea_walker2024", "model=lru"]))
    task = cfg.task
    assert (task.split_protocol, task.split_seed, task.normalise) == ("walker2024", 2345, False)
    assert task.split_seed in WALKER2024_SEEDS and cfg.trainer.batch_size == 32
    path = Path(__file__).resolve().parent.parent / "experiments/references/walker2024_uea.yaml"
    columns = load_references(path)["columns"]
    six = {"EigenWorms", "EthanolConcentration", "Heartbeat", "MotorImagery"}
    six |= {"SelfRegulationSCP1", "SelfRegulationSCP2"}
    for column, quoted_mean in (("Log-NCDE", 64.3), ("S5", 61.8), ("LRU", 61.7), ("Mamba", 58.6)):
        rows = columns[f"{column} [Walker 2024]"]
        assert set(rows) == {f"{name} (UEA, walker2024)" for name in six}
        mean = 100 * np.mean([row["accuracy"] for row in rows.values()])
        assert mean == pytest.approx(quoted_mean, abs=0.051)  # the six-set means, rounded
