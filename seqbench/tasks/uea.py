"""Time-series classification from the UEA/UCR archive (Bagnall et al. 2018; Dau et al. 2019).

Each case is a series of T_i steps of C channels with one class label, classified from its last
valid step. Data sets come as a pair of `.ts` files (the sktime/aeon "ts" format), `<Name>_TRAIN.ts`
and `<Name>_TEST.ts`: header lines starting with `@` (`@problemName`, `@timeStamps`, `@missing`,
`@univariate`, `@dimensions`, `@equalLength`, `@seriesLength`, `@classLabel true <labels...>`), then
`@data` and one case per line: the channels separated by `:`, the values of a channel by `,`, the
class label as the last `:` field, `?` for a missing value; `#` (or `%`) starts a comment line. Header
keywords are read case-insensitively. The timestamped variant (`@timeStamps true`) and regression
files (`@targetLabel`) are refused.

Preprocessing: a missing value takes the last observed value of its channel in the same case
(missing values before the first observation become 0). With `normalise` (the default) each channel
is z-normalised with the mean and standard deviation of the training split's valid steps (the
validation and test cases and the padding never enter the statistics; a constant channel keeps
std 1). Cases of unequal length are zero-padded at the end to the longest case over all splits and
carry their lengths, which the models use to mask the padding and to read out at the last valid
step; when every case has the same length no lengths are passed. Labels become 0..K-1 in the order
of the training file's `@classLabel`.

Splits: "test" is the `_TEST.ts` file; "val" holds out `n_val` cases (default 20% of the training
file, at least 1) of the `_TRAIN.ts` file, drawn with `split_seed`; "train" is the rest.

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

from seqbench.tasks.base import TaskSpec
from seqbench.tasks.dataset import (
    ArraySplit,
    ClassificationTask,
    DataError,
    hold_out,
    pad_sequences,
    read_maybe_gzipped,
    require_files,
)

NAME_PATTERN = re.compile(r"[A-Za-z0-9_\-]+")
INSTALL_HINT = "pip install 'seqbench[data]'"


@dataclass(frozen=True)
class TsData:
    """The cases of one `.ts` file.

    series: one (T_i, C) float32 array per case, missing values filled (see `fill_missing`).
    labels: one class label string per case, each in `class_labels`.
    class_labels: the `@classLabel` values, in the header's order.
    """

    problem_name: str | None
    class_labels: tuple[str, ...]
    series: list[np.ndarray]
    labels: list[str]

    @property
    def n_channels(self) -> int:
        return self.series[0].shape[1]


def fill_missing(values: np.ndarray) -> np.ndarray:
    """(T, C) with NaN replaced by the last earlier non-NaN value of the same channel; NaN before a
    channel's first observation takes that first observed value (0 for a channel with none)."""
    missing = np.isnan(values)
    if not missing.any():
        return values
    steps = np.arange(len(values))[:, None]
    channels = np.arange(values.shape[1])
    last_seen = np.maximum.accumulate(np.where(missing, 0, steps), axis=0)
    filled = values[last_seen, channels]
    first_seen = np.argmax(~missing, axis=0)
    first = np.where(missing.all(axis=0), 0.0, values[first_seen, channels])
    return np.where(np.isnan(filled), first[None, :], filled).astype(values.dtype)


def _read_lines(path: Path) -> list[str]:
    raw = read_maybe_gzipped(path)
    try:
        return raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not a text .ts file ({error})") from None


def _flag(path: Path, number: int, key: str, value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise DataError(f"{path}:{number}: @{key} must be true or false, got {value!r}")
    return value.lower() == "true"


def _count(path: Path, number: int, key: str, value: str) -> int:
    if not value.isdigit() or int(value) == 0:
        raise DataError(f"{path}:{number}: @{key} must be a positive integer, got {value!r}")
    return int(value)


def read_ts(path: Path) -> TsData:
    """Parse a classification `.ts` file (gzipped or not); see the module docstring for the format.

    DataError (one line, naming the file and line) for a timestamped or regression file, a header
    without `@classLabel true`, a missing `@data`, no cases, a case with the wrong number of
    channels, channels of different lengths, a value that is not a number, or an unknown label.
    """
    path = Path(path)
    problem_name, class_labels = None, None
    univariate, dimensions, equal_length, series_length = None, None, None, None
    series: list[np.ndarray] = []
    labels: list[str] = []
    in_data = False
    for number, line in enumerate(_read_lines(path), start=1):
        line = line.strip()
        if not line or line.startswith(("#", "%")):
            continue
        if line.startswith("@"):
            if in_data:
                raise DataError(f"{path}:{number}: header line {line.split()[0]} after @data")
            key, _, value = line[1:].partition(" ")
            key, value = key.lower(), value.strip()
            if key == "problemname":
                problem_name = value
            elif key == "timestamps":
                if _flag(path, number, "timeStamps", value):
                    raise DataError(
                        f"{path}:{number}: @timeStamps true (timestamped series) is not supported; "
                        "give the values only, one series per channel"
                    )
            elif key == "univariate":
                univariate = _flag(path, number, "univariate", value)
            elif key == "dimensions":
                dimensions = _count(path, number, "dimensions", value)
            elif key == "equallength":
                equal_length = _flag(path, number, "equalLength", value)
            elif key == "serieslength":
                series_length = _count(path, number, "seriesLength", value)
            elif key == "targetlabel" and value.lower().startswith("true"):
                raise DataError(
                    f"{path}:{number}: @targetLabel: a regression data set, not classification"
                )
            elif key == "classlabel":
                flag, *names = value.split() or [""]
                if _flag(path, number, "classLabel", flag):
                    if not names or len(set(names)) != len(names):
                        raise DataError(
                            f"{path}:{number}: @classLabel true needs distinct class labels"
                        )
                    class_labels = tuple(names)
            elif key == "data":
                if class_labels is None:
                    raise DataError(
                        f"{path}:{number}: no @classLabel true header before @data: "
                        "not a classification data set"
                    )
                if univariate and dimensions not in (None, 1):
                    raise DataError(
                        f"{path}:{number}: @univariate true contradicts @dimensions {dimensions}"
                    )
                if univariate:
                    dimensions = 1
                in_data = True
            # other header lines (e.g. @missing) need no action: `?` is accepted everywhere
            continue
        if not in_data:
            raise DataError(f"{path}:{number}: data line before @data")
        *channels, label = line.split(":")
        if not channels:
            raise DataError(
                f"{path}:{number}: no ':' between values and class label (malformed or truncated line)"
            )
        if dimensions is None:
            dimensions = len(channels)  # multivariate without @dimensions: the first case decides
        if len(channels) != dimensions:
            raise DataError(
                f"{path}:{number}: {len(channels)} channel(s) and a label, expected {dimensions} "
                "(malformed or truncated line)"
            )
        label = label.strip()
        if label not in class_labels:
            raise DataError(
                f"{path}:{number}: class label {label!r} is not among @classLabel "
                f"{' '.join(class_labels)} (malformed or truncated line?)"
            )
        try:
            columns = [
                np.asarray(channel.replace("?", "nan").split(","), dtype=np.float64)
                for channel in channels
            ]
        except ValueError as error:
            raise DataError(f"{path}:{number}: not a number ({error})") from None
        lengths = sorted({len(column) for column in columns})
        if len(lengths) > 1:
            raise DataError(f"{path}:{number}: channels of different lengths {lengths} in one case")
        if equal_length and series_length is not None and lengths[0] != series_length:
            raise DataError(
                f"{path}:{number}: {lengths[0]} steps, the header promises @seriesLength "
                f"{series_length}"
            )
        values = np.stack(columns, axis=1)
        if np.isinf(values).any():
            raise DataError(f"{path}:{number}: infinite value")
        series.append(fill_missing(values).astype(np.float32))
        labels.append(label)
    if not in_data:
        raise DataError(f"{path}: no @data line (truncated, or not a .ts file)")
    if not series:
        raise DataError(f"{path}: no cases after @data (truncated file?)")
    assert class_labels is not None
    return TsData(problem_name, class_labels, series, labels)


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
        f"Use task.source=offline for {offline}.",
    )
    return train, test


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

    def __init__(
        self,
        source: str = "offline",
        data_dir: str = "~/.cache/seqbench/data",
        cache_dir: str | None = None,
        name: str = "JapaneseVowels",
        n_val: int | None = None,
        split_seed: int = 0,
        normalise: bool = True,
    ):
        del cache_dir  # parsing the .ts files is fast enough
        if not NAME_PATTERN.fullmatch(name or ""):
            raise ValueError(f"uea: data set name {name!r} must be letters, digits, _ or -")
        if source == "offline":
            name, train_path, test_path = offline_files(name)
        elif source == "files":
            train_path, test_path = local_files(Path(data_dir).expanduser(), name)
        else:
            raise ValueError(f"uea: unknown source {source!r}; choose from offline, files")
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
        pool, test = (
            self._split(data.series, data.labels, steps, ragged) for data in (train_file, test_file)
        )
        n_val = max(1, round(0.2 * len(pool))) if n_val is None else n_val
        if not 0 < n_val < len(pool):
            raise ValueError(
                f"uea: n_val={n_val} must be between 1 and {len(pool) - 1} "
                f"({len(pool)} training cases in {name})"
            )
        train, val = hold_out(pool, n_val, split_seed)
        self.channel_mean = self.channel_std = None
        if normalise:
            self.channel_mean, self.channel_std = channel_stats(train)
            train, val, test = (
                normalise_split(split, self.channel_mean, self.channel_std)
                for split in (train, val, test)
            )
        self.splits = {"train": train, "val": val, "test": test}
        self.spec = TaskSpec("real", train_file.n_channels, len(self.class_labels), steps, "last")

    @property
    def label(self) -> str:
        return f"{self.dataset} (UEA)"

    def _split(
        self, series: list[np.ndarray], labels: list[str], steps: int, ragged: bool
    ) -> ArraySplit:
        inputs, lengths = pad_sequences(series, steps)
        index = {label: i for i, label in enumerate(self.class_labels)}
        targets = np.array([index[label] for label in labels], np.int32)
        return ArraySplit(inputs, targets, lengths if ragged else None)
