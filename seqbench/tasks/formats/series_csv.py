"""One real series per CSV file: a header line, then one value per line in the last column
(earlier columns, e.g. dates, are ignored)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from seqbench.tasks.formats.files import DataError


def read_series_csv(path: Path) -> np.ndarray:
    """(N,) float64: the last column of a CSV file after its header line."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read ({error})") from None
    values = []
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            values.append(float(row[-1]))
        except ValueError:
            raise DataError(f"{path}, line {number}: not a number: {row[-1]!r}") from None
    if not values:
        raise DataError(f"{path}: no values after the header line")
    series = np.asarray(values)
    if not np.isfinite(series).all():
        raise DataError(f"{path}: contains NaN or infinite values")
    return series
