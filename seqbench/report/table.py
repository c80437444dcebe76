"""A Markdown table of run records: one row per task and metric, one column per model.

Entries are mean ± std over seeds of each seed's final evaluation, with the task's trivial baseline
beside them, so a model stuck at its baseline shows at a glance.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

ARROWS = {"min": "↓", "max": "↑"}


def model_label(record: dict[str, Any]) -> str:
    """The column a record goes in: its cell, marked when it is not the cell's default form."""
    model = record["config"]["model"]
    label = model["cell"]
    if model["cell"] == "simple_rnn":
        if model.get("recurrent_init") == "identity":
            label = "irnn" if model.get("activation") == "relu" else "simple_rnn (identity)"
        elif model.get("activation") == "relu":
            label = "simple_rnn (relu)"
    if model.get("n_layers", 1) > 1:
        label += f" ×{model['n_layers']}"
    if model.get("bidirectional"):
        label = "bi-" + label
    return label


def task_label(record: dict[str, Any]) -> str:
    task = record["config"]["task"]
    name = record["task"]["name"]
    variant = task.get("variant")
    suffix = f", {variant}" if variant and variant != "tcn" else ""
    return f"{name} (T={task['length']}{suffix})"


def format_value(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e4):
        return f"{value:.2e}"
    return f"{value:.4f}"


def format_entry(stats: dict[str, Any] | None, n_seeds: int) -> str:
    if not stats or stats["mean"] is None:
        return "diverged" if stats else "–"
    entry = f"{format_value(stats['mean'])} ± {format_value(stats['std'])}"
    if stats["n"] < n_seeds:
        entry += f" ({stats['n']}/{n_seeds} seeds)"
    return entry


def markdown_table(records: list[dict[str, Any]]) -> str:
    """The table of the completed (or diverged) records; later records win on the same cell."""
    rows: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    baselines: dict[tuple[str, str], float] = {}
    params: dict[str, dict[str, str]] = defaultdict(dict)
    columns: list[str] = []
    order = {"simple_rnn": 0, "lstm": 1, "gru": 2}
    usable = [
        r for r in records if r.get("status") in ("completed", "diverged") and r.get("summary")
    ]
    for record in usable:
        column, task = model_label(record), task_label(record)
        if column not in columns:
            columns.append(column)
        n_seeds = len(record["seeds"])
        for metric, direction in record["task"]["metrics"].items():
            key = (task, f"{metric} {ARROWS[direction]}")
            rows[key][column] = format_entry(record["summary"]["final"].get(metric), n_seeds)
            baselines[key] = record["task"]["baseline"].get(metric)
        params[task][column] = f"{record['model']['param_count']:,}"
    columns.sort(key=lambda c: (order.get(c.split(" ")[0].removeprefix("bi-"), 9), c))
    header = ["task", "metric", "baseline", *columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task, metric in sorted(rows):
        entries = [rows[(task, metric)].get(c, "–") for c in columns]
        base = format_value(baselines[(task, metric)])
        lines.append("| " + " | ".join([task, metric, base, *entries]) + " |")
    for task in sorted(params):
        entries = [params[task].get(c, "–") for c in columns]
        lines.append("| " + " | ".join([task, "parameters", "", *entries]) + " |")
    return "\n".join(lines)
