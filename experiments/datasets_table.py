"""Markdown table of data-set runs: size per split, training time per epoch, test metrics.

python experiments/datasets_table.py RUN_OR_SWEEP_DIR...
"""

from __future__ import annotations

import sys
from pathlib import Path

from seqbench.records import FINISHED, RunRecord, find_records, load_record, metric_key
from seqbench.report.table import format_value, task_label

HEADER = (
    "| data set | train / val / test | steps per epoch | training s per epoch | steps/s "
    "| test (best val) |"
)


def row(record: RunRecord) -> str:
    sizes = record.task.extra.get("sizes", {})
    batch = record.config["trainer"]["batch_size"]
    steps_per_epoch = max(sizes.get("train", 0) // batch, 1)
    if record.task.name.startswith("text_"):  # one epoch: one pass of the streams
        steps_per_epoch = max((sizes["train"] // batch - 1) // record.config["task"]["bptt"], 1)
    epoch_s = steps_per_epoch / record.timing.steps_per_s
    metrics = []
    for name, direction in record.task.metrics.items():
        stats = record.summary.best.get(metric_key(name))
        baseline = record.task.baseline.get(name)
        metrics.append(
            f"{name} {'↓' if direction == 'min' else '↑'} "
            f"{format_value(stats.mean if stats else None)} (baseline {format_value(baseline)})"
        )
    split = " / ".join(f"{sizes.get(k, 0):,}" for k in ("train", "val", "test"))
    return (
        f"| {task_label(record)} | {split} | {steps_per_epoch:,} | {epoch_s:.2g} | "
        f"{record.timing.steps_per_s:.1f} | {'; '.join(metrics)} |"
    )


def table_lines(records: list[RunRecord]) -> list[str]:
    """The table's Markdown lines: one row per finished record, sorted by data set."""
    finished = [r for r in records if r.status in FINISHED]
    return [
        HEADER,
        "|---|---|---|---|---|---|",
        *(row(r) for r in sorted(finished, key=lambda r: r.task.sort_key())),
    ]


def main(paths: list[str]) -> None:
    records = [load_record(p) for path in paths for p in find_records(Path(path))]
    print("\n".join(table_lines(records)))


if __name__ == "__main__":
    main(sys.argv[1:])
