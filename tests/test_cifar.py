"""Sequential CIFAR-10: the python-version batches written in the real format (a tar.gz with the real
member names), pixel order and normalisation, the validation hold-out, the downloader's layout,
and data errors."""

import io
import pickle
import tarfile

import numpy as np
import pytest
from datafiles import cifar_batch_bytes, write_cifar

from seqbench.config import ConfigError
from seqbench.data.catalog import CATALOG
from seqbench.data.download import unpack
from seqbench.store import validate
from seqbench.tasks.cifar import MEAN, STD, CifarConfig, SequentialCIFAR
from seqbench.tasks.dataset import DataError
from seqbench.tasks.formats.cifar import read_cifar_batch


def task_at(data_dir, **options):
    return SequentialCIFAR(CifarConfig(data_dir=str(data_dir), **{"n_val": 5, **options}))


def image_ids(split):
    """The index each example's image had in its split of the fixture (its first red value)."""
    return np.rint((split.inputs[:, 0, 0] * STD[0] + MEAN[0]) * 255).astype(int)


def test_pixels_in_row_major_order_with_rgb_features_normalised_per_channel(tmp_path):
    written = write_cifar(tmp_path)
    task = task_at(tmp_path, split_seed=3)
    assert task.sizes() == {"train": 15, "val": 5, "test": 6}
    spec = task.spec
    assert (spec.seq_len, spec.input_dim, spec.output_dim, spec.readout) == (1024, 3, 10, "last")
    assert task.label == "seq_cifar (colour)" and task.length is None
    images, labels = written["train"]
    ids = {}
    for name in ("train", "val"):
        split = task.splits[name]
        ids[name] = index = image_ids(split)
        planes = images[index].reshape(-1, 3, 32, 32).astype(np.float64) / 255  # R, G, B planes
        for t, (row, column) in ((0, (0, 0)), (1, (0, 1)), (32, (1, 0)), (1023, (31, 31))):
            expected = (planes[:, :, row, column] - MEAN) / STD  # (N, 3)
            np.testing.assert_allclose(split.inputs[:, t, :], expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(split.targets, labels[index])
        assert split.inputs.dtype == np.float32 and split.targets.dtype == np.int32
    assert not set(ids["train"]) & set(ids["val"])
    assert sorted([*ids["train"], *ids["val"]]) == list(range(20))  # all five batches
    np.testing.assert_array_equal(image_ids(task.splits["test"]), np.arange(6))
    np.testing.assert_array_equal(task.splits["test"].targets, written["test"][1])
    again = task_at(tmp_path, split_seed=3)
    np.testing.assert_array_equal(image_ids(again.splits["val"]), ids["val"])
    other = task_at(tmp_path, split_seed=4)
    assert set(image_ids(other.splits["val"])) != set(ids["val"])


def test_the_downloaders_unpacked_batches_read_as_the_archive(tmp_path):
    write_cifar(tmp_path / "archive")
    (remote,) = CATALOG["cifar10"].files
    staging = tmp_path / "unpacked"
    unpack(remote, tmp_path / "archive" / "cifar10" / remote.name, staging)
    assert (staging / "cifar10" / "data_batch_5").is_file()
    from_archive, from_batches = task_at(tmp_path / "archive"), task_at(staging)
    for name in ("train", "val", "test"):
        a, b = from_archive.splits[name], from_batches.splits[name]
        np.testing.assert_array_equal(a.inputs, b.inputs)
        np.testing.assert_array_equal(a.targets, b.targets)


def test_missing_data_names_the_download_command(tmp_path):
    with pytest.raises(DataError) as error:
        task_at(tmp_path)
    message = str(error.value)
    assert "missing data_batch_1" in message and "cifar-10-python.tar.gz" in message
    assert str(tmp_path / "cifar10") in message
    assert "`seqbench data download cifar10`" in message and "\n" not in message
    assert "cifar10" in CATALOG  # the command names a catalog entry


def rewrite_archive(path, replace):
    """Rewrite the fixture archive with `replace`: {member name: new bytes, or None to drop it}."""
    with tarfile.open(path, "r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    with tarfile.open(path, "w:gz") as tar:
        for name, body in members.items():
            short = name.removeprefix("cifar-10-batches-py/")
            body = replace.get(short, body)
            if body is not None:
                info = tarfile.TarInfo(name)
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))


class Hostile:
    def __reduce__(self):
        return (print, ("ran code",))


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        ({"test_batch": None}, "no member cifar-10-batches-py/test_batch"),
        ({"data_batch_2": b"not a pickle"}, r"data_batch_2: corrupt or not a CIFAR-10 batch"),
        ({"data_batch_2": pickle.dumps({b"data": Hostile()})}, "refusing to load builtins.print"),
        ({"test_batch": pickle.dumps([1, 2])}, "expected a dict with b'data' and b'labels'"),
        (
            {"test_batch": cifar_batch_bytes(np.zeros((2, 1024), np.uint8), [0, 1])},
            r"expected \(N, 3072\) uint8 images",
        ),
        (
            {"test_batch": cifar_batch_bytes(np.zeros((2, 3072), np.uint8), [0, 10])},
            "labels outside 0-9",
        ),
        (
            {"test_batch": cifar_batch_bytes(np.zeros((2, 3072), np.uint8), [0])},
            "2 images but labels of shape",
        ),
    ],
)
def test_broken_batches_raise_one_line_data_errors(tmp_path, capsys, replace, message):
    write_cifar(tmp_path)
    rewrite_archive(tmp_path / "cifar10" / "cifar-10-python.tar.gz", replace)
    with pytest.raises(DataError, match=message) as error:
        task_at(tmp_path)
    assert "\n" not in str(error.value)
    assert "ran code" not in capsys.readouterr().out


def test_a_truncated_archive_is_a_data_error(tmp_path):
    write_cifar(tmp_path)
    archive = tmp_path / "cifar10" / "cifar-10-python.tar.gz"
    archive.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(DataError, match="corrupt or truncated archive"):
        task_at(tmp_path)


def test_a_batch_pickled_by_python_2_style_protocol_reads(tmp_path):
    images = np.arange(2 * 3072, dtype=np.int64).reshape(2, 3072).astype(np.uint8)
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        raw = pickle.dumps({b"data": images, b"labels": [3, 4]}, protocol=protocol)
        read, labels = read_cifar_batch(raw, "batch")
        np.testing.assert_array_equal(read, images)
        assert labels.tolist() == [3, 4]


def test_scifar_config_composes_and_checks_values(compose_config):
    cfg = validate(compose_config(["task=scifar"]))
    assert type(cfg.task) is CifarConfig and cfg.task.source == "files"
    assert cfg.task.n_val == 5000
    with pytest.raises(ConfigError, match=r"task\.source"):
        validate(compose_config(["task=scifar", "task.source=offline"]))
    with pytest.raises(ConfigError, match=r"task\.n_val"):
        validate(compose_config(["task=scifar", "task.n_val=0"]))


def test_the_lru_preset_takes_the_published_scifar_setting(compose_config):
    cfg = validate(compose_config(["experiment=scifar_lru"]))
    assert type(cfg.task) is CifarConfig and cfg.model.architecture == "lru"
    assert (cfg.model.hidden_size, cfg.model.n_layers, cfg.model.cell.state_size) == (512, 6, 384)
    assert (cfg.model.cell.r_min, cfg.model.cell.r_max, cfg.model.dropout) == (0.9, 0.999, 0.1)
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.weight_decay) == (
        "adamw",
        4e-3,
        0.05,
    )
    epoch = (50000 - cfg.task.n_val) // cfg.trainer.batch_size
    assert cfg.trainer.steps == 180 * epoch and cfg.trainer.eval_every == epoch
