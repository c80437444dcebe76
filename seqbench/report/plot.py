"""Figures of run records: learning curves (a panel per task, a line per model, a band over
seeds) and gradient flow (a panel per task and cell, ||dL/dh_t|| against t, a line per training
step at which it was measured).

Each line is the mean over a run's seeds of an evaluation metric (the test split unless the name
says "val/...") at every evaluation step (seeds that diverged drop out from their divergence on),
with a band from the lowest to the highest seed and each seed's last finite value as a dot (the
seeds themselves, where the band only shows their spread); the task's trivial baseline is a
dashed grey line.
Where several configurations of one (task, model) were run, the one the table shows (chosen on
validation) is drawn. Written as PNG and SVG with matplotlib.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seqbench.records import FINISHED, RunRecord, metric_key
from seqbench.report.table import (
    choose_per_cell,
    display_model,
    model_label,
    registered_task,
    report_selections,
    sort_models,
    task_label,
    task_order,
)

PLOT_FORMATS = ("png", "svg", "pdf")
#: the formats written when none is asked for
DEFAULT_FORMATS = ("png", "svg")
#: how figures name each metric, with its unit
METRIC_NAMES = {
    "mse": "MSE",
    "mae": "MAE",
    "cross_entropy": "cross-entropy (nats)",
    "nll": "NLL (nats per step)",
    "bpc": "bits per character",
    "accuracy": "accuracy",
    "recall_accuracy": "recall accuracy",
}


def display_metric(key: str) -> str:
    """`test/cross_entropy` -> `test cross-entropy (nats)`; a metric without an entry in
    METRIC_NAMES keeps its name."""
    split, _, name = metric_key(key).partition("/")
    return f"{split} {METRIC_NAMES.get(name, name)}"


def figure_metric(record: RunRecord) -> str:
    """The metric a figure draws for `record` unless told: its task's `figure_metric` (e.g. copy
    memory's recall accuracy; records written before tasks named one get it from the registered
    task of the same name), else its primary metric."""
    named = record.task.extra.get("figure_metric")
    if named is None:
        named = getattr(registered_task(record.task.name), "figure_metric", None)
    return named if named in record.task.metrics else record.task.primary_metric


#: learning-curve panels per row; more tasks wrap onto further rows
MAX_COLUMNS = 4


def curve(record: RunRecord, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, low, high), each (E,): mean, min and max over the seeds with a finite value
    at each evaluation step (NaN where no seed has one). `metric`: "<split>/<name>" or a bare
    name for its test curve."""
    steps = np.asarray(record.curves.eval_steps, dtype=float)
    values = np.asarray(record.curves.eval[metric_key(metric)], dtype=float)  # (E, S)
    if values.ndim == 1:
        values = values[:, None]
    return (steps, *seed_band(values))


def seed_ends(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y), each (K,): the step and value of each seed's last finite evaluation, for the K
    seeds of `values` (E, S) that have one (`steps` (E,))."""
    finite = np.isfinite(values)
    has = finite.any(axis=0)
    last = values.shape[0] - 1 - np.argmax(finite[::-1], axis=0)  # (S,) last finite row
    seeds = np.flatnonzero(has)
    return steps[last[seeds]], values[last[seeds], seeds]


def seed_band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, low, high), each (N,), of `values` (N, S): mean, min and max over the seeds with a
    finite value in each row (NaN where none has one)."""
    finite = np.isfinite(values)
    counts = finite.sum(axis=1)
    has = counts > 0
    mean = np.where(has, np.where(finite, values, 0.0).sum(axis=1) / np.maximum(counts, 1), np.nan)
    low = np.where(has, np.where(finite, values, np.inf).min(axis=1), np.nan)
    high = np.where(has, np.where(finite, values, -np.inf).max(axis=1), np.nan)
    return mean, low, high


def chosen_cells(
    records: list[RunRecord],
) -> tuple[dict[tuple[str, str], RunRecord], list[str], list[str]]:
    """(record per (task label, model label), task labels in table order, model labels in
    column order): the configuration each figure draws per cell, chosen as the table chooses
    (`choose_per_cell`, each choice reported on stderr)."""
    chosen, selections = choose_per_cell(records)
    report_selections(selections)
    order = task_order(chosen.values())
    tasks = sorted(order, key=order.__getitem__)  # by family, then length as a number
    return chosen, tasks, sort_models(m for _, m in chosen)


def plot_curves(
    records: list[RunRecord],
    out: str | Path,
    *,
    metric: str | None = None,
    formats: tuple[str, ...] = DEFAULT_FORMATS,
    log_y: str = "auto",
) -> list[Path]:
    """Draw the curves of the completed or diverged records; return the files written.

    `metric`: the metric to draw (default: each task's `figure_metric`). `out`: the file path
    without suffix; one file per format. `log_y`: "auto" (log scale where every value is positive
    and they span over two decades), "on" or "off".
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    usable = [r for r in records if r.status in FINISHED and r.curves]
    chosen, tasks, models = chosen_cells(usable)
    if not tasks:
        raise ValueError("no finished run with learning curves to plot")
    columns = min(len(tasks), MAX_COLUMNS)
    rows = -(-len(tasks) // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(5.0 * columns, 3.8 * rows), squeeze=False, constrained_layout=True
    )
    for ax in axes.flat[len(tasks) :]:
        ax.set_axis_off()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, task in zip(axes.flat, tasks, strict=False):
        shown_metric, baseline, lows = None, None, []
        for model in models:
            record = chosen.get((task, model))
            if record is None:
                continue
            name = metric_key(metric or figure_metric(record))
            if name not in record.curves.eval:
                raise ValueError(
                    f"{task_label(record)} / {model_label(record)} has no metric {name!r}"
                )
            steps, mean, low, high = curve(record, name)
            color = colors[models.index(model) % len(colors)]
            n = len(record.seeds)
            ax.plot(steps, mean, color=color, label=f"{display_model(model)} (n={n})")
            ax.fill_between(steps, low, high, color=color, alpha=0.2, linewidth=0)
            per_seed = np.asarray(record.curves.eval[name], dtype=float).reshape(len(steps), -1)
            ax.scatter(*seed_ends(steps, per_seed), color=color, s=10, alpha=0.7, linewidths=0)
            shown_metric = name
            baseline = record.task.baseline.get(name.split("/", 1)[1])
            lows.append(low[np.isfinite(low)])
        if baseline is not None:
            ax.axhline(baseline, color="grey", linestyle="--", linewidth=1, label="baseline")
        values = np.concatenate([v for v in lows if v.size] or [np.array([1.0])])
        positive = values.size and (values > 0).all()
        if log_y == "on" or (log_y == "auto" and positive and values.max() / values.min() > 100.0):
            ax.set_yscale("log")
        ax.set_title(task)
        ax.set_xlabel("training step")
        ax.set_ylabel(display_metric(shown_metric) if shown_metric else "")
        ax.grid(alpha=0.3)
        if len(tasks) == 1:
            ax.legend(fontsize="small")
    if len(tasks) > 1:
        shared_legend(fig, axes.flat)
    return save_figure(fig, out, formats)


def shared_legend(fig: Any, axes: Any) -> None:
    """One legend for the figure, below its panels: each model once (its seed count in the
    label) and the baseline, from whichever panels draw them."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    fig.legend(
        entries.values(), entries.keys(), loc="outside lower center", ncol=min(len(entries), 6),
        fontsize="small",
    )  # fmt: skip


def save_figure(
    fig: Any, out: str | Path, formats: tuple[str, ...] = DEFAULT_FORMATS
) -> list[Path]:
    """Write `fig` to `<out>.<format>` for each format (each through a temporary file renamed into
    place, so a failed write leaves no partial file), create the folder, close the figure."""
    import matplotlib.pyplot as plt

    out = Path(out)
    written = []
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for fmt in formats:
            path = out.with_name(f"{out.name}.{fmt}")
            tmp = path.with_name(f".{path.name}.tmp")
            try:
                fig.savefig(tmp, format=fmt, dpi=150)
                tmp.replace(path)
            finally:
                tmp.unlink(missing_ok=True)
            written.append(path)
    finally:
        plt.close(fig)
    return written


def flow_curves(record: RunRecord, layer: int = 0) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """[(training step, geometric mean over seeds (T,), (S, T) per seed)] of a record's gradient
    flow ||dL/dh_t|| for recurrent layer `layer`; seeds with a non-finite value are left out."""
    flow = record.gradient_flow
    curves = []
    for step, norms in zip(flow.steps, flow.norm, strict=True):
        per_seed = np.asarray(norms, dtype=float)[:, layer]  # (S, T)
        usable = per_seed[np.isfinite(per_seed).all(axis=1) & (per_seed > 0).any(axis=1)]
        if usable.size:
            with np.errstate(divide="ignore"):
                mean = np.exp(np.log(usable).mean(axis=0))
            curves.append((int(step), mean, usable))
    return curves


def plot_gradient_flow(
    records: list[RunRecord],
    out: str | Path,
    *,
    layer: int = 0,
    formats: tuple[str, ...] = DEFAULT_FORMATS,
) -> list[Path]:
    """Gradient flow of the records that measured it: a row per task, a panel per cell, a line per
    training step at which it was measured (geometric mean over seeds, the seeds' range shaded),
    ||dL/dh_t|| against the time step t on a log scale. Return the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    usable = [r for r in records if r.status in FINISHED and r.gradient_flow]
    if not usable:
        raise ValueError(
            "no finished run measured its gradient flow (train with trainer.gradient_flow_steps)"
        )
    chosen, tasks, models = chosen_cells(usable)
    fig, axes = plt.subplots(
        len(tasks),
        len(models),
        figsize=(4.2 * len(models), 3.4 * len(tasks)),
        squeeze=False,
        sharey="row",
        constrained_layout=True,
    )
    cmap = plt.get_cmap("viridis")
    for row, task in zip(axes, tasks, strict=True):
        for ax, model in zip(row, models, strict=True):
            record = chosen.get((task, model))
            ax.set_title(f"{task} · {display_model(model)}", fontsize="medium")
            ax.set_xlabel("time step t")
            ax.grid(alpha=0.3)
            if record is None:
                ax.set_axis_off()
                continue
            n_layers = np.asarray(record.gradient_flow.norm[0]).shape[1]
            if not 0 <= layer < n_layers:
                raise ValueError(f"--layer {layer}: {task} / {model} has {n_layers} layer(s)")
            curves = flow_curves(record, layer)
            for index, (step, mean, per_seed) in enumerate(curves):
                color = cmap(0.85 * index / max(len(curves) - 1, 1))
                t = np.arange(mean.size)
                ax.plot(t, mean, color=color, label=f"step {step:,}")
                ax.fill_between(
                    t, per_seed.min(axis=0), per_seed.max(axis=0), color=color, alpha=0.15, lw=0
                )
            ax.set_yscale("log")
            ax.legend(fontsize="small", title=f"n={len(record.seeds)} seeds")
        row[0].set_ylabel(f"||dL/dh_t|| (layer {layer})")
    return save_figure(fig, out, formats)
