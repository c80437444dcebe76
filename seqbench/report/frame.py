"""Run records as a pandas DataFrame, for analyses the `seqbench` commands do not make.

    from seqbench.report.frame import load_runs
    runs = load_runs("results/recall")          # one row per (run, seed)
    runs.groupby(["task", "model"])["test/accuracy"].describe()

pandas is not a dependency of seqbench (it comes with the `data` extra); `load_runs` says so in one
line when it is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seqbench.records import FINISHED, find_records, flatten_config, load_record
from seqbench.report.table import model_label, task_label

#: the columns before the metrics and the config, in this order
ID_COLUMNS = (
    "path",
    "name",
    "status",
    "task",
    "family",
    "length",
    "model",
    "architecture",
    "params",
    "seed",
    "seed_status",
    "best_step",
)


def load_runs(*paths: str | Path, which: str = "best", finished_only: bool = True) -> Any:
    """A tidy DataFrame of the run records under `paths` (folders searched for run.json, or
    files): one row per (run, seed) with the ID_COLUMNS, each evaluated metric (`val/mse`,
    `test/mse`, `test@256/accuracy`...) at the seed's `which` evaluation ("best": its best
    validation step; "final": its last), and the run's config flattened into `config.<key>`
    columns. `finished_only`: only completed and diverged runs (what tables read)."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError(
            "load_runs needs pandas: pip install pandas (or seqbench[data], which brings it)"
        ) from None
    if which not in ("best", "final"):
        raise ValueError(f"which: {which!r}; choose best or final")
    rows = []
    for root in paths:
        for found in find_records(Path(root)):
            record = load_record(found)
            if finished_only and record.status not in FINISHED:
                continue
            config = {f"config.{k}": v for k, v in flatten_config(record.config).items()}
            for seed in record.per_seed:
                metrics = getattr(seed, which) or {}
                rows.append(
                    {
                        "path": record.path,
                        "name": record.name,
                        "status": record.status,
                        "task": task_label(record),
                        "family": record.task.family,
                        "length": record.task.length,
                        "model": model_label(record),
                        "architecture": record.model.architecture,
                        "params": record.model.param_count,
                        "seed": seed.seed,
                        "seed_status": seed.status,
                        "best_step": seed.best_step,
                        **{k: (float("nan") if v is None else v) for k, v in metrics.items()},
                        **config,
                    }
                )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=list(ID_COLUMNS))
    metrics = sorted(
        c for c in frame.columns if c not in ID_COLUMNS and "/" in c and not c.startswith("config.")
    )
    config = sorted(c for c in frame.columns if c.startswith("config."))
    return frame[[*ID_COLUMNS, *metrics, *config]]
