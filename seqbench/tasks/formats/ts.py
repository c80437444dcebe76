"""The sktime/aeon `.ts` format of the UEA/UCR classification archive (Bagnall et al. 2018; Dau et
al. 2019).

Header lines start with `@` (`@problemName`, `@timeStamps`, `@missing`, `@univariate`,
`@dimensions`, `@equalLength`, `@seriesLength`, `@classLabel true <labels...>`), then `@data` and
one case per line: the channels separated by `:`, the values of a channel by `,`, the class label as
the last `:` field, `?` for a missing value; `#` (or `%`) starts a comment line. Header keywords are
read case-insensitively. The timestamped variant (`@timeStamps true`) and regression files
(`@targetLabel`) are refused. A missing value takes the last observed value of its channel in the
same case (see `fill_missing`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqbench.tasks.formats.files import DataError, read_maybe_gzipped


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
    """Parse a classification `.ts` file (gzipped or not); see the module docstring.

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
