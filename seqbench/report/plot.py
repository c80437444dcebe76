"""Learning curves of run records: one panel per task, one line per model, a band over seeds.

Each line is the mean over a run's seeds of an evaluation metric (the test split unless the name
says "val/...") at every evaluation step (seeds that diverged drop out from their divergence on),
with a band from the lowest to the highest seed; the task's trivial baseline is a dashed grey line.
Where several configurations of one (task, model) were run, the one the table shows (chosen on
validation) is drawn. Written as PNG and SVG with matplotlib.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seqbench.records import metric_key
from seqbench.report.table import (
    choose_per_cell,
    model_label,
    report_selections,
    sort_models,
    task_label,
)

PLOT_FORMATS = ("png", "svg")


def curve(
    record: dict[str, Any], metric: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, low, high), each (E,): mean, min and max over the seeds with a finite value
    at each evaluation step (NaN where no seed has one). `metric`: "<split>/<name>" or a bare
    name for its test curve."""
    curves = record["curves"]
    steps = np.asarray(curves["eval_steps"], dtype=float)
    values = np.asarray(curves["eval"][metric_key(metric)], dtype=float)  # (E, S)
    if values.ndim == 1:
        values = values[:, None]
    finite = np.isfinite(values)
    counts = finite.sum(axis=1)
    has = counts > 0
    mean = np.where(has, np.where(finite, values, 0.0).sum(axis=1) / np.maximum(counts, 1), np.nan)
    low = np.where(has, np.where(finite, values, np.inf).min(axis=1), np.nan)
    high = np.where(has, np.where(finite, values, -np.inf).max(axis=1), np.nan)
    return steps, mean, low, high


def plot_curves(
    records: list[dict[str, Any]],
    out: str | Path,
    *,
    metric: str | None = None,
    formats: tuple[str, ...] = PLOT_FORMATS,
    log_y: str = "auto",
) -> list[Path]:
    """Draw the curves of the completed or diverged records; return the files written.

    `metric`: the metric to draw (default: each task's primary metric). `out`: the file path
    without suffix; one file per format. `log_y`: "auto" (log scale where every value is positive
    and they span over two decades), "on" or "off".
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    usable = [
        r for r in records if r.get("status") in ("completed", "diverged") and r.get("curves")
    ]
    chosen, selections = choose_per_cell(usable)
    report_selections(selections)
    tasks = sorted({task for task, _ in chosen})
    if not tasks:
        raise ValueError("no finished run with learning curves to plot")
    fig, axes = plt.subplots(
        1, len(tasks), figsize=(5.0 * len(tasks), 3.8), squeeze=False, constrained_layout=True
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    models = sort_models(m for _, m in chosen)
    for ax, task in zip(axes[0], tasks, strict=True):
        shown_metric, baseline, lows = None, None, []
        for model in models:
            record = chosen.get((task, model))
            if record is None:
                continue
            name = metric_key(metric or record["task"]["primary_metric"])
            if name not in record["curves"]["eval"]:
                raise ValueError(
                    f"{task_label(record)} / {model_label(record)} has no metric {name!r}"
                )
            steps, mean, low, high = curve(record, name)
            color = colors[models.index(model) % len(colors)]
            n = len(record.get("seeds") or [])
            ax.plot(steps, mean, color=color, label=f"{model} (n={n})")
            ax.fill_between(steps, low, high, color=color, alpha=0.2, linewidth=0)
            shown_metric = name
            baseline = record["task"]["baseline"].get(name.split("/", 1)[1])
            lows.append(low[np.isfinite(low)])
        if baseline is not None:
            ax.axhline(baseline, color="grey", linestyle="--", linewidth=1, label="baseline")
        values = np.concatenate([v for v in lows if v.size] or [np.array([1.0])])
        positive = values.size and (values > 0).all()
        if log_y == "on" or (log_y == "auto" and positive and values.max() / values.min() > 100.0):
            ax.set_yscale("log")
        ax.set_title(task)
        ax.set_xlabel("training step")
        ax.set_ylabel(shown_metric or "")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        path = out.with_name(f"{out.name}.{fmt}")
        tmp = path.with_name(f".{path.name}.tmp")
        fig.savefig(tmp, format=fmt, dpi=150)
        tmp.replace(path)
        written.append(path)
    plt.close(fig)
    return written
