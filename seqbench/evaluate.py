"""Evaluate a finished run's kept parameters again: `seqbench eval`.

    seqbench eval RUN_DIR [--split NAME] [--params best|final] [--out FILE.json] [key=value ...]

The job is rebuilt from the run's own config (run.json's resolved `config`), with any `key=value`
overrides (Hydra's override grammar; e.g. `task.length=400`, `task.eval_lengths=[800]`) checked by
the same schemas as a training run's (`seqbench.store.validate`), then `Job.build`. The parameters
are those the run's checkpoint folder keeps (`seqbench.train.checkpoint`): each seed's parameters at
its best validation evaluation ("best", the run record's "best"; kept with `trainer.keep_best`) or
at the last checkpoint ("final"). Every seed is evaluated at once (the trainer's vmapped
evaluation, so without overrides the numbers equal the recorded ones) on one held-out split or all.

Every check (folder, record, kept parameters, config and overrides, split, the parameters' shapes
against the rebuilt model) runs before anything is computed; a failure is one line (`EvalError`).
`seqbench export` (`seqbench.export`) reads the same parameters through `load_params`.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqbench.config import Config, ConfigError
from seqbench.records import RECORD_NAME, RunRecord, aggregate, load_record
from seqbench.report.stats import seed_statistics

#: which kept parameters to read: each seed's at its best evaluation, or the last checkpoint's
PARAMS = ("best", "final")


class EvalError(ValueError):
    """A run that cannot be evaluated or exported as asked (one line)."""


@dataclass
class RunParams:
    """One run's kept parameters, every seed at once.

    record: the run record. which: "best" or "final". checkpoint_step: the step of the checkpoint
    they were read from. params: the model parameters with a leading seed axis S (nested dicts of
    arrays). steps: (S,) the evaluation step each seed's parameters are from, -1 for a seed that
    has none (best: no finite validation value; final: diverged, as the record's final is NaN).
    """

    record: RunRecord
    which: str
    checkpoint_step: int
    params: Any
    steps: np.ndarray


def load_run(run_dir: str | Path) -> RunRecord:
    """The run record of `run_dir` (a folder holding run.json); EvalError when there is none."""
    folder = Path(run_dir)
    if not folder.is_dir():
        raise EvalError(f"no such run folder: {folder}")
    if not (folder / RECORD_NAME).is_file():
        raise EvalError(f"{folder} holds no run record ({RECORD_NAME}): not a run folder")
    try:
        return load_record(folder / RECORD_NAME)
    except ValueError as error:
        raise EvalError(str(error)) from None


def _task_schema(saved: dict[str, Any], task_name: str) -> type:
    """The registered task config class of a saved `task` section: the one whose fields hold
    every saved key (and whose required fields are saved), told apart by its task's `name` when
    several do (adding and temporal_order have the same options)."""
    from seqbench.tasks.registry import TASK_CLASSES

    keys = set(saved)
    fitting = []
    for schema in dict.fromkeys(TASK_CLASSES):
        fields = dataclasses.fields(schema)
        required = {
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        if keys <= {f.name for f in fields} and required <= keys:
            fitting.append(schema)
    if len(fitting) > 1:
        fitting = [s for s in fitting if getattr(TASK_CLASSES[s], "name", None) == task_name]
    if len(fitting) != 1:
        raise EvalError(
            f"the run's task options ({', '.join(sorted(keys))}) fit "
            f"{'no' if not fitting else 'more than one'} task this seqbench knows"
        )
    return fitting[0]


def _apply_overrides(cfg: Any, overrides: list[str]) -> None:
    """Set each `key=value` of `overrides` in the typed `cfg`; ConfigError (one line) for a bad
    one: grammar, a key no schema has, a value of the wrong type, or not a plain assignment."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from seqbench.preflight import check_grammar
    from seqbench.store import unknown_key

    for override in overrides:
        check_grammar(override)
        try:
            (parsed,) = OverridesParser.create().parse_overrides([override])
            key, value = parsed.key_or_group, parsed.value()
        except HydraException as error:
            raise ConfigError(f"cannot parse {override!r}: {error}") from None
        if parsed.is_add() or parsed.is_delete() or parsed.is_force_add() or parsed.package:
            raise ConfigError(f"{override}: only key=value overrides of the run's config apply")
        if parsed.is_sweep_override():
            raise ConfigError(f"{override}: one value per key (no sweeps at evaluation)")
        parent, _, last = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if not isinstance(node, DictConfig) or last not in node:
            schema = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
            if schema is not None and dataclasses.is_dataclass(schema):
                raise ConfigError(unknown_key(key, last, schema))
            raise ConfigError(f"{key}: not a key of the run's config")
        if isinstance(node[last], DictConfig):
            raise ConfigError(
                f"{override}: {key} is a config group; the run's own option is evaluated "
                f"(override its keys, e.g. {key}.<key>=...)"
            )
        try:
            OmegaConf.update(cfg, key, value, merge=False)
        except OmegaConfBaseException as error:
            raise ConfigError(f"{key}: {str(error).splitlines()[0]}") from None


def run_config(record: RunRecord, overrides: list[str] = ()) -> Config:
    """The run's config with `overrides`, validated as a training run's: the saved (resolved)
    config merged into the schemas of its architecture and task, the overrides set, then
    `seqbench.store.validate`. EvalError (one line) when it does not fit them."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from seqbench.config import LoggerConfig, ModelConfig
    from seqbench.models.architectures import ARCHITECTURES
    from seqbench.store import validate

    saved = copy.deepcopy(record.config)
    where = f"{record.path or 'the run'}'s config"
    saved.pop("logger", None)  # evaluation logs nowhere; the logger's options need no schema
    task = saved.get("task")
    model = saved.get("model")
    if not isinstance(task, dict) or not isinstance(model, dict):
        raise EvalError(f"{where} has no task or model section")
    task.pop("_target_", None)  # the task class, in records made before the task registry
    architecture = model.get("architecture")
    if architecture not in ARCHITECTURES:
        raise EvalError(f"{where}: model.architecture {architecture!r} is not registered here")
    skeleton = OmegaConf.structured(Config)
    skeleton.task = OmegaConf.structured(_task_schema(task, record.task.name))
    skeleton.model = OmegaConf.structured(ModelConfig)
    skeleton.model.cell = OmegaConf.structured(ARCHITECTURES[architecture].options)
    skeleton.logger = OmegaConf.structured(LoggerConfig)
    try:
        cfg = OmegaConf.merge(skeleton, saved)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None)
        raise EvalError(
            f"{where}: {key + ': ' if key else ''}{str(error).splitlines()[0]}"
        ) from None
    try:
        _apply_overrides(cfg, list(overrides))
        return validate(cfg)
    except ConfigError as error:
        raise EvalError(str(error)) from None


def split_names(task: Any) -> list[str]:
    """The held-out splits `task.eval_sets()` will have, known without drawing them: "val",
    "test", and `test@L` for each of the config's `eval_lengths`."""
    from seqbench.tasks.base import EVAL_SPLITS, length_split

    lengths = getattr(task.config, "eval_lengths", None) or []
    return [*EVAL_SPLITS, *(length_split(length) for length in lengths)]


def flat_params(params: Any) -> dict[str, Any]:
    """{"layer_0_fwd/w_ih": array, ...}: every leaf of a nested-dict params tree by its path."""
    import jax

    flat = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        flat["/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)] = leaf
    return flat


def check_fits(params: Any, expected: Any) -> None:
    """EvalError naming the first parameter whose path or per-seed shape differs between the kept
    `params` (leading seed axis) and the `expected` shapes of one seed's parameters."""
    kept = {k: tuple(np.shape(v)[1:]) for k, v in flat_params(params).items()}
    wanted = {k: tuple(v.shape) for k, v in flat_params(expected).items()}
    for name in sorted(kept.keys() | wanted.keys()):
        if kept.get(name) != wanted.get(name):
            have = kept.get(name, "absent")
            raise EvalError(
                f"the kept parameters do not fit the model of this config: {name} is {have} in "
                f"the checkpoint, {wanted.get(name, 'absent')} here (does an override change "
                "the model?)"
            )


def check_checkpoints(record: RunRecord) -> Path:
    """The run's checkpoint folder; EvalError when it holds no checkpoint."""
    folder = Path(record.path or ".") / "checkpoints"
    if not folder.is_dir() or not any(p.name.isdigit() for p in folder.iterdir()):
        raise EvalError(
            f"no checkpoint in {folder} (the run was trained with trainer.checkpoint=false, or "
            "has not reached its first checkpoint)"
        )
    return folder


def load_params(
    record: RunRecord, which: str, template: Any | None = None, model_shapes: Any = None
) -> RunParams:
    """The parameters the run's checkpoint folder keeps (`which`: best or final).

    best: read without the model (`Checkpointer.read_best`); final: the latest checkpoint's state,
    restored like `template` (a batched TrainState; required). With `model_shapes` (one seed's
    params as shapes), their shapes are checked first. EvalError (one line) when they are missing,
    damaged, incomplete, or do not fit.
    """
    from seqbench.train.checkpoint import Checkpointer, CheckpointError
    from seqbench.train.program import NOT_DIVERGED

    if which not in PARAMS:
        raise EvalError(f"--params: {which!r}; choose from {', '.join(PARAMS)}")
    folder = check_checkpoints(record)
    checkpointer = Checkpointer(folder, read_only=True)
    try:
        if which == "best":
            step, best = checkpointer.read_best()
            if not best.complete:
                raise EvalError(
                    f"{folder} keeps best parameters only since the run was resumed from a "
                    "checkpoint written before they were kept: not the run's best (use --params "
                    "final)"
                )
            params, steps = best.params, best.steps
        else:
            if template is None:
                raise ValueError("final parameters need the state's template")
            step, state = checkpointer.read_state(template)
            params = state.params
            diverged = np.asarray(state.diverged_step)
            steps = np.where(diverged == NOT_DIVERGED, step, -1)
    except CheckpointError as error:
        raise EvalError(str(error)) from None
    finally:
        checkpointer.close()
    seeds = len(record.seeds)
    if len(steps) != seeds:
        raise EvalError(f"{folder} keeps {len(steps)} seeds' parameters; the run has {seeds}")
    if model_shapes is not None:
        check_fits(params, model_shapes)
    return RunParams(record, which, int(step), params, np.asarray(steps))


@dataclass
class Evaluation:
    """What `evaluate_run` measured.

    run: the parameters evaluated. overrides: the config overrides applied. splits: the held-out
    splits. per_seed: one {"seed", "step", "metrics": {"<split>/<metric>": value or None}} per seed
    (None for a seed without parameters: see `RunParams.steps`). summary: {"<split>/<metric>":
    {"mean", "std" (population), "n"}} over the seeds with a value.
    """

    run: RunParams
    overrides: list[str]
    splits: list[str]
    per_seed: list[dict[str, Any]]
    summary: dict[str, dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        record = self.run.record
        return {
            "run": record.path,
            "name": record.name,
            "params": self.run.which,
            "checkpoint_step": self.run.checkpoint_step,
            "overrides": self.overrides,
            "splits": self.splits,
            "per_seed": self.per_seed,
            "summary": self.summary,
        }


def evaluate_run(
    run_dir: str | Path,
    split: str | None = None,
    which: str = "best",
    overrides: list[str] = (),
) -> Evaluation:
    """Evaluate every seed's kept parameters (`which`) of the run in `run_dir` on `split` (None:
    every held-out split), its job rebuilt with `overrides`; see the module docstring. EvalError
    (one line) for bad input, raised before anything is computed."""
    import jax
    import jax.numpy as jnp

    from seqbench.job import Job

    record = load_run(run_dir)
    if which not in PARAMS:
        raise EvalError(f"--params: {which!r}; choose from {', '.join(PARAMS)}")
    config = run_config(record, list(overrides))
    try:
        job = Job.build(config)
    except ValueError as error:
        raise EvalError(str(error)) from None
    names = split_names(job.task)
    if split is not None and split not in names:
        raise EvalError(f"--split: the task has no split {split!r} (it has {', '.join(names)})")
    check_checkpoints(record)
    program = job.program()
    one_seed = jax.eval_shape(program.init, jnp.int32(0)).params  # shapes only
    template = None
    if which == "final":  # the whole state's layout, as the trainer saved it
        seed_array = jnp.asarray(record.seeds, dtype=jnp.int32)
        template = jax.jit(program.batched_init)(seed_array)
    run = load_params(record, which, template, one_seed)

    splits = [split] if split is not None else names
    sets = jax.device_put({name: job.task.eval_sets()[name] for name in splits})

    def evaluate_splits(params: Any, sets: dict[str, Any]) -> dict[str, jax.Array]:
        return {
            f"{name}/{metric}": values
            for name, batch in sets.items()
            for metric, values in program.batched_evaluate(params, batch).items()
        }

    params = jax.device_put(run.params)
    metrics = jax.device_get(jax.jit(evaluate_splits)(params, sets))  # {key: (S,)}
    per_seed = []
    for s, seed in enumerate(record.seeds):
        has = run.steps[s] >= 0
        per_seed.append(
            {
                "seed": int(seed),
                "step": int(run.steps[s]) if has else None,
                "metrics": {
                    k: float(v[s]) if has and np.isfinite(v[s]) else None
                    for k, v in metrics.items()
                },
            }
        )
    return Evaluation(run, list(overrides), splits, per_seed, aggregate(per_seed, "metrics"))


def render(evaluation: Evaluation) -> str:
    """A small table: a row per seed (its parameters' step and every metric), then the mean ± the
    sample std (ddof 1, as `seqbench table`)."""
    names = list(evaluation.per_seed[0]["metrics"]) if evaluation.per_seed else []
    run = evaluation.run
    title = (
        f"{run.record.name}: {run.which} parameters (checkpoint at step {run.checkpoint_step})"
        + (f" with {' '.join(evaluation.overrides)}" if evaluation.overrides else "")
    )

    def number(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.6g}"

    rows = [["seed", "step", *names]]
    for seed in evaluation.per_seed:
        step = "n/a" if seed["step"] is None else str(seed["step"])
        rows.append([str(seed["seed"]), step, *(number(seed["metrics"][k]) for k in names)])
    mean = []
    for name in names:
        stats = seed_statistics([seed["metrics"][name] for seed in evaluation.per_seed])
        if stats.mean is None:
            shown = "n/a"
        elif stats.std is None:
            shown = number(stats.mean)
        else:
            shown = f"{number(stats.mean)} ± {stats.std:.2g}"
        mean.append(f"{shown} (n={stats.n})")
    rows.append(["mean ± sample std", "", *mean])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return "\n".join([title, *(line.rstrip() for line in lines)])


def cmd_eval(args: Any) -> None:
    """`seqbench eval`: evaluate, print the table, write `--out` as JSON."""
    import sys

    from seqbench.cli import fail
    from seqbench.records import write_json_atomic

    try:
        evaluation = evaluate_run(args.run_dir, args.split, args.params, args.overrides)
    except EvalError as error:
        fail("seqbench", str(error))
    print(render(evaluation))
    if args.out:
        out = Path(args.out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(out, evaluation.to_json())
        except OSError as error:
            fail("seqbench", f"cannot write {out}: {error.strerror or error}")
        print(f"evaluation written to {out}", file=sys.stderr)


def add_eval_commands(commands: Any) -> None:
    """Add `seqbench eval` to the `seqbench` parser's subcommands."""
    evaluate = commands.add_parser(
        "eval",
        help="evaluate a run's kept parameters again (other task settings: key=value overrides)",
    )
    evaluate.add_argument("run_dir", help="the run folder (run.json, checkpoints/)")
    evaluate.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides, e.g. task.length=400 task.eval_lengths=[800]",
    )
    evaluate.add_argument("--split", help="one held-out split (val, test, test@L); default: all")
    evaluate.add_argument(
        "--params",
        choices=PARAMS,
        default="best",
        help="best: each seed's at its best validation evaluation (default); final: the last "
        "checkpoint's",
    )
    evaluate.add_argument("--out", metavar="FILE.json", help="also write the results as JSON")
    evaluate.set_defaults(func=cmd_eval)
