"""Forecasting: windows and chronological splits recomputed, persistence baseline, CSV files, errors."""

import importlib.util

import jax.numpy as jnp
import numpy as np
import pytest
from datafiles import write_csv

from seqbench.tasks.dataset import DataError
from seqbench.tasks.forecast import ForecastConfig, Forecasting, windows

HAS_STATSMODELS = importlib.util.find_spec("statsmodels") is not None


def test_windows_and_chronological_split_recomputed(tmp_path):
    values = np.sin(np.arange(60) / 3.0) * 10 + np.arange(60)
    write_csv(tmp_path, values)
    task = Forecasting(
        ForecastConfig(source="files", data_dir=str(tmp_path), series="toy", window=5)
    )
    targets = values[5:]  # 55 windows: 38 train, 8 val, 9 test
    assert task.sizes() == {"train": 38, "val": 8, "test": 9}
    train_values = values[: 5 + 38]
    assert task.mean == pytest.approx(train_values.mean())
    assert task.std == pytest.approx(train_values.std())
    recovered = {k: s.targets[:, 0] * task.std + task.mean for k, s in task.splits.items()}
    np.testing.assert_allclose(
        np.concatenate([recovered[k] for k in ("train", "val", "test")]), targets, rtol=1e-5
    )
    first_test = task.splits["test"].inputs[0, :, 0] * task.std + task.mean
    np.testing.assert_allclose(first_test, values[46:51], rtol=1e-5)  # target: values[51]
    assert task.splits["train"].targets.max() * task.std + task.mean < values[5 + 38] + 1e-3


def test_persistence_baseline_and_metrics_in_the_series_units(tmp_path):
    values = np.cumsum(np.random.default_rng(0).normal(size=80)) * 7 + 100
    write_csv(tmp_path, values)
    task = Forecasting(
        ForecastConfig(source="files", data_dir=str(tmp_path), series="toy", window=4)
    )
    n_test = len(task.splits["test"])
    last, nxt = values[-n_test - 1 : -1], values[-n_test:]
    assert task.baseline()["mse"] == pytest.approx(np.mean((last - nxt) ** 2), rel=1e-5)
    assert task.baseline()["mae"] == pytest.approx(np.mean(np.abs(last - nxt)), rel=1e-5)
    test = task.eval_set("test")
    persistence = task.metrics(test.inputs[:, -1, :], test)  # the model output "tomorrow = today"
    assert float(jnp.mean(persistence["mse"])) == pytest.approx(task.baseline()["mse"], rel=1e-4)


def test_windows_helper():
    inputs, targets = windows(np.arange(6.0), 3)
    np.testing.assert_array_equal(inputs, [[0, 1, 2], [1, 2, 3], [2, 3, 4]])
    np.testing.assert_array_equal(targets, [3, 4, 5])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("v\n1\n2\nabc\n", "line 4: not a number: 'abc'"),
        ("v\n", "no values after the header"),
        ("v\n1\nnan\n", "NaN or infinite"),
    ],
)
def test_bad_csv_files(tmp_path, content, message):
    (tmp_path / "forecast").mkdir()
    (tmp_path / "forecast" / "bad.csv").write_text(content)
    with pytest.raises(DataError, match=message):
        Forecasting(ForecastConfig(source="files", data_dir=str(tmp_path), series="bad"))


def test_missing_file_and_too_short_series(tmp_path):
    with pytest.raises(DataError, match=r"missing toy.csv .*task.source=offline"):
        Forecasting(ForecastConfig(source="files", data_dir=str(tmp_path), series="toy"))
    write_csv(tmp_path, np.arange(12.0))
    with pytest.raises(DataError, match="too few for windows of 8"):
        Forecasting(ForecastConfig(source="files", data_dir=str(tmp_path), series="toy", window=8))


@pytest.mark.skipif(not HAS_STATSMODELS, reason="statsmodels (seqbench[data]) not installed")
def test_offline_series_load():
    sunspots = Forecasting(ForecastConfig(series="sunspots", window=24))
    assert sum(sunspots.sizes().values()) == 309 - 24
    co2 = Forecasting(ForecastConfig(series="co2", window=52))
    assert sum(co2.sizes().values()) == 2284 - 52
    assert all(np.isfinite(s.inputs).all() for s in co2.splits.values())
    with pytest.raises(DataError, match="no offline series 'ftse'"):
        Forecasting(ForecastConfig(series="ftse"))
