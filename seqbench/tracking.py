"""Mirror a run to an experiment tracker (Weights & Biases); the run record stays the source of truth.

A tracker receives the metrics at every evaluation and the finished run record. `NullTracker`
(`logger=none`) does nothing. `WandbTracker` (`logger=wandb`) keeps one wandb run per seed, opened
with ``reinit="create_new"`` so that jobs sharing one process (Hydra's basic launcher, reused joblib
workers) never write into each other's runs. Any wandb error prints one warning and turns the
tracker off; training and the local run record carry on. So does a (nearly) full disk under wandb's
folder, checked at every evaluation: wandb's service writes from its own process and would lose
the data without a word, and a clean finish still needs room (`WANDB_MIN_FREE`).

The tracker is the writer's: it takes the `RunRecord` the trainer is building (the wandb run ids are
added to it). Reading back goes the other way: `records_from_wandb` rebuilds typed `RunRecord`s
from the logged runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from seqbench.config import LoggerConfig
from seqbench.diskfull import (
    describe,
    disk_fault,
    free_space,
    human_size,
    mount_point,
    quiet_disk_faults,
)
from seqbench.records import FINISHED, SCHEMA_VERSION, RunRecord, Timing, config_identity

#: below this many free bytes on its folder's file system, wandb is given up (with one warning)
WANDB_MIN_FREE = 1 << 20


class Tracker(Protocol):
    def log_eval(
        self, step: int, eval_metrics: dict[str, np.ndarray], train_loss: np.ndarray | None
    ) -> None:
        """Metrics of every seed at one evaluation: eval_metrics {"<split>/<name>": (S,)},
        train_loss (S,)."""

    def log_gradient_flow(self, step: int, norms: np.ndarray) -> None:
        """Gradient flow measured at training step `step`: norms (S, L, T), ||dL/dh_t|| per seed,
        layer and time step."""

    def finish(self, record: RunRecord) -> None:
        """Close the runs with the (completed, diverged, failed or interrupted) run record (the
        writer's `RunRecord`)."""


class NullTracker:
    """`logger=none`: the run record is the only log."""

    def log_eval(self, step, eval_metrics, train_loss) -> None:
        pass

    def log_gradient_flow(self, step, norms) -> None:
        pass

    def finish(self, record) -> None:
        pass


def config_group(name: str, resolved: dict[str, Any]) -> str:
    """`<name>-<8 hex>`: the same for every seed of one configuration, whatever the run folder."""
    return f"{name}-{config_identity(resolved)[:8]}"


def wandb_mode(configured: str | None) -> str:
    """The configured mode, else $WANDB_MODE, else offline (works with no account or network)."""
    return configured or os.environ.get("WANDB_MODE") or "offline"


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


class WandbTracker:
    """One wandb run per seed of one job; see the module docstring."""

    def __init__(
        self,
        cfg: LoggerConfig,
        resolved: dict[str, Any],
        record: RunRecord,
        output_dir: Path,
    ) -> None:
        self.runs: dict[int, Any] = {}
        self.seeds: list[int] = list(record.seeds)
        self.active = True
        self.dir = Path(cfg.dir) if cfg.dir else output_dir
        try:
            import wandb

            group = cfg.group or config_group(record.name, resolved)
            self.dir.mkdir(parents=True, exist_ok=True)
            quiet_disk_faults()  # wandb's debug.log on a full disk: no "--- Logging error ---"
            if self._out_of_space("start"):
                return
            settings = wandb.Settings(init_timeout=cfg.init_timeout, console="off", silent=True)
            tags = [
                *resolved.get("tags", []),
                record.task.name,
                record.model.architecture,
            ]
            run_ids = record.wandb_run_ids or {}  # a resumed job continues its runs
            for seed in self.seeds:
                run_id = run_ids.get(str(seed))
                self.runs[seed] = wandb.init(
                    id=run_id,
                    resume="allow" if run_id else None,
                    project=cfg.project,
                    entity=cfg.entity,
                    group=group,
                    job_type=cfg.job_type,
                    name=f"{group}-seed{seed}",
                    tags=list(dict.fromkeys(str(t) for t in tags)),
                    config={
                        **resolved,
                        "seed": seed,
                        "param_count": record.model.param_count,
                        # what `seqbench runs/table --wandb` needs to rebuild a run record
                        "seqbench": {
                            "schema_version": SCHEMA_VERSION,
                            "name": record.name,
                            "task": record.task.to_json(),
                            "model": record.model.to_json(),
                        },
                    },
                    dir=str(self.dir),
                    mode=wandb_mode(cfg.mode),
                    reinit="create_new",
                    settings=settings,
                )
            record.wandb_run_ids = {str(seed): run.id for seed, run in self.runs.items()}
        except Exception as error:  # any wandb failure must not stop training
            self._give_up("start", error)

    def _out_of_space(self, what: str) -> bool:
        """Give wandb up when its folder has less than WANDB_MIN_FREE bytes left."""
        free = free_space(self.dir)
        if free is None or free >= WANDB_MIN_FREE:
            return False
        self._give_up(
            what,
            f"no space left on device under {self.dir}: {human_size(free)} free on "
            f"{mount_point(self.dir)}, less than the {human_size(WANDB_MIN_FREE)} it needs",
        )
        return True

    def _give_up(self, what: str, error: BaseException | str) -> None:
        if isinstance(error, str):
            reason = error
        elif (fault := disk_fault(error)) is not None:
            reason = describe(fault, fallback=self.dir)
        else:
            reason = f"{type(error).__name__}: {error}"
        print(
            f"seqbench: warning: wandb could not {what} ({reason}); "
            "training goes on with the local run record only",
            file=sys.stderr,
        )
        self.active = False
        for run in self.runs.values():
            try:
                run.finish(exit_code=1, quiet=True)
            except Exception:  # already failing; the warning was printed
                pass
        self.runs = {}

    def log_eval(self, step, eval_metrics, train_loss) -> None:
        if not self.active or self._out_of_space("log"):
            return
        try:
            for index, seed in enumerate(self.seeds):
                row = {k: _finite(v[index]) for k, v in eval_metrics.items()}
                if train_loss is not None:
                    row["train/loss"] = _finite(train_loss[index])
                self.runs[seed].log(row, step=step)
        except Exception as error:
            self._give_up("log", error)

    def log_gradient_flow(self, step, norms) -> None:
        """Per seed: a table (t, layer, norm) and its line plot under "gradient_flow/step_<n>"."""
        if not self.active or self._out_of_space("log"):
            return
        try:
            import wandb

            for index, seed in enumerate(self.seeds):
                rows = [
                    [t, layer, _finite(value)]
                    for layer, values in enumerate(norms[index])
                    for t, value in enumerate(values)
                ]
                table = wandb.Table(columns=["t", "layer", "grad_norm"], data=rows)
                title = f"||dL/dh_t|| at step {step}"
                self.runs[seed].log(
                    {
                        f"gradient_flow/step_{step}": wandb.plot.line(
                            table, "t", "grad_norm", title=title
                        )
                    },
                    step=step,
                )
        except Exception as error:
            self._give_up("log", error)

    def finish(self, record: RunRecord) -> None:
        if not self.active or self._out_of_space("finish"):
            return
        try:
            per_seed = {s.seed: s for s in record.per_seed or []}
            timing = record.timing or Timing()
            for seed, run in self.runs.items():
                result = per_seed.get(seed)
                status = result.status if result is not None else record.status
                summary: dict[str, Any] = {
                    "status": status,
                    "param_count": record.model.param_count,
                    "hidden_size": record.model.hidden_size,
                    "steps_per_s": timing.steps_per_s,
                    "tokens_per_s": timing.tokens_per_s,
                    "compile_s": timing.compile_s,
                    "diverged_step": result.diverged_step if result is not None else None,
                    "best_step": result.best_step if result is not None else None,
                }
                for kind in ("final", "best"):
                    metrics = (getattr(result, kind) or {}) if result is not None else {}
                    for metric, value in metrics.items():
                        summary[f"{kind}/{metric}"] = None if value is None else _finite(value)
                if record.error:
                    summary["error"] = record.error
                run.summary.update(summary)
                if status == "interrupted":  # resumed by id when the job is run again
                    getattr(run, "mark_preempting", lambda: None)()
                run.finish(exit_code=0 if status in FINISHED else 1)
        except Exception as error:
            self._give_up("finish", error)
        finally:
            self.runs = {}
            self.active = False


def make_tracker(
    cfg: LoggerConfig, resolved: dict[str, Any], record: RunRecord, output_dir: Path
) -> Tracker:
    """The tracker `logger.name` asks for; wandb in mode "disabled" is not even imported.

    `record`: the `RunRecord` being written; a wandb tracker sets its `wandb_run_ids`.
    """
    if cfg.name == "wandb" and wandb_mode(cfg.mode) != "disabled":
        return WandbTracker(cfg, resolved, record, output_dir)
    return NullTracker()


def records_from_wandb(
    path: str,
    api: Any = None,
    timeout: int = 30,
    skip: Callable[[ValueError], None] | None = None,
) -> list[RunRecord]:
    """Run records rebuilt from the wandb runs of `entity/project` that seqbench logged (see
    `records_json_from_wandb`), each read as a `RunRecord` (its `path`: `wandb:<project>/<group>`).

    A rebuilt record that is malformed is handed to `skip` (its one-line ValueError) and left out;
    without `skip` the ValueError is raised. ValueError (one line) when the project cannot be read.
    """
    records = []
    for data in records_json_from_wandb(path, api, timeout):
        try:
            records.append(RunRecord.from_json(data, data.get("path")))
        except ValueError as error:
            if skip is None:
                raise
            skip(error)
    return records


def records_json_from_wandb(path: str, api: Any = None, timeout: int = 30) -> list[dict[str, Any]]:
    """The run records of the wandb runs of `entity/project` that seqbench logged, as JSON objects
    in run.json's layout (with a "path" entry, `wandb:<project>/<group>`).

    The runs of one group (the seeds of one job) become one record with per-seed final and best
    metrics from each run's summary; runs without seqbench's own config entry are skipped. The
    record's format is the one the runs were logged with (2 for runs that did not log it).
    Raises ValueError (one line) when the project cannot be read.
    """
    if api is None:
        import wandb

        try:
            api = wandb.Api(timeout=timeout)
        except Exception as error:
            raise ValueError(f"cannot reach wandb: {type(error).__name__}: {error}") from None
    try:
        runs = list(api.runs(path))
    except Exception as error:
        raise ValueError(
            f"cannot read wandb project {path}: {type(error).__name__}: {error}"
        ) from None
    groups: dict[str, list[Any]] = {}
    for run in runs:
        if isinstance(run.config.get("seqbench"), dict):
            groups.setdefault(run.group or run.id, []).append(run)
    records = []
    for group, members in sorted(groups.items()):
        members.sort(key=lambda r: r.config.get("seed", 0))
        info = members[0].config["seqbench"]
        config = {k: v for k, v in members[0].config.items() if k not in ("seed", "seqbench")}
        per_seed = []
        for run in members:
            summary = dict(run.summary)
            per_seed.append(
                {
                    "seed": run.config.get("seed"),
                    "status": summary.get("status", run.state),
                    "final": _prefixed(summary, "final/"),
                    "best": _prefixed(summary, "best/"),
                }
            )
        statuses = {s["status"] for s in per_seed}
        status = next(
            (s for s in ("failed", "interrupted", "running", "diverged") if s in statuses),
            "completed",
        )
        records.append(
            {
                "schema_version": info.get("schema_version") or 2,
                "name": info["name"],
                "status": status,
                "started": min(str(r.created_at) for r in members),
                "finished": None,
                "path": f"wandb:{path}/{group}",
                "config": config,
                "task": info["task"],
                "model": info["model"],
                "seeds": [s["seed"] for s in per_seed],
                "per_seed": per_seed,
            }
        )
    return records


def _prefixed(summary: dict[str, Any], prefix: str) -> dict[str, float]:
    return {
        k.removeprefix(prefix): float("nan") if v is None else float(v)
        for k, v in summary.items()
        if k.startswith(prefix)
    }
