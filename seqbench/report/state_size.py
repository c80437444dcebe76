"""Metric against recurrent state size: how much a model must keep to solve a task (zoology's
accuracy-against-state-size picture, Arora et al. 2023 Fig. 2).

Every finished record that knows its model's state size (`model.state_size`: floats of recurrent
state per example, every layer and direction) is one point: x the state size (log scale), y the test
metric's mean over seeds at each seed's best validation step, the seeds' range as an error bar. Every
configuration is drawn (not only the one a table would choose): a panel per task, the points of one
architecture joined in order of state size. Models without a recurrent state (the TCN records its
receptive field instead) are left out and named on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from seqbench.records import FINISHED, RunRecord, metric_key
from seqbench.report.generalisation import default_metric
from seqbench.report.plot import DEFAULT_FORMATS, display_metric, save_figure, seed_band
from seqbench.report.table import display_model, model_label, sort_models, task_label, task_order


def seed_values(record: RunRecord, metric: str) -> np.ndarray:
    """(S,) each seed's `metric` ("<split>/<name>") at its best validation step (NaN: none)."""
    values = [(seed.best or {}).get(metric) for seed in record.per_seed]
    return np.asarray([np.nan if v is None else v for v in values], dtype=float)


def state_size_points(
    records: list[RunRecord], metric: str | None = None
) -> dict[str, dict[str, list[tuple[int, float, float, float]]]]:
    """{task label: {model label: [(state size, mean, low, high)] sorted by state size}} over the
    finished records with a state size; `metric` bare or "<split>/<name>" (default: accuracy
    where the task reports it, else its primary metric, on test)."""
    points: dict[str, dict[str, list[tuple[int, float, float, float]]]] = {}
    for record in records:
        if record.status not in FINISHED or record.model.state_size is None:
            continue
        name = metric_key(metric or default_metric(record))
        if name.partition("/")[2] not in record.task.metrics:
            raise ValueError(f"{task_label(record)} / {model_label(record)} has no metric {name!r}")
        mean, low, high = (float(v[0]) for v in seed_band(seed_values(record, name)[None, :]))
        by_model = points.setdefault(task_label(record), {})
        by_model.setdefault(model_label(record), []).append(
            (record.model.state_size, mean, low, high)
        )
    for by_model in points.values():
        for series in by_model.values():
            series.sort()
    return points


def plot_state_size(
    records: list[RunRecord],
    out: str | Path,
    *,
    metric: str | None = None,
    formats: tuple[str, ...] = DEFAULT_FORMATS,
) -> list[Path]:
    """Draw each task's metric against the recurrent state size of every finished record that has
    one; return the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finished = [r for r in records if r.status in FINISHED]
    stateless = sorted({model_label(r) for r in finished if r.model.state_size is None})
    if stateless:
        print(f"seqbench: no recurrent state size recorded, left out: {', '.join(stateless)}",
              file=sys.stderr)  # fmt: skip
    points = state_size_points(finished, metric)
    if not points:
        raise ValueError("no finished run records its model's state size")
    order = task_order(r for r in finished if task_label(r) in points)
    tasks = sorted(points, key=order.__getitem__)
    models = sort_models(m for by_model in points.values() for m in by_model)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(
        1, len(tasks), figsize=(5.0 * len(tasks), 3.8), squeeze=False, constrained_layout=True
    )
    baseline_of = {task_label(r): r for r in finished}
    for ax, task in zip(axes[0], tasks, strict=True):
        for model, series in points[task].items():
            sizes, mean, low, high = np.asarray(series, dtype=float).T
            color = colors[models.index(model) % len(colors)]
            ax.plot(sizes, mean, color=color, marker="o", label=display_model(model))
            ax.vlines(sizes, low, high, color=color, linewidth=1.5)  # the seeds' range
        record = baseline_of[task]
        name = metric_key(metric or default_metric(record))
        baseline = record.task.baseline.get(name.partition("/")[2])
        if baseline is not None:
            ax.axhline(baseline, color="grey", linestyle="--", linewidth=1, label="baseline")
        ax.set_xscale("log")
        ax.set_title(task, fontsize="medium")
        ax.set_xlabel("recurrent state (floats per example)")
        ax.set_ylabel(display_metric(name))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return save_figure(fig, out, formats)
