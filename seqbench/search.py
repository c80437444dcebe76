"""Hyper-parameter search: the objective every sweeper optimises, and the search a run records.

`seqbench-train` returns one number to Hydra after every job, `objective(record).value`, which a
sweeper (Optuna through `hparams_search=<preset>`, or Ax, Nevergrad) optimises:

- per seed, the seed's best validation value of the task's primary metric: the evaluation the run
  record's "best" picks (`records.selection_metric`: the test split when a task has no validation
  split), never a test value chosen on test;
- signed so that lower is better: the value itself for a metric the task minimises (mse,
  cross-entropy, bpc), its negation for one it maximises (accuracy 0.93 -> -0.93). Every sweeper
  is told to minimise (`hydra.sweeper.direction: minimize` in conf/hparams_search/), whatever the
  task: the direction comes from the task, never from the command line;
- a seed that failed (diverged, including a loss blow-up past `trainer.blowup_factor`, or without
  a finite value, or the whole run failed) counts as `WORST`, a large finite number, in place of
  being dropped: the worst any seed can score (a finite value beyond it is counted as `WORST`
  too), so that a configuration with more failed seeds never ranks above one with fewer, and two
  with the same failures still rank by their other seeds. Finite, because Optuna records NaN as a
  failed trial that stops the sweep, and a mean with an infinity would no longer count failures;
- the mean over the run's seeds.

A run started by a search (any sweeper other than Hydra's basic one) records the search in its
run.json's `search` section (`search_section`): the sweeper, the preset, the trial's number and
values, the budget (`n_trials`) and the space, and once it ends its `objective`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqbench.config import ConfigError
from seqbench.records import (
    FINISHED,
    SELECT_SPLIT,
    RunRecord,
    SeedSummary,
    TaskInfo,
    metric_key,
    selection_metric,
)

#: what a failed seed scores in the (minimised) objective: far beyond the metrics' working ranges
#: (a finite value beyond it counts as WORST too), finite so that a mean still counts failures
WORST = 1e9
#: the sweeper every job of a sweep runs under unless a search plugin is chosen (not a search)
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
OPTUNA_SWEEPER = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
AX_SWEEPER = "hydra_plugins.hydra_ax_sweeper.ax_sweeper.AxSweeper"
NEVERGRAD_SWEEPER = "hydra_plugins.hydra_nevergrad_sweeper.nevergrad_sweeper.NevergradSweeper"
#: per search plugin, where its settings keep the trial budget and the search space (dotted keys
#: of `hydra.sweeper`)
BUDGET_AND_SPACE = {
    OPTUNA_SWEEPER: ("n_trials", "params"),
    AX_SWEEPER: ("ax_config.max_trials", "ax_config.params"),
    NEVERGRAD_SWEEPER: ("optim.budget", "parametrization"),
}


@dataclass(frozen=True)
class Objective:
    """A run's search objective (see the module docstring).

    value: what the sweeper gets, the mean of `per_seed`; metric: the metric it is computed on
    (`val/mse`); direction: the task's for that metric ("min" or "max"); per_seed: {seed: its
    signed value, `WORST` when it failed}; failed: the seeds that failed, in the run's order.
    """

    value: float
    metric: str
    direction: str
    per_seed: dict[int, float] = field(default_factory=dict)
    failed: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The objective as the run record's `search.objective` holds it."""
        return {
            "value": self.value,
            "metric": self.metric,
            "direction": self.direction,
            "sweeper_minimises": True,
            "worst": WORST,
            "per_seed": {str(seed): value for seed, value in self.per_seed.items()},
            "failed": list(self.failed),
        }


def signed(value: float, direction: str) -> float:
    """`value` of a metric the task minimises (`direction` "min") or maximises ("max"), as the
    objective counts it: lower is better, never worse than `WORST`."""
    score = value if direction == "min" else -value
    return min(score, WORST)


def seed_value(seed: SeedSummary, metric: str, direction: str) -> float | None:
    """The seed's signed value of `metric` at its best evaluation; None when it failed (diverged,
    or no finite value)."""
    if seed.status == "diverged" or not seed.best:
        return None
    value = seed.best.get(metric)
    if value is None or not math.isfinite(value):
        return None
    return signed(value, direction)


def objective_of(
    task: TaskInfo,
    status: str,
    per_seed: Iterable[SeedSummary] | None,
    seeds: Iterable[int],
) -> Objective:
    """The objective of a run of `task` that ended with `status` ("completed", "diverged";
    anything else, "failed" say, fails every seed), `per_seed` its seeds' results and `seeds`
    the seeds it was started with."""
    primary = task.primary_metric
    direction = task.metrics[primary]
    results = {s.seed: s for s in per_seed or []} if status in FINISHED else {}
    names = {name for s in results.values() for name in (s.best or {})}
    metric = selection_metric(names, primary) if names else metric_key(primary, SELECT_SPLIT)
    values: dict[int, float] = {}
    failed = []
    for seed in seeds:
        value = seed_value(results[seed], metric, direction) if seed in results else None
        if value is None:
            failed.append(seed)
        values[seed] = WORST if value is None else value
    mean = sum(values.values()) / len(values) if values else WORST
    return Objective(mean, metric, direction, values, failed)


def objective(record: RunRecord) -> Objective:
    """The search objective of a run record (see the module docstring)."""
    return objective_of(record.task, record.status, record.per_seed, record.seeds)


def _at(node: Mapping[str, Any], dotted: str) -> Any:
    """The entry at `dotted` ("ax_config.params") below `node`, None where there is none."""
    for part in dotted.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def check_minimises(target: str, settings: Mapping[str, Any]) -> None:
    """Raise ConfigError (one line) unless the sweeper `target` with `settings` (its
    `hydra.sweeper` node, plain) minimises one objective: seqbench's is signed by the task."""
    why = "seqbench's objective is always minimised (negated for a metric the task maximises)"
    if target == OPTUNA_SWEEPER:
        direction = settings.get("direction")
        if direction != "minimize":
            raise ConfigError(f"hydra.sweeper.direction: {why}; set minimize, got {direction!r}")
    elif target == AX_SWEEPER:
        minimize = _at(settings, "ax_config.experiment.minimize")
        if minimize is not True:
            raise ConfigError(
                f"hydra.sweeper.ax_config.experiment.minimize: {why}; set true, got {minimize!r}"
            )
    elif target == NEVERGRAD_SWEEPER:
        maximize = _at(settings, "optim.maximize")
        if maximize is not False:
            raise ConfigError(f"hydra.sweeper.optim.maximize: {why}; set false, got {maximize!r}")


def check_command_line(overrides: Iterable[str]) -> None:
    """Raise ConfigError (one line) for a command-line override beside `hparams_search=...` that
    sweeps (a comma list, choice, range or interval): the sweeper would search it too, outside the
    preset's space that every run records. A search tunes one configuration; one search per
    architecture keeps the same space and budget for each. Hydra's own keys (`hydra.…`) pass."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    given = [o for o in overrides if not o.startswith("-")]
    for override in OverridesParser.create().parse_overrides(given):
        key = override.get_key_element()
        if override.is_sweep_override() and not key.lstrip("+~").startswith("hydra"):
            raise ConfigError(
                f"{override.input_line}: a search tunes its preset's space "
                "(conf/hparams_search/space/) for one configuration; give "
                f"{key} one value and run one search for each"
            )


def search_section(hydra_cfg: Any) -> dict[str, Any] | None:
    """The `search` section of the record of a job that a search started, read from its Hydra
    config (`HydraConfig.get()`); None for a single run or a sweep of Hydra's basic sweeper.

    sweeper: the plugin's class; preset: the `hparams_search` option (None: set by hand); trial:
    the job's number in the sweep; n_trials: the trial budget; space: the search space as the
    sweeper was given it ({key: its distribution}); params: this trial's values of those keys (as
    Hydra's overrides give them); settings: the whole `hydra.sweeper` node. Raises ConfigError
    when the sweeper would maximise (`check_minimises`).
    """
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    sweeper = hydra_cfg.get("sweeper")
    target = None if sweeper is None else sweeper.get("_target_")
    if hydra_cfg.get("mode") != RunMode.MULTIRUN or target in (None, BASIC_SWEEPER):
        return None
    settings = OmegaConf.to_container(sweeper, resolve=True, enum_to_str=True)
    assert isinstance(settings, dict)
    check_minimises(target, settings)
    budget_key, space_key = BUDGET_AND_SPACE.get(target, ("n_trials", "params"))
    space = _at(settings, space_key) or {}
    overrides = dict(o.lstrip("+~").split("=", 1) for o in hydra_cfg.overrides.task if "=" in o)
    choices = hydra_cfg.runtime.choices
    return {
        "sweeper": target,
        "preset": choices.get("hparams_search"),
        "trial": int(hydra_cfg.job.num),
        "n_trials": _at(settings, budget_key),
        "space": space,
        "params": {key: overrides[key] for key in space if key in overrides},
        "settings": settings,
    }


def with_objective(
    section: dict[str, Any] | None,
    task: TaskInfo,
    status: str,
    per_seed: Iterable[SeedSummary] | None,
    seeds: Iterable[int],
) -> dict[str, Any] | None:
    """The `search` section with the run's objective added (None stays None)."""
    if section is None:
        return None
    return {**section, "objective": objective_of(task, status, per_seed, seeds).to_json()}


#: the file Hydra's Optuna sweeper writes into the sweep folder once a search has run every trial
RESULTS_NAME = "optimization_results.yaml"


@dataclass(frozen=True)
class BestConfig:
    """The configuration a finished search chose on validation (its `optimization_results.yaml`).

    params: {key: value} of the best trial, the space's keys only (`optimizer.lr: 0.0021`);
    value: that trial's objective (lower is better, `WORST` when every trial failed); path: the
    file it was read from.
    """

    params: dict[str, Any]
    value: float
    path: str

    @property
    def failed(self) -> bool:
        """Whether every trial failed (the best objective is the failure score `WORST`)."""
        return self.value >= WORST

    def overrides(self) -> list[str]:
        """The chosen values as Hydra command-line overrides, sorted by key
        (["optimizer.lr=0.0020630"]), to train the chosen configuration again."""
        return [f"{key}={override_value(self.params[key])}" for key in sorted(self.params)]

    def provenance(self) -> str:
        """The override that names the search in the run it chose (`tuned_by=<its folder>`)."""
        return f"tuned_by={override_value(str(Path(self.path).parent))}"


def override_value(value: Any) -> str:
    """`value` written as Hydra's override grammar reads it back: floats in full precision
    (`repr`), booleans as true/false, None as null, strings as they are when Hydra reads them back
    unchanged (words, paths), quoted otherwise ("a b", "true", "1e-3"). Raises ValueError (one
    line) for anything else (a list, a mapping): no search space here yields one."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        plain = value and all(c.isalnum() or c in "_-./:" for c in value)
        if plain and _parsed(value) == value:
            return value
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    raise ValueError(f"cannot write {type(value).__name__} {value!r} as an override")


def _parsed(text: str) -> Any:
    """What Hydra's override parser makes of `key=<text>`'s value (None when it cannot parse it)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_override(f"key={text}").value()
    except HydraException:
        return None


def best_config(sweep_dir: str | Any) -> BestConfig:
    """The configuration the search in `sweep_dir` chose: its Optuna `optimization_results.yaml`
    (written once every trial has run). Raises ValueError (one line) when the search has not
    finished (no such file), the file is unreadable or not a single-objective result."""
    import yaml

    path = Path(sweep_dir) / RESULTS_NAME
    if not path.is_file():
        raise ValueError(
            f"{path}: no such file; the search in {sweep_dir} has not finished (Optuna writes it "
            "after the last trial)"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        reason = " ".join(str(error).split())
        raise ValueError(f"{path}: cannot read it ({reason})") from None
    if isinstance(data, Mapping) and "solutions" in data:
        raise ValueError(
            f"{path}: a multi-objective search (Pareto solutions); seqbench's searches have one "
            "objective"
        )
    if not isinstance(data, Mapping) or not isinstance(data.get("best_params"), Mapping):
        raise ValueError(f"{path}: no best_params mapping; not a result of Hydra's Optuna sweeper")
    value = data.get("best_value")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{path}: best_value must be a finite number, got {value!r}")
    params = dict(data["best_params"])
    if not params:
        raise ValueError(f"{path}: best_params is empty; the search had nothing to tune")
    for key, chosen in params.items():
        try:
            override_value(chosen)
        except ValueError as error:
            raise ValueError(f"{path}: best_params.{key}: {error}") from None
    return BestConfig(params=params, value=float(value), path=str(path))
