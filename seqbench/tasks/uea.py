"""Time-series classification from the UEA/UCR archive (Bagnall et al. 2018; Dau et al. 2019).

Each case is a series of T_i steps of C channels with one class label, classified from its last
valid step. Data sets come as a pair of `.ts` files (the sktime/aeon "ts" format, read by
`seqbench.tasks.formats.ts`), `<Name>_TRAIN.ts` and `<Name>_TEST.ts`.

Preprocessing: a missing value takes the last observed value of its channel in the same case
(values missing before a channel's first observation take that first value; 0 for a channel with
none). With `normalise` (the default) each channel
is z-normalised with the mean and standard deviation of the training split's valid steps (the
validation and test cases and the padding never enter the statistics; a constant channel keeps
std 1). Cases of unequal length are zero-padded at the end to the longest case over all splits and
carry their lengths, which the models use to mask the padding and to read out at the last valid
step; when every case has the same length no lengths are passed. Labels become 0..K-1 in the order
of the training file's `@classLabel`.

Splits (`split_protocol`): "archive" (the default) takes the `_TEST.ts` file as "test" and holds out
`n_val` cases (default 20% of the training file, at least 1) of the `_TRAIN.ts` file as "val",
drawn with `split_seed`; "train" is the rest. "walker2024" is the protocol of Walker et al. 2024
(Log-NCDE, ICML 2024; Benjamin-Walker/log-neural-cdes at commit 091fb48, the "outputs from paper
experiments": `data_dir/process_uea.py`, `data_dir/datasets.py` `dataset_generator`, `train.py`):
the training and test files are merged (training cases first), repeated cases are dropped and the
rest put in the order of `np.unique(data, axis=0, return_index=True)` (rows sorted, the first
occurrence of each kept; float32 as their JAX arrays), then a permutation of the N cases drawn by
JAX from `split_seed` as their seed (key = PRNGKey(seed); the first of split(key, 4); the first of
its split; `jax.random.permutation(that, N)`, with JAX 0.4's threefry random bits, which later JAX
changed) gives train = the first int(0.7 N), val = the next up to int(0.85 N), test = the rest.
Their seeds are 2345, 3456, 4567, 5678 and 6789 (`WALKER2024_SEEDS`), one split per seed. Their
series are of equal length (ragged data sets are refused) and, unlike the default here, were not
normalised (presets set `normalise: false`); `n_val` does not apply. They read the archive's
`.arff` files, here the `.ts` files of the same data; the repository's 2025 version (commit
2e6cea4) keeps the first occurrences in file order instead of sorted, which gives other splits.

Sources: "files" reads `<data_dir>/uea/<Name>/<Name>_TRAIN.ts` and `<Name>_TEST.ts` (gzipped or
not); "offline" reads the same files shipped inside the sktime package (seqbench[data]), found
without importing sktime: JapaneseVowels (12 channels, lengths 7-29, 9 speakers; 270 training and
370 test cases), BasicMotions, GunPoint, ItalyPowerDemand, ArrowHead, OSULeaf, ACSF1, PLAID and
UnitTest.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqbench.config import choice, require
from seqbench.tasks.base import TaskSpec
from seqbench.tasks.dataset import (
    ArraySplit,
    ClassificationTask,
    DataError,
    DatasetTaskConfig,
    hold_out,
    pad_sequences,
)
from seqbench.tasks.formats.files import require_files
from seqbench.tasks.formats.ts import TsData, read_ts

NAME_PATTERN = re.compile(r"[A-Za-z0-9_\-]+")
INSTALL_HINT = "pip install 'seqbench[data]'"
#: how the cases are split (see the module docstring)
SPLIT_PROTOCOLS = ("archive", "walker2024")
#: the seeds of Walker et al. 2024's repeats (experiment_configs/repeats/*/<Name>.json)
WALKER2024_SEEDS = (2345, 3456, 4567, 5678, 6789)
WALKER2024_BOUNDS = (0.7, 0.85)


@dataclass
class UEAConfig(DatasetTaskConfig):
    """Options of a UEA/UCR classification data set (`task=uea`)."""

    #: the archive's name of the data set, e.g. JapaneseVowels (offline: matched case-insensitively
    #: among the data sets shipped with sktime)
    name: str = "JapaneseVowels"
    #: training cases held out for validation (null: 20% of the training file, at least 1)
    n_val: int | None = None
    #: z-normalise each channel with the training split's statistics
    normalise: bool = True
    #: "archive": the _TEST.ts file as test, validation held out of _TRAIN.ts; "walker2024": both
    #: files merged, de-duplicated and split 70/15/15 by a JAX permutation from split_seed
    split_protocol: str = "archive"

    def __post_init__(self) -> None:
        super().__post_init__()
        choice(self.split_protocol, "task.split_protocol", SPLIT_PROTOCOLS)
        if self.split_protocol == "walker2024":
            require(
                self.n_val is None,
                "task.n_val",
                "does not apply with task.split_protocol=walker2024 (15% of the cases validate)",
            )
        require(bool(self.name.strip()), "task.name", "must name a data set, e.g. JapaneseVowels")
        require(
            NAME_PATTERN.fullmatch(self.name) is not None,
            "task.name",
            f"data set name {self.name!r} must be letters, digits, _ or -",
        )
        if self.n_val is not None:
            require(self.n_val > 0, "task.n_val", f"must be positive, got {self.n_val}")


def sktime_data_root() -> Path:
    """The folder of data sets shipped inside the installed sktime package (not imported)."""
    spec = importlib.util.find_spec("sktime")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the offline UEA/UCR data sets come with sktime: {INSTALL_HINT} "
            "(or task.source=files with <data_dir>/uea/<Name>/<Name>_TRAIN.ts and _TEST.ts)"
        )
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data"


def _is_classification(path: Path) -> bool:
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            words = line.strip().lower().split()
            if words[:1] == ["@data"]:
                return False
            if words[:2] == ["@classlabel", "true"]:
                return True
    return False


def shipped_names(root: Path) -> list[str]:
    """The classification data sets in `root` with both a `_TRAIN.ts` and a `_TEST.ts` file."""
    if not root.is_dir():
        return []
    return sorted(
        folder.name
        for folder in root.iterdir()
        if (folder / f"{folder.name}_TEST.ts").is_file()
        and (folder / f"{folder.name}_TRAIN.ts").is_file()
        and _is_classification(folder / f"{folder.name}_TRAIN.ts")
    )


def offline_files(name: str) -> tuple[str, Path, Path]:
    """(canonical name, train file, test file) of a data set shipped with sktime; the name is
    matched case-insensitively."""
    root = sktime_data_root()
    names = shipped_names(root)
    matches = [shipped for shipped in names if shipped.lower() == name.lower()]
    if not matches:
        raise DataError(
            f"UEA data set {name!r} is not among the classification data sets shipped with sktime "
            f"(in {root}): "
            f"{', '.join(names) or 'none'}. Others: task.source=files with "
            f"<data_dir>/uea/{name}/{name}_TRAIN.ts and {name}_TEST.ts"
        )
    name = matches[0]
    return name, root / name / f"{name}_TRAIN.ts", root / name / f"{name}_TEST.ts"


def local_files(data_dir: Path, name: str) -> tuple[Path, Path]:
    """(train file, test file) of `<data_dir>/uea/<name>/`; DataError naming both when one is
    missing."""
    try:
        shipped = shipped_names(sktime_data_root())
        offline = f"the data sets shipped with sktime ({', '.join(shipped)})"
    except DataError:
        offline = f"the data sets shipped with sktime ({INSTALL_HINT})"
    train, test = require_files(
        data_dir / "uea" / name,
        [f"{name}_TRAIN.ts", f"{name}_TEST.ts"],
        f"UEA {name} (task.source=files)",
        f"Run `seqbench data download {name}` (see `seqbench data list`), or use "
        f"task.source=offline for {offline}.",
    )
    return train, test


def walker2024_split(inputs: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) indices into `inputs` (N, T, C), the merged training then test cases, as
    Walker et al. 2024 split them for `seed` (see the module docstring); repeated cases are in none.
    Each index array is in the order of their permutation."""
    import jax

    _, first = np.unique(inputs.astype(np.float32), axis=0, return_index=True)
    n = len(first)
    with jax.threefry_partitionable(False):  # JAX 0.4's random bits, as their runs drew them
        dataset_key = jax.random.split(jax.random.PRNGKey(seed), 4)[0]
        permutation_key = jax.random.split(dataset_key)[0]
        order = np.asarray(jax.random.permutation(permutation_key, n))
    bound1, bound2 = (int(n * bound) for bound in WALKER2024_BOUNDS)
    picked = first[order]  # positions in `inputs` of the deduplicated, sorted cases, permuted
    return picked[:bound1], picked[bound1:bound2], picked[bound2:]


def channel_stats(split: ArraySplit) -> tuple[np.ndarray, np.ndarray]:
    """(C,) mean and std of each channel over the valid (unpadded) steps of `split`; std 1 where a
    channel is constant."""
    valid = split.inputs[_valid_mask(split)].astype(np.float64)
    mean, std = valid.mean(axis=0), valid.std(axis=0)
    return mean, np.where(std > 1e-8, std, 1.0)


def _valid_mask(split: ArraySplit) -> np.ndarray:
    steps = split.inputs.shape[1]
    if split.lengths is None:
        return np.ones(split.inputs.shape[:2], bool)
    return np.arange(steps)[None, :] < split.lengths[:, None]


def normalise_split(split: ArraySplit, mean: np.ndarray, std: np.ndarray) -> ArraySplit:
    """`split` with every valid step z-normalised by (C,) `mean` and `std`; padding stays 0."""
    scaled = (split.inputs - mean) / std
    scaled = np.where(_valid_mask(split)[..., None], scaled, 0.0).astype(np.float32)
    return ArraySplit(scaled, split.targets, split.lengths)


class UEAClassification(ClassificationTask):
    """One UEA/UCR classification data set read from `.ts` files; see the module docstring.

    Inputs (B, T_max, C) float32 zero-padded after each case's length; seq_lengths (B,) int32 (None
    when every case has length T_max); targets (B,) int32 in [0, K).
    """

    config: UEAConfig

    def load_offline(self, config: UEAConfig) -> tuple[str, Path, Path]:
        return offline_files(config.name)

    def load_files(self, data_dir: Path, config: UEAConfig) -> tuple[str, Path, Path]:
        return (config.name, *local_files(data_dir, config.name))

    def prepare(self, loaded: tuple[str, Path, Path]) -> dict[str, ArraySplit]:
        """Read (name, train file, test file): pad, hold out validation, normalise."""
        name, train_path, test_path = loaded
        config = self.config
        self.dataset = name
        self.name = f"uea_{name.lower()}"
        train_file, test_file = read_ts(train_path), read_ts(test_path)
        self.class_labels = train_file.class_labels
        if test_file.n_channels != train_file.n_channels:
            raise DataError(
                f"UEA {name}: {test_path.name} has {test_file.n_channels} channels, "
                f"{train_path.name} {train_file.n_channels}"
            )
        unknown = sorted(set(test_file.labels) - set(self.class_labels))
        if unknown:
            raise DataError(
                f"UEA {name}: {test_path.name} has labels {', '.join(unknown)} that are not in "
                f"the @classLabel of {train_path.name}"
            )
        all_series = train_file.series + test_file.series
        self.lengths_range = (min(map(len, all_series)), max(map(len, all_series)))
        steps = self.lengths_range[1]
        ragged = self.lengths_range[0] != steps
        pool, test = (self._split(data, steps, ragged) for data in (train_file, test_file))
        if config.split_protocol == "walker2024":
            train, val, test = self._walker2024(name, pool, test, ragged, config.split_seed)
        else:
            n_val = max(1, round(0.2 * len(pool))) if config.n_val is None else config.n_val
            if not 0 < n_val < len(pool):
                raise ValueError(
                    f"uea: n_val={n_val} must be between 1 and {len(pool) - 1} "
                    f"({len(pool)} training cases in {name})"
                )
            train, val = hold_out(pool, n_val, config.split_seed)
        self.channel_mean = self.channel_std = None
        if config.normalise:
            self.channel_mean, self.channel_std = channel_stats(train)
            train, val, test = (
                normalise_split(split, self.channel_mean, self.channel_std)
                for split in (train, val, test)
            )
        self.spec = TaskSpec("real", train_file.n_channels, len(self.class_labels), steps, "last")
        return {"train": train, "val": val, "test": test}

    def _walker2024(
        self, name: str, train_file: ArraySplit, test_file: ArraySplit, ragged: bool, seed: int
    ) -> tuple[ArraySplit, ArraySplit, ArraySplit]:
        """Walker et al. 2024's (train, val, test) of the merged files' cases."""
        if ragged:
            low, high = self.lengths_range
            raise DataError(
                f"UEA {name}: task.split_protocol=walker2024 needs series of one length (as the "
                f"six sets of Walker et al. 2024), the cases have {low} to {high} steps"
            )
        merged = ArraySplit(
            np.concatenate([train_file.inputs, test_file.inputs]),
            np.concatenate([train_file.targets, test_file.targets]),
        )
        indices = walker2024_split(merged.inputs, seed)
        self.n_repeated = len(merged) - sum(len(index) for index in indices)
        if min(len(index) for index in indices) == 0:
            raise DataError(
                f"UEA {name}: {len(merged) - self.n_repeated} distinct cases are too few for a "
                "70/15/15 split with every split non-empty"
            )
        train, val, test = (merged.take(index) for index in indices)
        return train, val, test

    def describe(self) -> dict:
        out = {**super().describe(), "split_protocol": self.config.split_protocol}
        if self.config.split_protocol == "walker2024":
            out["repeated_cases_dropped"] = self.n_repeated
        return out

    @property
    def label(self) -> str:
        if self.config.split_protocol == "walker2024":
            return f"{self.dataset} (UEA, walker2024)"
        return f"{self.dataset} (UEA)"

    def _split(self, data: TsData, steps: int, ragged: bool) -> ArraySplit:
        """The cases of one file as (N, steps, C) inputs zero-padded at the end, (N,) int32 class
        indices and (N,) lengths (None when every case has `steps` steps)."""
        inputs, lengths = pad_sequences(data.series, steps)
        index = {label: i for i, label in enumerate(self.class_labels)}
        targets = np.array([index[label] for label in data.labels], np.int32)
        return ArraySplit(inputs, targets, lengths if ragged else None)
