"""`seqbench-train`: the Hydra entry point. Validate, build, train every seed at once, record.

seqbench-train model=<conf/model option> task=<conf/task option> task.length=200 seeds=[0,1,2]
seqbench-train --multirun model=<one>,<another> task=<option> task.length=100,200
seqbench-train --multirun hparams_search=<conf/hparams_search option> model=<one> task=<option>
(examples with real names: README, "Training runs" and "Hyper-parameter search")
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from seqbench import lifecycle, search
from seqbench.cli import fail as cli_fail
from seqbench.config import Config, ConfigError
from seqbench.diskfull import guard_hydra, quiet_disk_faults
from seqbench.provenance import use_deterministic_flags
from seqbench.records import FINISHED, RECORD_NAME, RunRecord, Timing, metric_key
from seqbench.resume import ResumeError, previous_run
from seqbench.store import register_configs, validate


def config_dir() -> Path:
    """The Hydra configs: the copy a built wheel ships inside the package (`seqbench/conf/`, see
    setup.py), else `conf/` at the top of the repository (a clone, an editable install)."""
    package = Path(__file__).resolve().parents[1]
    packaged = package / "conf"
    return packaged if packaged.is_dir() else package.parent / "conf"


CONF_DIR = config_dir()
#: the job's log file, `<output dir>/train.log` (Hydra's job logging; conf/config.yaml routes this
#: logger to the file alone: the console gets the same lines from `announce` on stderr)
LOG = logging.getLogger("seqbench.run")
# optuna's study storage imports alembic, which lists its plugins at INFO on Hydra's console
logging.getLogger("alembic").setLevel(logging.WARNING)


def announce(line: str) -> None:
    """A line for the console (stderr) and the job's log file."""
    print(line, file=sys.stderr)
    LOG.info(line)


def log_evaluation(step: int, metrics: dict[str, Any], train_loss: Any) -> None:
    """One line per evaluation in the job's log file: the chunk's training loss and every
    evaluated metric, each the mean over the seeds with a finite value."""

    def mean(values: Any) -> str:
        finite = np.asarray(values, dtype=float)
        finite = finite[np.isfinite(finite)]
        return f"{finite.mean():.4g}" if finite.size else "nan"

    loss = "" if train_loss is None else f"train loss {mean(train_loss)}, "
    shown = ", ".join(f"{key} {mean(values)}" for key, values in sorted(metrics.items()))
    LOG.info(f"step {step}: {loss}{shown} (means over seeds)")


if not OmegaConf.has_resolver("seqbench.pid"):
    OmegaConf.register_new_resolver("seqbench.pid", lambda: os.getpid())
register_configs()


def fail(message: str) -> NoReturn:
    """One line `seqbench-train: error: ...` and exit status 2 (bad input; nothing has been
    computed; see `seqbench.cli.fail`)."""
    cli_fail("seqbench-train", message)


def prepare_output_dir(path: Path) -> Path:
    """Create the run directory and make sure a record can be written there."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        fail(f"output directory {path} is not writable: {error.strerror or error}")
    return path


def lock_found_folder(
    guard: lifecycle.JobGuard, folder: Path, cfg: Config, resolved: dict[str, Any]
) -> tuple[Path, RunRecord] | None:
    """Lock the earlier run's folder that resume=auto found, then read its record again (it may
    have changed before the lock was taken)."""
    try:
        guard.lock(folder)
        return previous_run(folder, resolved, list(cfg.seeds), "dir", Path(cfg.paths.outputs))
    except lifecycle.FolderBusy as error:
        fail(f"{error} (found by resume=auto)")
    except ResumeError as error:
        fail(str(error))
    except OSError as error:
        fail(f"output directory {folder} is not writable: {error.strerror or error}")


def train_from_config(
    cfg: Config,
    resolved: dict[str, Any],
    output_dir: Path,
    guard: lifecycle.JobGuard | None = None,
    search_section: dict[str, Any] | None = None,
) -> RunRecord:
    """Build, train and record one run; return the run record (also written to run.json).

    With a `guard` (see `seqbench.lifecycle`), a folder found by resume=auto is locked too, and a
    stop request ends training at the next chunk boundary: the record becomes "interrupted" and
    `lifecycle.Interrupted` is raised. How every other ending is recorded: `RecordedRun`.
    `search_section`: the hyper-parameter search that started the run (`search.search_section`),
    recorded from the start, with the run's objective once it ends; None outside a search.
    """
    from seqbench.job import Job
    from seqbench.provenance import determinism_info, device_info, git_info, package_versions
    from seqbench.recorded_run import RecordedRun
    from seqbench.records import (
        Curves,
        GradientFlow,
        ModelInfo,
        SeedSummary,
        Summary,
        TaskInfo,
        json_ready,
        metric_stats,
        now_iso,
        seed_summaries,
        write_record,
    )
    from seqbench.tracking import make_tracker
    from seqbench.train.checkpoint import Checkpointer
    from seqbench.train.driver import Hooks, enable_compilation_cache, run_training
    from seqbench.train.gradient_flow import FLOW_SPLIT

    wall_start = time.perf_counter()
    try:
        found = previous_run(
            output_dir, resolved, list(cfg.seeds), cfg.resume, Path(cfg.paths.outputs)
        )
    except ResumeError as error:
        fail(str(error))
    previous: RunRecord | None = None
    if found is not None and guard is not None and found[0] != output_dir:
        found = lock_found_folder(guard, found[0], cfg, resolved)
    if found is not None:
        output_dir, previous = found
        if previous.status in FINISHED:
            announce(
                f"[seqbench] {previous.name}: already {previous.status} in {output_dir}; "
                "skipping (choose another output directory to run it again)"
            )
            return previous
    enable_compilation_cache(cfg.trainer.compilation_cache_dir)
    try:
        job = Job.build(cfg)
    except ValueError as error:
        fail(str(error))
    task = job.task
    record = RunRecord(
        name=job.name,
        status="running",
        started=now_iso(),
        output_dir=str(output_dir),
        config=resolved,
        overrides=list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else [],
        git=git_info(),
        versions=package_versions(),
        device=device_info(),
        determinism=determinism_info(cfg.trainer.deterministic),
        model=ModelInfo.from_fields(job.model_info()),
        task=TaskInfo.from_fields(task.describe()),
        seeds=list(cfg.seeds),
        path=str(output_dir),
        search=search_section,
    )
    checkpointer = Checkpointer(output_dir / "checkpoints") if cfg.trainer.checkpoint else None
    if previous is not None:
        record.started = previous.started or record.started
        record.resumed = [*(previous.resumed or []), now_iso()]
        if previous.wandb_run_ids:
            record.wandb_run_ids = previous.wandb_run_ids
    record_path = output_dir / RECORD_NAME
    latest = checkpointer.latest_step() if checkpointer is not None else None
    announce(
        f"[seqbench] {job.name}: {cfg.model.architecture} hidden={job.built.hidden_size} "
        f"params={job.built.param_count:,} seeds={list(cfg.seeds)} -> {output_dir}"
        + (f" (resuming from step {latest})" if latest else "")
    )
    tracker = make_tracker(cfg.logger, resolved, record, output_dir)  # adds wandb run ids
    write_record(record_path, record)
    run = RecordedRun(
        record_path,
        record,
        tracker=tracker,
        checkpointer=checkpointer,
        fail=fail,
        guard=guard,
        previous=previous,
        steps=cfg.trainer.steps,
        started=wall_start,
    )
    with run:
        flow = job.gradient_flow()
        programs = job.projections()  # each built once: the first also initialises
        result = run_training(
            next(iter(programs.values())) if programs else job.program(),
            task,
            list(cfg.seeds),
            cfg.trainer,
            hooks=Hooks(
                on_eval=lambda *evaluation: (
                    log_evaluation(*evaluation),
                    tracker.log_eval(*evaluation),
                ),
                on_flow=tracker.log_gradient_flow,
                should_stop=guard.requested if guard is not None else None,
            ),
            checkpointer=checkpointer,
            gradient_flow=flow,
            programs=programs,
        )
        per_seed = seed_summaries(
            result.seeds,
            result.eval_steps,
            result.eval_metrics,
            task.metric_directions,
            task.primary_metric,
            result.diverged_step,
        )
        stats = {which: metric_stats(per_seed, which) for which in ("final", "best")}
        gradient_flow = None
        if result.gradient_flow:
            steps = sorted(result.gradient_flow)
            gradient_flow = GradientFlow(
                split=FLOW_SPLIT,
                batch_size=int(flow.batch.inputs.shape[0]),
                steps=json_ready(steps),
                norm=json_ready([result.gradient_flow[step] for step in steps]),  # (S, L, T) each
            )
        status = "diverged" if any(s["status"] == "diverged" for s in per_seed) else "completed"
        seed_results = [SeedSummary.from_fields(s) for s in json_ready(per_seed)]
        return run.complete(
            status=status,
            finished=now_iso(),
            per_seed=seed_results,
            summary=Summary(**stats),
            curves=Curves(
                eval_steps=json_ready(result.eval_steps),
                eval=json_ready(result.eval_metrics),
                train_steps=json_ready(result.train_steps),
                train_loss=json_ready(result.train_loss),
            ),
            timing=Timing.from_fields(
                json_ready(
                    {
                        **result.timing,
                        "wall_s": run.wall_s(),
                        **(result.strategy.record() if result.strategy else {}),
                    }
                )
            ),
            gradient_flow=gradient_flow,
            search=search.with_objective(
                search_section, record.task, status, seed_results, cfg.seeds
            ),
        )


def summary_line(record: RunRecord) -> str:
    """`name status: test metric mean ± std (baseline b) ...` for the console: the test metrics at
    each seed's best validation step; `n/a` where no seed has a finite value (every seed diverged
    before its first finite evaluation) or the record lacks it."""

    def number(value: float | None, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    parts = []
    best = record.summary.best if record.summary is not None else {}
    for metric in record.task.metrics:
        key = metric_key(metric)
        stats = best.get(key)
        if stats is None or stats.mean is None:
            parts.append(f"{key} n/a")
            continue
        base = record.task.baseline.get(metric)
        parts.append(
            f"{key} {number(stats.mean, '.4g')} ± {number(stats.std, '.2g')} "
            f"(baseline {number(base, '.4g')})"
        )
    timing = record.timing or Timing()
    return (
        f"[seqbench] {record.name} {record.status}: "
        + ", ".join(parts)
        + f" | compile {number(timing.compile_s, '.1f')}s, "
        f"{number(timing.steps_per_s, '.1f')} steps/s, "
        f"wall {number(timing.wall_s, '.1f')}s"
    )


def sweeper_value(record: RunRecord) -> float:
    """What `seqbench-train` returns to Hydra after every job, for a sweeper to minimise: the
    search objective of `record` (`seqbench.search`): the mean over seeds of each seed's best
    validation value of the task's primary metric, negated when the task maximises it, a failed
    or diverged seed counted as `search.WORST`. Always finite: a sweep carries on past a trial
    whose every seed diverged."""
    return search.objective(record).value


def current_search() -> dict[str, Any] | None:
    """The search section of this job's record (`search.search_section`): None unless a search
    sweeper started the job; a sweeper set to maximise ends the job with one line."""
    if not HydraConfig.initialized():
        return None
    try:
        return search.search_section(HydraConfig.get())
    except ConfigError as error:
        fail(str(error))


def failed_trial(output_dir: Path, error: Exception) -> RunRecord | None:
    """The record of a search's trial that `error` ended (RecordedRun has marked it "failed"), with
    its objective (the worst) added to its search section and written; None when the run left no
    failed record there (the error came before the run started: `error` is raised again)."""
    from seqbench.records import load_record, write_record

    try:
        record = load_record(output_dir)
    except (FileNotFoundError, ValueError):
        return None
    if record.status != "failed":
        return None
    record.search = search.with_objective(
        record.search, record.task, record.status, record.per_seed, record.seeds
    )
    write_record(output_dir / RECORD_NAME, record)
    announce(
        f"[seqbench] {record.name} failed ({type(error).__name__}: {error}); the search counts "
        f"it at the worst value, {search.WORST:g}"
    )
    LOG.error("the trial's error", exc_info=error)
    return record


#: the cores this process may use, read before any job narrows them (joblib reuses workers)
ALL_CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def pin_to_share_of_cores() -> None:
    """Under a parallel local launcher (joblib, n_jobs = k > 1), keep this job on the cores whose
    index is congruent to its job number modulo k, before XLA sizes its thread pool from them."""
    if not HydraConfig.initialized() or not hasattr(os, "sched_setaffinity"):
        return
    hydra_cfg = HydraConfig.get()
    workers = min(int(hydra_cfg.launcher.get("n_jobs", 1) or 1), len(ALL_CORES))
    if workers <= 1:
        return
    share = int(hydra_cfg.job.get("num", 0) or 0) % workers
    os.sched_setaffinity(0, ALL_CORES[share::workers])


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> float:
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax's per-checkpoint INFO lines
    quiet_disk_faults()
    pin_to_share_of_cores()
    if cfg.trainer.get("deterministic"):
        use_deterministic_flags()
    try:
        checked = validate(cfg)
    except ConfigError as error:
        fail(str(error))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    searched = current_search()
    output_dir = Path(checked.output_dir or HydraConfig.get().runtime.output_dir)
    with lifecycle.JobGuard() as guard:  # the folder lock, stop requests: until the job ends
        try:
            guard.lock(output_dir)
        except lifecycle.FolderBusy as error:
            fail(str(error))
        except OSError as error:
            fail(f"output directory {output_dir} is not writable: {error.strerror or error}")
        prepare_output_dir(output_dir)
        try:
            record = train_from_config(checked, resolved, output_dir, guard, searched)
        except lifecycle.Interrupted as stopped:
            announce(stopped.line)
            guard.end_process(stopped.exit_code)
        except Exception as error:  # in a search: the trial scores the worst, the search goes on
            record = failed_trial(output_dir, error) if searched is not None else None
            if record is None:
                raise
        announce(summary_line(record))
        if guard.stop is not None:  # asked to stop as the run ended: no further job
            print(f"seqbench-train: stopped by {guard.stop.by} as the run ended", file=sys.stderr)
            guard.end_process(guard.stop.exit_code)
    return sweeper_value(record)


HELP_FLAGS = ("--help", "-h")
#: config folders of a preset's settings for one model or task, and the spaces of the search
#: presets (conf/hparams_search/space/): parts of other options, not options to pick
OVERLAYS = ("for_model", "for_task", "hparams_search/space")


def help_text(overrides: list[str]) -> str:
    """`seqbench-train --help`: each config group's options (the YAML files of conf/, not the
    schemas Hydra's own help lists beside them) and the config that `overrides` compose."""
    from hydra import compose, initialize_config_dir

    groups: dict[str, list[str]] = {}
    for path in sorted(CONF_DIR.rglob("*.yaml")):
        group = path.parent.relative_to(CONF_DIR).as_posix()
        if group != "." and not group.startswith("hydra") and not group.endswith(OVERLAYS):
            groups.setdefault(group, []).append(path.stem)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        composed = compose("config", overrides=overrides)
    lines = [
        "seqbench-train [--multirun] [group=option ...] [key=value ...]",
        "",
        "Trains every seed of a configuration at once and writes its run record (README: "
        '"Training runs"). Options of each group (conf/<group>/<option>.yaml):',
        "",
        *(f"  {group}: {', '.join(options)}" for group, options in sorted(groups.items())),
        "",
        "The configuration" + (f" with {' '.join(overrides)}" if overrides else "") + " (any key "
        "can be overridden, e.g. task.length=200 model.hidden_size=64; every key is commented in "
        "its conf/ file):",
        "",
        OmegaConf.to_yaml(composed, resolve=False).rstrip(),
        "",
        "Hydra's own options: seqbench-train --hydra-help",
    ]
    return "\n".join(lines)


def has_optuna_sweeper() -> bool:
    """Whether Hydra's Optuna sweeper plugin (the seqbench[search] extra) is installed."""
    try:
        return importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is not None
    except ModuleNotFoundError:  # no hydra_plugins at all
        return False


def main() -> None:
    """Console entry: check every job of the command line, then hand it to Hydra."""
    from seqbench.preflight import preflight

    if any(flag in sys.argv[1:] for flag in HELP_FLAGS):
        overrides = [a for a in sys.argv[1:] if a not in HELP_FLAGS and not a.startswith("-")]
        try:
            print(help_text(overrides))
        except Exception as error:  # a bad override: the same one line as a run would print
            fail(f"{type(error).__name__}: {str(error).splitlines()[0]}")
        return
    searching = any(arg.lstrip("+~").startswith("hparams_search=") for arg in sys.argv[1:])
    if searching and not has_optuna_sweeper():
        fail(
            "hparams_search needs Hydra's Optuna sweeper: pip install 'seqbench[search]' "
            "(make installs it)"
        )
    try:
        preflight(sys.argv[1:], CONF_DIR)
        if searching:
            search.check_command_line(sys.argv[1:])
    except ConfigError as error:
        fail(str(error))
    guard_hydra()  # a full disk under Hydra's own writes: one line, not a traceback
    quiet_disk_faults()
    lifecycle.keep_finished_runs_hydra_files()
    hydra_main()


if __name__ == "__main__":
    main()
