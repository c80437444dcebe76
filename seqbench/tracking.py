"""Mirror a run to experiment trackers (Weights & Biases, TensorBoard); the run record stays the
source of truth.

A tracker receives the metrics at every evaluation, the gradient flow where it is measured and the
finished run record. `logger.backends` names the trackers (`make_tracker`): none (`logger=none`):
`NullTracker`; one: that tracker; several (`logger=wandb_tensorboard`): a `CompositeTracker` that
hands every call to each of them in turn.

`WandbTracker` (backend "wandb") keeps one wandb run per seed, opened with ``reinit="create_new"``
so that jobs sharing one process (Hydra's basic launcher, reused joblib workers) never write into
each other's runs. Each evaluation metric is declared with `define_metric` at its first evaluation:
its x-axis is the training step ("trainer/step") and its summary its best value over the run (min or
max, the task's direction for that metric). At the end every run gets the job's run record
(run.json) and, for a finished run, its learning-curve figure as a "run-record" artifact.

`TensorBoardTracker` (backend "tensorboard") writes TensorBoard event files with tensorboardX's
synchronous writer (no TensorFlow, no background thread): one folder per seed (`seed_<k>/`) with
the training loss and every evaluation metric at its step and the resolved config and the final
summary as text; the gradient flow goes to `seed_<k>/gradient_flow/`, a curve ||dL/dh_t|| against
t per measured step and layer. A resumed job purges the steps its first event repeats.

Any tracker error prints one warning and turns that tracker off; training, the other trackers and
the local run record carry on. So does a (nearly) full disk under a tracker's folder, checked at
every evaluation: wandb's service writes from its own process and would lose the data without a
word, and a clean finish still needs room (`WANDB_MIN_FREE`, `TENSORBOARD_MIN_FREE`).

The tracker is the writer's: it takes the `RunRecord` the trainer is building (the wandb run ids are
added to it). Reading back goes the other way: `records_from_wandb` rebuilds typed `RunRecord`s
from the logged runs.
"""

from __future__ import annotations

import itertools
import os
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
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
from seqbench.records import (
    FINISHED,
    RECORD_NAME,
    SCHEMA_VERSION,
    RunRecord,
    Timing,
    config_identity,
    write_record,
)

#: below this many free bytes on its folder's file system, wandb is given up (with one warning)
WANDB_MIN_FREE = 1 << 20
#: the same for TensorBoard's event files
TENSORBOARD_MIN_FREE = 1 << 20
#: the history entry every wandb metric is plotted against (the training step)
WANDB_STEP = "trainer/step"
#: the wandb artifact type of the run record (run.json and its learning-curve figure)
RECORD_ARTIFACT = "run-record"
#: the learning-curve figure's file name in that artifact
FIGURE_NAME = "learning_curves.png"
#: numbers the event files this process opens (with its id, a unique file name)
_WRITER_COUNT = itertools.count()


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


class CompositeTracker:
    """Several trackers (`logger.backends` with more than one name): every call goes to each, in
    the order named. Each tracker handles its own failures (one warning, then off), so one
    failing never stops the others."""

    def __init__(self, trackers: Sequence[Tracker]) -> None:
        self.trackers = list(trackers)

    def log_eval(self, step, eval_metrics, train_loss) -> None:
        for tracker in self.trackers:
            tracker.log_eval(step, eval_metrics, train_loss)

    def log_gradient_flow(self, step, norms) -> None:
        for tracker in self.trackers:
            tracker.log_gradient_flow(step, norms)

    def finish(self, record) -> None:
        for tracker in self.trackers:
            tracker.finish(record)


def config_group(name: str, resolved: dict[str, Any]) -> str:
    """`<name>-<8 hex>`: the same for every seed of one configuration, whatever the run folder."""
    return f"{name}-{config_identity(resolved)[:8]}"


def wandb_mode(configured: str | None) -> str:
    """The configured mode, else $WANDB_MODE, else offline (works with no account or network)."""
    return configured or os.environ.get("WANDB_MODE") or "offline"


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def metric_direction(key: str, directions: dict[str, str]) -> str | None:
    """The direction of `key` ("<split>/<name>" or "train/loss"), "min" or "max", from the task's
    {name: direction}; the training loss is minimised; None for a metric the task does not name."""
    if key == "train/loss":
        return "min"
    return directions.get(key.rsplit("/", 1)[-1])


class _Mirror:
    """What every tracker shares: its folder, the free-space check and giving up with one warning.

    `backend`: how the warning names the tracker; `aftermath`: what the warning says happens next.
    """

    backend = ""
    aftermath = ""

    def __init__(self, folder: Path) -> None:
        self.dir = folder
        self.active = True

    def _min_free(self) -> int:
        """The bytes the tracker needs free on its folder's file system (each tracker's module
        constant, read at every check)."""
        raise NotImplementedError

    def _out_of_space(self, what: str) -> bool:
        """Give the tracker up when its folder has less than `_min_free()` bytes left."""
        free, needed = free_space(self.dir), self._min_free()
        if free is None or free >= needed:
            return False
        self._give_up(
            what,
            f"no space left on device under {self.dir}: {human_size(free)} free on "
            f"{mount_point(self.dir)}, less than the {human_size(needed)} it needs",
        )
        return True

    def _reason(self, error: BaseException | str) -> str:
        if isinstance(error, str):
            return error
        if (fault := disk_fault(error)) is not None:
            return describe(fault, fallback=self.dir)
        return f"{type(error).__name__}: {error}"

    def _warn(self, what: str, error: BaseException | str, aftermath: str | None = None) -> None:
        """One line on stderr: what could not be done, why, and what happens instead."""
        print(
            f"seqbench: warning: {self.backend} could not {what} ({self._reason(error)}); "
            f"{aftermath or self.aftermath}",
            file=sys.stderr,
        )

    def _give_up(self, what: str, error: BaseException | str) -> None:
        self._warn(what, error)
        self.active = False
        self._abandon()

    def _abandon(self) -> None:
        """Close whatever is open after a failure (its own errors are ignored)."""


class WandbTracker(_Mirror):
    """One wandb run per seed of one job; see the module docstring."""

    backend = "wandb"
    aftermath = "training goes on with the local run record only"

    def __init__(
        self,
        cfg: LoggerConfig,
        resolved: dict[str, Any],
        record: RunRecord,
        output_dir: Path,
    ) -> None:
        super().__init__(Path(cfg.dir) if cfg.dir else output_dir)
        self.runs: dict[int, Any] = {}
        self.seeds: list[int] = list(record.seeds)
        self.artifact, self.figure = cfg.artifact, cfg.artifact_figure
        self.directions: dict[str, str] = {}  # {metric name: "min" | "max"}, the task's
        self.defined: set[str] = set()  # the metrics declared with define_metric so far
        self.group = ""
        try:
            import wandb

            self.directions = dict(record.task.metrics or {})

            self.group = cfg.group or config_group(record.name, resolved)
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
                    group=self.group,
                    job_type=cfg.job_type,
                    name=f"{self.group}-seed{seed}",
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
                self.runs[seed].define_metric(WANDB_STEP, hidden=True)
            record.wandb_run_ids = {str(seed): run.id for seed, run in self.runs.items()}
        except Exception as error:  # any wandb failure must not stop training
            self._give_up("start", error)

    def _min_free(self) -> int:
        return WANDB_MIN_FREE

    def _abandon(self) -> None:
        for run in self.runs.values():
            try:
                run.finish(exit_code=1, quiet=True)
            except Exception:  # already failing; the warning was printed
                pass
        self.runs = {}

    def _define(self, keys: list[str]) -> None:
        """Declare the metrics not declared yet: x-axis the training step, summary their best
        value (the task's direction; "last" for a metric it does not name)."""
        for key in keys:
            if key in self.defined:
                continue
            summary = metric_direction(key, self.directions) or "last"
            for run in self.runs.values():
                run.define_metric(key, step_metric=WANDB_STEP, summary=summary)
            self.defined.add(key)

    def log_eval(self, step, eval_metrics, train_loss) -> None:
        if not self.active or self._out_of_space("log"):
            return
        try:
            keys = [*eval_metrics, *(["train/loss"] if train_loss is not None else [])]
            self._define(keys)
            for index, seed in enumerate(self.seeds):
                row: dict[str, Any] = {k: _finite(v[index]) for k, v in eval_metrics.items()}
                if train_loss is not None:
                    row["train/loss"] = _finite(train_loss[index])
                row[WANDB_STEP] = step
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
            with tempfile.TemporaryDirectory(prefix="seqbench-artifact-") as folder:
                files = self._record_files(record, Path(folder)) if self.artifact else []
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
                    if files:
                        files = self._log_record(run, record, files)
                    if status == "interrupted":  # resumed by id when the job is run again
                        getattr(run, "mark_preempting", lambda: None)()
                    run.finish(exit_code=0 if status in FINISHED else 1)
        except Exception as error:
            self._give_up("finish", error)
        finally:
            self.runs = {}
            self.active = False

    def _record_files(self, record: RunRecord, folder: Path) -> list[Path]:
        """run.json as the tracker was handed it and, for a finished run with learning curves
        (`logger.artifact_figure`), its learning-curve figure (drawn by `seqbench plot`'s code),
        written into `folder`. A figure that cannot be drawn is left out with one warning."""
        path = folder / RECORD_NAME
        write_record(path, record)
        files = [path]
        if self.figure and record.status in FINISHED and record.curves is not None:
            try:
                from seqbench.report.plot import plot_curves

                files += plot_curves([record], folder / Path(FIGURE_NAME).stem, formats=("png",))
            except Exception as error:  # the figure is a convenience: the record is logged
                aftermath = "its artifact holds the run record only"
                self._warn("draw the learning curves for the run record artifact", error, aftermath)
        return files

    def _log_record(self, run: Any, record: RunRecord, files: list[Path]) -> list[Path]:
        """Log `files` to `run` as its "run-record" artifact; return the files to log to the next
        run (none after a failure, which is warned about once; the run still finishes)."""
        try:
            import wandb

            name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"record-{self.group}")
            artifact = wandb.Artifact(
                name,
                type=RECORD_ARTIFACT,
                description=f"seqbench run record of {record.name} ({record.status})",
                metadata={
                    "name": record.name,
                    "status": record.status,
                    "seeds": list(record.seeds),
                    "task": record.task.label,
                    "architecture": record.model.architecture,
                    "schema_version": SCHEMA_VERSION,
                },
            )
            for path in files:
                artifact.add_file(str(path), name=path.name)
            run.log_artifact(artifact)
            return files
        except Exception as error:
            self._warn("log the run record as an artifact", error, "its runs finish without it")
            return []


class TensorBoardTracker(_Mirror):
    """TensorBoard event files per seed of one job; see the module docstring.

    Folders: `<output dir>/tensorboard/seed_<k>/` (with `logger.tensorboard_dir` set:
    `<tensorboard_dir>/<group>/seed_<k>/`, the group as wandb names it: one per configuration)
    with scalars "train/loss" and "<split>/<metric>" at their training step and text "config" and
    "summary", and its `gradient_flow/` with scalars "gradient_flow/step_<n>/layer_<l>" at time
    step t. Each writer is opened at its first event, so that a resumed job can purge what its
    first evaluation repeats.
    """

    backend = "tensorboard"
    aftermath = "training goes on without its event files"

    def __init__(
        self,
        cfg: LoggerConfig,
        resolved: dict[str, Any],
        record: RunRecord,
        output_dir: Path,
    ) -> None:
        if cfg.tensorboard_dir:
            root = Path(cfg.tensorboard_dir) / (cfg.group or config_group(record.name, resolved))
        else:
            root = output_dir / "tensorboard"
        super().__init__(root)
        self.seeds: list[int] = list(record.seeds)
        self.resolved = resolved
        self.writers: dict[Path, Any] = {}
        try:
            import tensorboardX  # noqa: F401  (installed? the `tensorboard` extra)

            self.dir.mkdir(parents=True, exist_ok=True)
            self._out_of_space("start")
        except ImportError as error:
            self._give_up("start", f"{error}; install it with: pip install 'seqbench[tensorboard]'")
        except Exception as error:
            self._give_up("start", error)

    def _min_free(self) -> int:
        return TENSORBOARD_MIN_FREE

    def seed_dir(self, seed: int) -> Path:
        """The folder of one seed's event files (a TensorBoard run named `seed_<k>`)."""
        return self.dir / f"seed_{seed}"

    def _writer(self, folder: Path, step: int, purge: bool = False) -> Any:
        """The open writer of `folder`. A new one writes a new event file; in a seed's folder it
        starts with the config as text (at `step`), and with `purge`, where the folder holds
        events of an earlier attempt of this job, TensorBoard drops those from `step` on."""
        writer = self.writers.get(folder)
        if writer is not None:
            return writer
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import Event, SessionLog

        folder.mkdir(parents=True, exist_ok=True)
        resumed = purge and any(folder.glob("events.out.tfevents.*"))
        # the file is named by the second it was opened: the process and a count keep it unique
        suffix = f".{os.getpid()}.{next(_WRITER_COUNT)}"
        writer = EventsWriter(str(folder / "events"), filename_suffix=suffix)
        self.writers[folder] = writer
        if resumed:  # TensorBoard drops the earlier attempt's events at or after `step`
            writer.write_event(Event(step=step, session_log=SessionLog(status=SessionLog.START)))
        if folder.parent == self.dir:
            self._write(writer, step, text=("config", self._config_text()))
        return writer

    def _config_text(self) -> str:
        """The resolved config as a Markdown code block (TensorBoard's text tab renders Markdown)."""
        import yaml

        dumped = yaml.safe_dump(self.resolved, sort_keys=False, default_flow_style=False)
        return "\n".join(f"    {line}" for line in dumped.splitlines())

    @staticmethod
    def _write(
        writer: Any,
        step: int,
        scalars: dict[str, float | None] | None = None,
        text: tuple[str, str] | None = None,
    ) -> None:
        """One event at `step` with `scalars` ({tag: value}; None: not written) and/or `text`."""
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.summary_pb2 import Summary
        from tensorboardX.summary import text as text_summary

        values = [
            Summary.Value(tag=tag, simple_value=value)
            for tag, value in (scalars or {}).items()
            if value is not None
        ]
        if text is not None:
            values.extend(text_summary(*text).value)
        if values:
            writer.write_event(Event(step=int(step), summary=Summary(value=values)))

    def _abandon(self) -> None:
        for writer in self.writers.values():
            try:
                writer.close()
            except Exception:  # already failing; the warning was printed
                pass
        self.writers = {}

    def log_eval(self, step, eval_metrics, train_loss) -> None:
        if not self.active or self._out_of_space("log"):
            return
        try:
            for index, seed in enumerate(self.seeds):
                writer = self._writer(self.seed_dir(seed), step, purge=True)
                row = {k: _finite(v[index]) for k, v in eval_metrics.items()}
                if train_loss is not None:
                    row["train/loss"] = _finite(train_loss[index])
                self._write(writer, step, row)
                writer.flush()
        except Exception as error:
            self._give_up("log", error)

    def log_gradient_flow(self, step, norms) -> None:
        """Per seed and layer: ||dL/dh_t|| against t as "gradient_flow/step_<n>/layer_<l>"."""
        if not self.active or self._out_of_space("log"):
            return
        try:
            for index, seed in enumerate(self.seeds):
                writer = self._writer(self.seed_dir(seed) / "gradient_flow", 0)
                for layer, values in enumerate(norms[index]):
                    tag = f"gradient_flow/step_{step}/layer_{layer}"
                    for t, value in enumerate(values):
                        self._write(writer, t, {tag: _finite(value)})
                writer.flush()
        except Exception as error:
            self._give_up("log", error)

    def finish(self, record: RunRecord) -> None:
        """Per seed, the summary (status, best step, final and best metrics) as text; close."""
        if not self.active or self._out_of_space("finish"):
            return
        try:
            per_seed = {s.seed: s for s in record.per_seed or []}
            step = (record.curves.eval_steps or [0])[-1] if record.curves else 0
            for seed in self.seeds:
                result = per_seed.get(seed)
                lines = [f"status: {result.status if result is not None else record.status}"]
                if record.error:
                    lines.append(f"error: {record.error}")
                if result is not None:
                    lines.append(f"best step: {result.best_step}")
                    for kind in ("final", "best"):
                        for metric, value in (getattr(result, kind) or {}).items():
                            lines.append(f"{kind}/{metric}: {value}")
                writer = self._writer(self.seed_dir(seed), step)
                self._write(writer, step, text=("summary", "\n".join(f"    {x}" for x in lines)))
            for writer in self.writers.values():
                writer.close()
        except Exception as error:
            self._give_up("finish", error)
        finally:
            self.writers = {}
            self.active = False


def make_tracker(
    cfg: LoggerConfig, resolved: dict[str, Any], record: RunRecord, output_dir: Path
) -> Tracker:
    """The trackers `logger.backends` names, in that order (one composite for several); wandb in
    mode "disabled" is not even imported.

    `record`: the `RunRecord` being written; a wandb tracker sets its `wandb_run_ids`.
    """
    trackers: list[Tracker] = []
    for backend in cfg.backends:
        if backend == "wandb" and wandb_mode(cfg.mode) != "disabled":
            trackers.append(WandbTracker(cfg, resolved, record, output_dir))
        elif backend == "tensorboard":
            trackers.append(TensorBoardTracker(cfg, resolved, record, output_dir))
    if not trackers:
        return NullTracker()
    return trackers[0] if len(trackers) == 1 else CompositeTracker(trackers)


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
