"""Length generalisation: a task's test metric against the length it is evaluated at.

Runs trained at one length with `task.eval_lengths` record, beside "test/<name>" at the training
length, "test@L/<name>" for each evaluation length L (see `seqbench.tasks.base.length_split`). The
figure has a panel per task (its training setting, e.g. `parity (T=40)`), the evaluation length on
a log-2 axis, and a line per model: the mean over seeds (each seed at its best validation step), the
seeds' range shaded and each seed a dot. The training length is a dotted vertical line and the
trivial baseline at each length a dashed grey line. Where several configurations of one (task,
model) were run, the one the table shows (chosen on validation) is drawn.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from seqbench.records import FINISHED, RunRecord
from seqbench.report.plot import (
    DEFAULT_FORMATS,
    chosen_cells,
    display_metric,
    save_figure,
    seed_band,
)
from seqbench.report.table import display_model, task_label

_LENGTH_SPLIT = re.compile(r"^test@(\d+)$")


def evaluation_lengths(record: RunRecord) -> list[int]:
    """The lengths a record was tested at besides its training length (its `test@L` splits)."""
    splits = {key.partition("/")[0] for seed in record.per_seed for key in (seed.best or {})}
    return sorted(int(m.group(1)) for s in splits if (m := _LENGTH_SPLIT.match(s)))


def default_metric(record: RunRecord) -> str:
    """ "accuracy" where the task reports it (what generalisation is judged by), else its primary."""
    return "accuracy" if "accuracy" in record.task.metrics else record.task.primary_metric


def generalisation_points(record: RunRecord, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(lengths (L,), values (L, S)): the training length then each evaluation length, and each
    seed's test `metric` (bare name) there at its best validation step (NaN where missing)."""
    if record.task.length is None:
        raise ValueError(f"{task_label(record)} has no length to generalise over")
    lengths = [record.task.length, *evaluation_lengths(record)]
    splits = ["test", *(f"test@{n}" for n in lengths[1:])]
    values = np.full((len(lengths), len(record.per_seed)), np.nan)
    for column, seed in enumerate(record.per_seed):
        best = seed.best or {}
        for row, split in enumerate(splits):
            value = best.get(f"{split}/{metric}")
            if value is not None:
                values[row, column] = value
    order = np.argsort(lengths, kind="stable")
    return np.asarray(lengths)[order], values[order]


def baseline_at(record: RunRecord, metric: str, length: int) -> float | None:
    """The trivial predictor's `metric` at `length` (the record's training length or one of its
    evaluation lengths)."""
    if length == record.task.length:
        return record.task.baseline.get(metric)
    at = record.task.extra.get("eval_baselines", {}).get(str(length), {})
    return at.get(metric)


def plot_generalisation(
    records: list[RunRecord],
    out: str | Path,
    *,
    metric: str | None = None,
    formats: tuple[str, ...] = DEFAULT_FORMATS,
) -> list[Path]:
    """Draw the length generalisation of the finished records that were evaluated at other
    lengths (`task.eval_lengths`); return the files written. `metric`: a bare metric name
    (default: accuracy where the task has it, else its primary metric)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if metric is not None and "/" in metric:
        raise ValueError(f"--metric {metric}: give a bare name; the split is each length's test")
    usable = [r for r in records if r.status in FINISHED and evaluation_lengths(r)]
    if not usable:
        raise ValueError(
            "no finished run was evaluated at other lengths (train with task.eval_lengths=[...])"
        )
    chosen, tasks, models = chosen_cells(usable)
    fig, axes = plt.subplots(
        1, len(tasks), figsize=(5.0 * len(tasks), 3.8), squeeze=False, constrained_layout=True
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, task in zip(axes[0], tasks, strict=True):
        name, baselines = None, {}
        for model in models:
            record = chosen.get((task, model))
            if record is None:
                continue
            name = metric or default_metric(record)
            if name not in record.task.metrics:
                raise ValueError(f"{task} / {model} has no metric {name!r}")
            lengths, values = generalisation_points(record, name)
            color = colors[models.index(model) % len(colors)]
            mean, low, high = seed_band(values)
            label = f"{display_model(model)} (n={values.shape[1]})"
            ax.plot(lengths, mean, color=color, marker="o", label=label)
            ax.fill_between(lengths, low, high, color=color, alpha=0.15, linewidth=0)
            for column in range(values.shape[1]):
                ax.scatter(lengths, values[:, column], color=color, s=8, alpha=0.5)
            for length in lengths:
                baselines[int(length)] = baseline_at(record, name, int(length))
            ax.axvline(record.task.length, color="black", linestyle=":", linewidth=1)
        known = sorted((n, b) for n, b in baselines.items() if b is not None)
        if known:
            ax.plot(*zip(*known, strict=True), color="grey", linestyle="--", linewidth=1,
                    label="baseline")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_title(f"{task} (dotted: training length)", fontsize="medium")
        ax.set_xlabel("evaluation length")
        ax.set_ylabel(display_metric(f"test/{name}"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return save_figure(fig, out, formats)
