"""One-step-ahead forecasting of a real univariate series from a sliding window.

A series x_1..x_N is z-normalised with the mean and standard deviation of its training segment and
cut into windows: input (x_{t-W+1}, ..., x_t) as W steps of one feature, target x_{t+1}. The series is
split in time, never shuffled across the split: a window belongs to the segment holding its target
(first 70% of the targets train, next 15% validation, last 15% test), so no test value is ever seen
in training; a window's inputs may reach back into the previous segment, as they would in use.
Metrics, in the series' own units: MSE and MAE; the baseline is the persistence forecast x_{t+1} = x_t
on the test windows, the number a forecaster has to beat.

Sources: "offline" reads the series shipped with statsmodels (seqbench[data]): sunspots (yearly
sunspot numbers 1700-2008, 309 values), co2 (weekly Mauna Loa CO2 1958-2001, 2,284 values, its 59
missing weeks filled by linear interpolation) and nile (yearly Nile flow 1871-1970, 100 values).
"files" reads `<data_dir>/forecast/<series>.csv`: a header line, then one value per line in its last
column (earlier columns, e.g. dates, are ignored; see `seqbench.tasks.formats.series_csv`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from seqbench.config import require
from seqbench.tasks.base import Batch, TaskSpec
from seqbench.tasks.dataset import ArraySplit, DataError, DatasetTask, DatasetTaskConfig
from seqbench.tasks.formats.files import require_files
from seqbench.tasks.formats.series_csv import read_series_csv

#: offline series: statsmodels dataset module and column
OFFLINE_SERIES = {"sunspots": "SUNACTIVITY", "co2": "co2", "nile": "volume"}
SPLIT_FRACTIONS = (0.70, 0.15, 0.15)


@dataclass
class ForecastConfig(DatasetTaskConfig):
    """Options of one-step-ahead forecasting (`task=forecast`); split_seed is unused (the split is
    chronological)."""

    #: offline: sunspots, co2 or nile (statsmodels); files: <data_dir>/forecast/<series>.csv
    series: str = "sunspots"
    #: W, the past values each forecast reads
    window: int = 24

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(self.series), "task.series", "must not be empty")
        require(self.window > 0, "task.window", f"must be positive, got {self.window}")


def load_offline_series(name: str) -> np.ndarray:
    """(N,) float64 values of a statsmodels series (missing values interpolated linearly)."""
    if name not in OFFLINE_SERIES:
        raise DataError(
            f"forecast: no offline series {name!r}; shipped: {', '.join(OFFLINE_SERIES)} "
            "(or task.source=files for your own CSV)"
        )
    try:
        import importlib

        module = importlib.import_module(f"statsmodels.datasets.{name}")
    except ImportError:
        raise DataError(
            "the offline forecasting series need statsmodels: pip install 'seqbench[data]' "
            "(or task.source=files with <data_dir>/forecast/<series>.csv)"
        ) from None
    values = np.array(module.load_pandas().data[OFFLINE_SERIES[name]], dtype=np.float64)
    missing = np.isnan(values)
    if missing.any():
        index = np.arange(len(values))
        values[missing] = np.interp(index[missing], index[~missing], values[~missing])
    return values


def windows(series: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (N - W, W) and targets (N - W,): each window of W values and the value after it."""
    index = np.arange(window)[None, :] + np.arange(len(series) - window)[:, None]
    return series[index], series[window:]


class Forecasting(DatasetTask):
    """Next-value regression from the last `window` values; see the module docstring.

    Inputs (B, W, 1) float32 (normalised); targets (B, 1) float32 (normalised). The model's output is
    read as a normalised prediction; metrics convert back to the series' units.
    """

    metric_directions = {"mse": "min", "mae": "min"}  # noqa: RUF012
    primary_metric = "mse"

    config: ForecastConfig

    def __init__(self, config: ForecastConfig):
        self.series, self.window = config.series, config.window
        self.name = f"forecast_{config.series}"
        super().__init__(config)
        self.spec = TaskSpec("real", 1, 1, config.window, "last")

    def load_offline(self, config: ForecastConfig) -> np.ndarray:
        return load_offline_series(config.series)

    def load_files(self, data_dir: Path, config: ForecastConfig) -> np.ndarray:
        (path,) = require_files(
            data_dir / "forecast",
            [f"{config.series}.csv"],
            "forecast (task.source=files)",
            f"Use task.source=offline for the series shipped with statsmodels "
            f"({', '.join(OFFLINE_SERIES)}).",
        )
        return read_series_csv(path)

    def prepare(self, values: np.ndarray) -> dict[str, ArraySplit]:
        """(N,) values -> normalised windows split in time (see the module docstring)."""
        series, window = self.series, self.window
        n_targets = len(values) - window
        bounds = np.cumsum([round(f * n_targets) for f in SPLIT_FRACTIONS[:2]])
        if n_targets < 10 or min(bounds[0], bounds[1] - bounds[0], n_targets - bounds[1]) < 1:
            raise DataError(
                f"forecast: {series} has {len(values)} values, too few for windows of {window} "
                "and a train / validation / test split"
            )
        train_end = window + bounds[0]  # values up to here are training targets (or before)
        self.mean = float(values[:train_end].mean())
        self.std = float(values[:train_end].std()) or 1.0
        normalised = ((values - self.mean) / self.std).astype(np.float32)
        inputs, targets = windows(normalised, window)
        edges = {"train": (0, bounds[0]), "val": (bounds[0], bounds[1]), "test": (bounds[1], None)}
        return {
            name: ArraySplit(inputs[a:b, :, None], targets[a:b, None])
            for name, (a, b) in edges.items()
        }

    @property
    def label(self) -> str:
        return f"{self.series} (window {self.window})"

    def loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        return jnp.mean((outputs - batch.targets) ** 2)

    def metrics(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        error = (outputs - batch.targets)[:, 0] * self.std
        return {"mse": error**2, "mae": jnp.abs(error)}

    def baseline(self) -> dict[str, float]:
        """Persistence (tomorrow = today) on the test windows, in the series' units."""
        test = self.splits["test"]
        error = (test.inputs[:, -1, 0] - test.targets[:, 0]).astype(np.float64) * self.std
        return {"mse": float(np.mean(error**2)), "mae": float(np.mean(np.abs(error)))}

    def describe(self) -> dict:
        return {**super().describe(), "normalisation": {"mean": self.mean, "std": self.std}}
