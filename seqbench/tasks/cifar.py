"""Sequential CIFAR-10 in colour (sCIFAR; Gu et al. 2022 "S4", Smith et al. 2023 "S5", Orvieto et al.
2023 "LRU").

Each 32 x 32 colour image becomes 1,024 steps, one pixel per step in row-major order (row t // 32,
column t % 32), with 3 features: its red, green and blue values, scaled to [0, 1] and normalised per
channel with mean (0.4914, 0.4822, 0.4465) and std (0.247, 0.243, 0.261). This follows the colour
CIFAR10 data set of S5 (lindermanlab/S5 `s5/dataloaders/basic.py`, `CIFAR10` with grayscale=False:
ToTensor, Normalize with those constants, "z h w -> (h w) z"), which S4 introduced and the LRU
paper's sCIFAR runs (minimal-LRU's `cifar-classification`) use; no augmentation. 10 classes,
classified from the last step.

Source: "files" only (no offline copy), CIFAR-10's python version in `<data_dir>/cifar10/`:
`data_batch_1` .. `data_batch_5` and `test_batch` as `seqbench data download cifar10` unpacks them,
or the archive `cifar-10-python.tar.gz` itself (read by `seqbench.tasks.formats.cifar`). The 10,000
test images are the test split; `n_val` (default 5,000, the 10% of S5's val_split) of the 50,000
training images are held out for validation, drawn by a NumPy generator seeded with `split_seed`
(S5 draws its 10% with torch's random_split and seed 42, so the held-out images differ).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from seqbench.config import require
from seqbench.tasks.base import TaskSpec
from seqbench.tasks.dataset import ArraySplit, ClassificationTask, DatasetTaskConfig, hold_out
from seqbench.tasks.formats.cifar import CHANNELS, N_CLASSES, PIXELS, load_cifar10, pixel_sequences

MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
STD = np.array([0.247, 0.243, 0.261], np.float32)
FILES_VAL = 5000
DOWNLOAD_HINT = "Run `seqbench data download cifar10` (CIFAR-10's python version; no offline copy)."


@dataclass
class CifarConfig(DatasetTaskConfig):
    """Options of sequential CIFAR-10 (`task=scifar`). No offline copy: source is "files" only."""

    #: CIFAR-10's python version in <data_dir>/cifar10/ (the only source)
    source: str = "files"
    #: validation images held out of the 50,000 training images
    n_val: int = FILES_VAL
    sources: ClassVar[tuple[str, ...]] = ("files",)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.n_val > 0, "task.n_val", f"must be positive, got {self.n_val}")


class SequentialCIFAR(ClassificationTask):
    """Sequential colour CIFAR-10, 10 classes; see the module docstring.

    Inputs (B, 1024, 3) float32, normalised per channel; targets (B,) int32.
    """

    config: CifarConfig
    name = "seq_cifar"

    def __init__(self, config: CifarConfig):
        super().__init__(config)
        self.spec = TaskSpec("real", CHANNELS, N_CLASSES, PIXELS, "last")

    def load_files(self, data_dir: Path, config: CifarConfig) -> dict[str, ArraySplit]:
        loaded = load_cifar10(data_dir / "cifar10", DOWNLOAD_HINT)
        train, test = (self._split(*loaded[k]) for k in ("train", "test"))
        train, val = hold_out(train, config.n_val, config.split_seed)
        return {"train": train, "val": val, "test": test}

    @property
    def label(self) -> str:
        return f"{self.name} (colour)"

    @staticmethod
    def _split(images: np.ndarray, labels: np.ndarray) -> ArraySplit:
        """(N, 3072) uint8 images and (N,) labels -> (N, 1024, 3) float32 normalised pixel
        sequences and (N,) int32 targets."""
        pixels = pixel_sequences(images).astype(np.float32) / 255.0
        return ArraySplit((pixels - MEAN) / STD, labels.astype(np.int32))
