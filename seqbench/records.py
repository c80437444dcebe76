"""Run records: the `run.json` every run leaves, written atomically, and reading them back typed.

A record holds the resolved config, provenance (git commit, package versions, device), the model's
parameter count, per-seed final and best metrics, learning curves, the task's baseline, timings and
a status: "running" while training, then "completed", "diverged" (some seed stopped being finite),
"failed" (an exception; its message is kept) or "interrupted" (stopped on request, e.g. by SIGTERM;
resumable from its last checkpoint).

Evaluated metrics are named `<split>/<metric>` ("val/mse", "test/mse"). A seed's "final" metrics are
those of its last evaluation; its "best" metrics are those of the evaluation with the best validation
value of the task's primary metric (so "best" test numbers are chosen on validation, never on test).

Readers get a `RunRecord` (`load_record`, `RunRecord.from_json`): dataclasses for the sections
(`TaskInfo`, `ModelInfo`, `SeedSummary`, `Summary`, `Curves`, `Timing`, `GradientFlow`), read by
attribute. Older formats are upgraded on reading (`upgrade_record`), and a record a reader would
misread is refused with one line naming the file and its first bad field. `to_json` gives run.json's
content in the current format; `write_record` writes it atomically. The trainer builds its
`RunRecord` by attribute too: the sections from what it measured (`from_fields` on a dict in
run.json's layout, `json_ready` for NumPy values; `seed_summaries` and `aggregate` compute the
per-seed results and their statistics), written with `write_record`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

RECORD_NAME = "run.json"
#: 1: one evaluation set, metrics unprefixed; 2: "val" and "test" splits, metrics `<split>/<name>`;
#: 3: `model.architecture` (was `model.cell`), `task.family` and `task.length`
SCHEMA_VERSION = 3
SELECT_SPLIT, REPORT_SPLIT = "val", "test"
#: config entries that do not change what is computed (left out of a configuration's identity)
NON_IDENTITY_KEYS = (
    "seeds",
    "name",
    "resume",
    "tags",
    "tuned_by",  # where the hyper-parameters came from, not what they are
    "output_dir",
    "paths",
    "task.data_dir",
    "task.cache_dir",
    "task._target_",  # the task class, in records made before the task registry
    "logger",
    "trainer.progress",
    "trainer.compilation_cache_dir",
    "trainer.checkpoint",
    "trainer.gradient_flow_steps",
    "trainer.gradient_flow_batch",
    "trainer.checkpoint_every",
    "trainer.deterministic",
    "trainer.keep_best",  # keeping each seed's best parameters changes no number
    "trainer.seeds_over",  # vmapped or mapped seeds: the same computation, rounded differently
    "trainer.input_projection",  # in the step or hoisted: the same function, rounded differently
)
#: options added after run records were first written, each with the value at which a run computes
#: what a record without the option computed: a config holding that value hashes as if the option
#: were absent, so earlier runs are still resumed, skipped and grouped with new ones
ADDED_OPTIONS: dict[str, Any] = {
    "task.eval_lengths": [],  # length generalisation: no extra test lengths
    "optimizer.transform": None,  # optimizer=optax: an optax optimizer by _target_ (none: named)
    "optimizer.schedule_fn": None,  # an optax schedule by _target_ (none: optimizer.schedule)
    "task.split_protocol": "archive",  # uea: the archive's test file, validation out of train
}
STATUSES = ("running", "completed", "diverged", "failed", "interrupted")
#: the statuses of a run that ended with results (tables and plots read these; resume skips them)
FINISHED = ("completed", "diverged")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def json_ready(value: Any) -> Any:
    """`value` as plain JSON, as the typed record holds it and run.json reads back: NumPy arrays as
    nested lists, NumPy scalars as Python numbers, NaN and inf as None."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        return json_ready(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        if error.filename is None:  # write, flush or fsync: name the file (a full disk's line)
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: dict) -> None:
    """`data` as JSON (non-finite floats as null), written atomically."""
    write_text_atomic(path, json.dumps(json_ready(data), indent=1, allow_nan=False))


def metric_key(metric: str, split: str = REPORT_SPLIT) -> str:
    """`mse` -> `test/mse` (names that already carry a split are kept)."""
    return metric if "/" in metric else f"{split}/{metric}"


def config_identity(config: dict[str, Any], ignore: tuple[str, ...] = ()) -> str:
    """A hash of what a config computes: equal for the seeds, re-runs and logger choices of one
    configuration (see NON_IDENTITY_KEYS) and for options added since at their neutral value (see
    ADDED_OPTIONS), different when any hyper-parameter differs. `ignore`: more dotted keys to
    leave out (a table pooling runs that differ only in them)."""
    identity = json.loads(json.dumps(config, default=str))

    def parent_of(dotted: str) -> tuple[dict[str, Any] | None, str]:
        *parents, last = dotted.split(".")
        node = identity
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        return (node if isinstance(node, dict) else None), last

    for dotted in (*NON_IDENTITY_KEYS, *ignore):
        node, last = parent_of(dotted)
        if node is not None:
            node.pop(last, None)
    for dotted, neutral in ADDED_OPTIONS.items():
        node, last = parent_of(dotted)
        if node is not None and last in node and node[last] == neutral:
            del node[last]
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optimizer": {"lr": 0.1}} -> {"optimizer.lr": 0.1}."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def selection_metric(names: Iterable[str], primary: str) -> str:
    """The metric a seed's best evaluation is chosen on, among `names` (`<split>/<metric>`): the
    validation `primary`, the test one when there is no validation split."""
    select = metric_key(primary, SELECT_SPLIT)
    return select if select in set(names) else metric_key(primary, REPORT_SPLIT)


def seed_summaries(
    seeds: np.ndarray,
    eval_steps: np.ndarray,
    eval_metrics: dict[str, np.ndarray],
    directions: dict[str, str],
    primary: str,
    diverged_step: np.ndarray,
) -> list[dict[str, Any]]:
    """Per seed: status, final metrics (last evaluation) and best metrics (the evaluation with the
    best validation `primary`; test when there is no validation split).

    eval_metrics: {"<split>/<metric>": (E, S)}; directions and primary name bare metrics.
    """
    select = selection_metric(eval_metrics, primary)
    out = []
    for s, seed in enumerate(seeds):
        primary_curve = eval_metrics[select][:, s]
        finite = np.isfinite(primary_curve)
        best_at = None
        if finite.any():
            masked = np.where(
                finite, primary_curve, np.inf if directions[primary] == "min" else -np.inf
            )
            best_at = int(np.argmin(masked) if directions[primary] == "min" else np.argmax(masked))
        diverged = int(diverged_step[s]) >= 0
        out.append(
            {
                "seed": int(seed),
                "status": "diverged" if diverged else "completed",
                "diverged_step": int(diverged_step[s]) if diverged else None,
                "final": {k: float(v[-1, s]) for k, v in eval_metrics.items()},
                "best": {k: float(v[best_at, s]) for k, v in eval_metrics.items()}
                if best_at is not None
                else None,
                "best_step": int(eval_steps[best_at]) if best_at is not None else None,
            }
        )
    return out


def aggregate(per_seed: list[dict[str, Any]], which: str = "final") -> dict[str, dict[str, Any]]:
    """Mean, std (population, ddof 0) and count of each metric over the seeds that have a value."""
    names = sorted({k for s in per_seed if s.get(which) for k in s[which]})
    summary = {}
    for name in names:
        values = [s[which][name] for s in per_seed if s.get(which) and s[which][name] is not None]
        values = [v for v in values if math.isfinite(v)]
        summary[name] = {
            "mean": float(np.mean(values)) if values else None,
            "std": float(np.std(values)) if values else None,
            "n": len(values),
        }
    return summary


def _legacy_label(task: dict[str, Any], config_task: dict[str, Any]) -> str:
    """The label of a record from before labels were recorded: `name (T=length[, variant])`, or
    the bare name without a length."""
    length = config_task.get("length")
    if length is None:
        return task["name"]
    variant = config_task.get("variant")
    suffix = f", {variant}" if variant and variant != "tcn" else ""
    return f"{task['name']} (T={length}{suffix})"


def _legacy_family(label: str, length: Any) -> str:
    """The label without its length: `adding (T=100)` -> `adding`, `adding (T=100, arjovsky)`
    -> `adding (arjovsky)`, `copy_memory (T=50, n=5)` -> `copy_memory (n=5)`."""
    label = re.sub(rf"T={re.escape(str(length))}(, )?", "", label)
    return label.replace(", )", ")").replace(" ()", "")


def upgrade_record(record: dict[str, Any], path: Path | str) -> dict[str, Any]:
    """Bring an older record (a JSON object) to the current format, in place; refuse one from a
    newer seqbench (ValueError naming `path`).

    Format 1 had a single evaluation set, the test set of format 2: its metrics become
    `test/<name>`. Formats 1 and 2 named the model's architecture `model.cell` (read as
    `architecture` by `ModelInfo`). Records written before tasks recorded their `label`, `family`
    and `length` get them from the config: the label `name (T=length[, variant])`, the length
    `config.task.length` (None unless an integer), the family the label without its `T=length`.
    Malformed input is left as it is, for the typed parse to name the first bad field.
    """
    version = _format_version(record, path)
    if version == 1:

        def prefixed(metrics: Any) -> Any:
            if not isinstance(metrics, dict):  # None, or malformed: left to the parse
                return metrics
            return {metric_key(str(k)): v for k, v in metrics.items()}

        per_seed = record.get("per_seed")
        for seed in per_seed if isinstance(per_seed, list) else []:
            if isinstance(seed, dict):
                seed["final"], seed["best"] = (
                    prefixed(seed.get("final")),
                    prefixed(seed.get("best")),
                )
        summary = record.get("summary")
        for kind in list(summary) if isinstance(summary, dict) else []:
            summary[kind] = prefixed(summary[kind])
        curves = record.get("curves")
        if isinstance(curves, dict) and "eval" in curves:
            curves["eval"] = prefixed(curves["eval"])
    task, config = record.get("task"), record.get("config")
    config_task = config.get("task") if isinstance(config, dict) else None
    if (
        isinstance(task, dict)
        and _is_str(task.get("name"))
        and isinstance(config_task, dict | None)
    ):
        config_task = config_task or {}
        if task.get("label") is None:
            task["label"] = _legacy_label(task, config_task)
        length = config_task.get("length")
        if "length" not in task:
            task["length"] = length if _is_int(length) else None
        if "family" not in task and _is_str(task["label"]):
            task["family"] = _legacy_family(task["label"], length)
    record["schema_version"] = SCHEMA_VERSION
    return record


def _format_version(record: dict[str, Any], path: Path | str) -> int:
    """The record's `schema_version` (1 when absent); ValueError when newer than SCHEMA_VERSION."""
    version = record.get("schema_version", 1)
    if not _is_int(version) or version > SCHEMA_VERSION:
        raise ValueError(
            f"run record {path} has format {version}, newer than this seqbench reads "
            f"({SCHEMA_VERSION}); upgrade seqbench"
        )
    return version


# --- validation helpers: each names the first bad field in one line ----------------------------


class _Malformed(ValueError):
    """A record field that is missing or of the wrong type or shape (the message names it)."""


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    names = {dict: "an object", list: "a list", str: "a string"}
    return names.get(type(value), type(value).__name__)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_object(value: Any) -> bool:
    return isinstance(value, dict)


def _is_cell_field(value: Any) -> bool:
    """`config.model.cell`: the architecture's options, or its name (formats 1 and 2)."""
    return isinstance(value, dict | str)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_list(value: Any) -> bool:
    return isinstance(value, list)


def _is_metrics(value: Any) -> bool:
    """{name: number or null}."""
    return _is_object(value) and all(v is None or _is_number(v) for v in value.values())


def _or_null(ok: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or ok(value)


def _list_of(ok: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, list) and all(ok(v) for v in value)


TEXT, TEXT_OR_NULL = "a string", "a string or null"
OBJECT, OBJECT_OR_NULL = "an object", "an object or null"
INT, INT_OR_NULL = "an integer", "an integer or null"
NUMBER_OR_NULL = "a number or null"
METRICS_OR_NULL = "an object {metric: number or null} or null"


def _field(
    node: dict[str, Any],
    key: str,
    where: str,
    expected: str,
    ok: Callable[[Any], bool],
    required: bool = True,
) -> Any:
    """`node[key]` when `ok` accepts it; None when absent and not `required`; else _Malformed."""
    name = f"{where}.{key}" if where else key
    if key not in node:
        if required:
            raise _Malformed(f"'{name}' is missing (expected {expected})")
        return None
    value = node[key]
    if not ok(value):
        shown = repr(value) if isinstance(value, str) else _kind(value)
        raise _Malformed(f"'{name}' is {shown}, expected {expected}")
    return value


def _check_array(value: Any, name: str, ndims: tuple[int, ...], rows: int | None = None) -> None:
    """`value` as a float array has one of `ndims` dimensions (and `rows` rows when given)."""
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise _Malformed(f"'{name}' is not an array of numbers") from None
    if array.ndim not in ndims or (rows is not None and array.shape[0] != rows):
        want = " or ".join(f"{n}-d" for n in ndims)
        length = f" of {rows} rows" if rows is not None else ""
        raise _Malformed(f"'{name}' has shape {array.shape}, expected {want}{length}")


def _rest(node: dict[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    """The entries of `node` a typed section does not name (kept, and written back)."""
    return {k: v for k, v in node.items() if k not in known}


# --- the typed run record ----------------------------------------------------------------------


class _FromFields:
    """`from_fields` for a section whose entries are `KNOWN`, the rest kept in `extra`."""

    KNOWN: ClassVar[tuple[str, ...]]

    @classmethod
    def from_fields(cls, node: dict[str, Any]) -> Any:
        """The section of `node`, a dict in run.json's layout (what a task or model describes,
        what the trainer measured), unchecked: entries it does not name go to `extra`."""
        known = {k: v for k, v in node.items() if k in cls.KNOWN}
        return cls(**known, extra={k: v for k, v in node.items() if k not in cls.KNOWN})


@dataclass
class MetricStats:
    """One metric over a run's seeds: mean and std (population, ddof 0) over the seeds with a
    finite value (None: none has one), and how many seeds that is."""

    mean: float | None
    std: float | None
    n: int | None = None

    @classmethod
    def _parse(cls, node: dict[str, Any], where: str) -> MetricStats:
        return cls(
            _field(node, "mean", where, NUMBER_OR_NULL, _or_null(_is_number)),
            _field(node, "std", where, NUMBER_OR_NULL, _or_null(_is_number)),
            _field(node, "n", where, INT_OR_NULL, _or_null(_is_int), False),
        )

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "n": self.n}


@dataclass
class Summary:
    """Per metric (`<split>/<name>`), statistics over the seeds of their final metrics (last
    evaluation) and of their best (the evaluation with the best validation primary metric)."""

    final: dict[str, MetricStats] = field(default_factory=dict)
    best: dict[str, MetricStats] = field(default_factory=dict)

    @classmethod
    def _parse(cls, node: dict[str, Any]) -> Summary:
        kinds = {}
        for kind in ("final", "best"):
            stats = _field(
                node,
                kind,
                "summary",
                "an object {metric: {mean, std, n}}",
                lambda v: _is_object(v) and all(_is_object(s) for s in v.values()),
                False,
            )
            kinds[kind] = {
                metric: MetricStats._parse(entry, f"summary.{kind}.{metric}")
                for metric, entry in (stats or {}).items()
            }
        return cls(**kinds)

    def to_json(self) -> dict[str, Any]:
        return {
            kind: {metric: stats.to_json() for metric, stats in getattr(self, kind).items()}
            for kind in ("final", "best")
        }


@dataclass
class SeedSummary(_FromFields):
    """One seed's results: `final` metrics (last evaluation), `best` metrics (at `best_step`, the
    evaluation with the best validation primary metric; None when no evaluation was finite),
    `{"<split>/<name>": value or None}`; status "completed" or "diverged" (at `diverged_step`)."""

    seed: int
    status: str | None = None
    diverged_step: int | None = None
    final: dict[str, float | None] | None = None
    best: dict[str, float | None] | None = None
    best_step: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    KNOWN: ClassVar[tuple[str, ...]] = (
        "seed", "status", "diverged_step", "final", "best", "best_step",
    )  # fmt: skip

    @classmethod
    def _parse(cls, node: dict[str, Any], where: str) -> SeedSummary:
        return cls(
            seed=_field(node, "seed", where, INT, _is_int),
            status=_field(node, "status", where, TEXT, _is_str, False),
            diverged_step=_field(
                node, "diverged_step", where, INT_OR_NULL, _or_null(_is_int), False
            ),
            final=_field(node, "final", where, METRICS_OR_NULL, _or_null(_is_metrics), False),
            best=_field(node, "best", where, METRICS_OR_NULL, _or_null(_is_metrics), False),
            best_step=_field(node, "best_step", where, INT_OR_NULL, _or_null(_is_int), False),
            extra=_rest(node, cls.KNOWN),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "status": self.status,
            "diverged_step": self.diverged_step,
            "final": self.final,
            "best": self.best,
            "best_step": self.best_step,
            **self.extra,
        }


@dataclass
class TaskInfo(_FromFields):
    """What the task said about itself (`Task.describe()`).

    label: how tables name it (`adding (T=600)`, `seq_mnist (pixel)`); family: the label without
    the length (`adding`, `adding (arjovsky)`, `copy_memory (n=5)`); length: the sequence length
    T it is run at, None for tasks without one (data sets); metrics: {metric: "min" | "max"};
    baseline: {metric: the trivial predictor's value or None}; spec: the input/output spec;
    extra: whatever else the task described (a data set's `sizes`, `source`, ...).
    """

    name: str
    label: str
    family: str
    length: int | None
    metrics: dict[str, str]
    primary_metric: str
    baseline: dict[str, float | None]
    spec: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    KNOWN: ClassVar[tuple[str, ...]] = (
        "name", "label", "family", "length", "spec", "metrics", "primary_metric", "baseline",
    )  # fmt: skip

    @classmethod
    def _parse(cls, node: dict[str, Any]) -> TaskInfo:
        where = "task"
        name = _field(node, "name", where, TEXT, _is_str)
        label = _field(node, "label", where, TEXT, _is_str)
        family = _field(node, "family", where, TEXT, _is_str)
        length = _field(node, "length", where, INT_OR_NULL, _or_null(_is_int))
        spec = _field(node, "spec", where, OBJECT_OR_NULL, _or_null(_is_object), False)
        metrics = _field(
            node,
            "metrics",
            where,
            'an object {metric: "min" or "max"}',
            lambda v: _is_object(v) and v and all(d in ("min", "max") for d in v.values()),
        )
        primary = _field(
            node,
            "primary_metric",
            where,
            f"one of {', '.join(metrics)}",
            lambda v: _is_str(v) and v in metrics,
        )
        baseline = _field(
            node, "baseline", where, "an object {metric: number or null}", _is_metrics
        )
        return cls(
            name, label, family, length, metrics, primary, baseline, spec, _rest(node, cls.KNOWN)
        )

    def sort_key(self) -> tuple[str, int, str]:
        """Reports' order of tasks: by family, then by length as a number (no length first)."""
        return (self.family, -1 if self.length is None else self.length, self.label)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "label": self.label,
            "family": self.family,
            "length": self.length,
        }
        if self.spec is not None:
            out["spec"] = self.spec
        out.update(metrics=self.metrics, primary_metric=self.primary_metric, baseline=self.baseline)
        return {**out, **self.extra}


@dataclass
class ModelInfo(_FromFields):
    """The trained model: its architecture (`lstm`, `gru`, ...; `model.cell` in formats 1 and 2),
    exact parameter count, hidden size and the parameter budget it was sized to (None: none);
    `state_size`: floats of recurrent state per example, every layer and direction (None: not
    recorded, older records); `receptive_field`: steps the model sees back from each output
    (None: unbounded, a recurrence). Fields that are None are left out of run.json."""

    architecture: str
    param_count: int
    hidden_size: int | None = None
    param_budget: int | None = None
    state_size: int | None = None
    receptive_field: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    KNOWN: ClassVar[tuple[str, ...]] = (
        "architecture",
        "hidden_size",
        "param_count",
        "param_budget",
        "state_size",
        "receptive_field",
    )

    @classmethod
    def _parse(cls, node: dict[str, Any], legacy: bool) -> ModelInfo:
        """`legacy`: a format 1 or 2 record, whose `cell` is the architecture."""
        key = "cell" if legacy and "architecture" not in node else "architecture"
        known = (*cls.KNOWN, key)
        return cls(
            architecture=_field(node, key, "model", TEXT, _is_str),
            param_count=_field(node, "param_count", "model", INT, _is_int),
            hidden_size=_field(node, "hidden_size", "model", INT_OR_NULL, _or_null(_is_int), False),
            param_budget=_field(
                node, "param_budget", "model", INT_OR_NULL, _or_null(_is_int), False
            ),
            state_size=_field(node, "state_size", "model", INT_OR_NULL, _or_null(_is_int), False),
            receptive_field=_field(
                node, "receptive_field", "model", INT_OR_NULL, _or_null(_is_int), False
            ),
            extra=_rest(node, known),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "architecture": self.architecture,
            "hidden_size": self.hidden_size,
            "param_count": self.param_count,
            "param_budget": self.param_budget,
            **({} if self.state_size is None else {"state_size": self.state_size}),
            **({} if self.receptive_field is None else {"receptive_field": self.receptive_field}),
            **self.extra,
        }


@dataclass
class Timing(_FromFields):
    """Seconds spent compiling, training, evaluating and measuring gradient flow; throughput
    (over every seed); the wall time of the job; the step a resumed run continued from."""

    compile_s: float | None = None
    train_s: float | None = None
    eval_s: float | None = None
    flow_s: float | None = None
    resumed_from_step: int | None = None
    steps_per_s: float | None = None
    tokens_per_s: float | None = None
    wall_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    NUMBERS: ClassVar[tuple[str, ...]] = (
        "compile_s", "train_s", "eval_s", "flow_s", "steps_per_s", "tokens_per_s", "wall_s",
    )  # fmt: skip
    KNOWN: ClassVar[tuple[str, ...]] = (*NUMBERS, "resumed_from_step")

    @classmethod
    def _parse(cls, node: dict[str, Any]) -> Timing:
        values = {
            key: _field(node, key, "timing", NUMBER_OR_NULL, _or_null(_is_number), False)
            for key in cls.NUMBERS
        }
        values["resumed_from_step"] = _field(
            node, "resumed_from_step", "timing", INT_OR_NULL, _or_null(_is_int), False
        )
        return cls(**values, extra=_rest(node, cls.KNOWN))

    def to_json(self) -> dict[str, Any]:
        out = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name != "extra" and getattr(self, f.name) is not None
        }
        return {**out, **self.extra}


@dataclass
class Curves:
    """Learning curves: `eval` {"<split>/<name>": (E, S) or (E,)} at `eval_steps` (E,); the
    training loss (N, S) at `train_steps` (N,). Nested lists, null where a value is not finite."""

    eval_steps: list[float]
    eval: dict[str, list[Any]]
    train_steps: list[Any] | None = None
    train_loss: list[Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    KNOWN: ClassVar[tuple[str, ...]] = ("eval_steps", "eval", "train_steps", "train_loss")

    @classmethod
    def _parse(cls, node: dict[str, Any]) -> Curves:
        steps = _field(node, "eval_steps", "curves", "a list of numbers", _list_of(_is_number))
        evals = _field(node, "eval", "curves", OBJECT, _is_object)
        for metric, values in evals.items():
            _check_array(values, f"curves.eval.{metric}", (1, 2), rows=len(steps))
        return cls(
            steps,
            evals,
            _field(node, "train_steps", "curves", "a list or null", _or_null(_is_list), False),
            _field(node, "train_loss", "curves", "a list or null", _or_null(_is_list), False),
            _rest(node, cls.KNOWN),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"eval_steps": self.eval_steps, "eval": self.eval}
        for key in ("train_steps", "train_loss"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return {**out, **self.extra}


@dataclass
class GradientFlow:
    """||dL/dh_t|| measured at training `steps`: `norm`, one (S, L, T) nested list per step (per
    seed, recurrent layer and time step), on `batch_size` examples of the `split` split."""

    steps: list[int]
    norm: list[Any]
    split: str | None = None
    batch_size: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    KNOWN: ClassVar[tuple[str, ...]] = ("split", "batch_size", "steps", "norm")

    @classmethod
    def _parse(cls, node: dict[str, Any]) -> GradientFlow:
        where = "gradient_flow"
        steps = _field(node, "steps", where, "a list of integers", _list_of(_is_int))
        norms = _field(
            node,
            "norm",
            where,
            f"a list of {len(steps)} (seeds, layers, T) arrays",
            lambda v: isinstance(v, list) and len(v) == len(steps),
        )
        for i, norm in enumerate(norms):
            _check_array(norm, f"gradient_flow.norm[{i}]", (3,))
        return cls(
            steps,
            norms,
            _field(node, "split", where, TEXT_OR_NULL, _or_null(_is_str), False),
            _field(node, "batch_size", where, INT_OR_NULL, _or_null(_is_int), False),
            _rest(node, cls.KNOWN),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.split is not None:
            out["split"] = self.split
        if self.batch_size is not None:
            out["batch_size"] = self.batch_size
        return {**out, "steps": self.steps, "norm": self.norm, **self.extra}


@dataclass
class Interruption:
    """How an "interrupted" run was stopped: `by` (a signal's or exception's name), the `step`
    reached (None: not at a chunk boundary) and when (`at`, ISO time)."""

    by: str | None = None
    step: int | None = None
    at: str | None = None

    @classmethod
    def _parse(cls, node: dict[str, Any]) -> Interruption:
        where = "interrupted"
        return cls(
            _field(node, "by", where, TEXT_OR_NULL, _or_null(_is_str), False),
            _field(node, "step", where, INT_OR_NULL, _or_null(_is_int), False),
            _field(node, "at", where, TEXT_OR_NULL, _or_null(_is_str), False),
        )

    def to_json(self) -> dict[str, Any]:
        return {"by": self.by, "step": self.step, "at": self.at}


@dataclass
class RunRecord:
    """One run's record (run.json), typed; `RunRecord.from_json` reads every format, `to_json`
    writes the current one (SCHEMA_VERSION).

    Required: `name`, `status` (one of STATUSES), `config` (the resolved config, a plain dict),
    `task`, `model`, `seeds`; `per_seed` too once the run has results (status in FINISHED).
    Provenance (`git`, `versions`, `device`, `determinism`, `overrides`) stays plain JSON.
    `summary`, `curves`, `timing` and `gradient_flow` are None where the record has none (records
    rebuilt from wandb have none). `search` (plain JSON, None outside a search): the hyper-parameter
    search that started the run, its space, budget and the run's objective (`seqbench.search`).
    `extra`: top-level entries this seqbench does not name, kept.
    `path`: where the record was read from (its run folder; `wandb:<project>/<group>`), not part of
    run.json and not compared.
    """

    name: str
    status: str
    config: dict[str, Any]
    task: TaskInfo
    model: ModelInfo
    seeds: list[int]
    started: str | None = None
    finished: str | None = None
    error: str | None = None
    output_dir: str | None = None
    overrides: list[Any] | None = None
    git: dict[str, Any] | None = None
    versions: dict[str, Any] | None = None
    device: dict[str, Any] | None = None
    determinism: dict[str, Any] | None = None
    resumed: list[Any] | None = None
    wandb_run_ids: dict[str, Any] | None = None
    interrupted: Interruption | None = None
    per_seed: list[SeedSummary] | None = None
    summary: Summary | None = None
    curves: Curves | None = None
    timing: Timing | None = None
    gradient_flow: GradientFlow | None = None
    search: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    path: str | None = field(default=None, compare=False)

    #: run.json's own entries, in the order `to_json` writes them ("path" is never written)
    KEYS: ClassVar[tuple[str, ...]] = (
        "schema_version", "name", "status", "started", "finished", "error", "output_dir",
        "config", "overrides", "git", "versions", "device", "determinism", "model", "task",
        "seeds", "resumed", "wandb_run_ids", "interrupted", "per_seed", "summary", "curves",
        "timing", "gradient_flow", "search",
    )  # fmt: skip

    @classmethod
    def from_json(cls, data: Any, path: Path | str | None = None) -> RunRecord:
        """The record a JSON object (run.json's content) holds, upgraded from older formats
        (`upgrade_record`) and checked.

        `path`: where it comes from, named in errors and kept as `path` (default: the object's own
        "path" entry, as records rebuilt from wandb carry). ValueError, one line naming `path`:
        "... newer than this seqbench reads" for a record of a newer format, else "malformed run
        record <path>: <the first bad field>" for anything a reader would misread.
        """
        if path is None and isinstance(data, dict):
            path = data.get("path")
        if not isinstance(data, dict):
            raise ValueError(f"malformed run record {path}: not a JSON object")
        data = copy.deepcopy(data)
        legacy = _format_version(data, path) <= 2
        upgrade_record(data, path)
        try:
            record = cls._parse(data, legacy)
        except _Malformed as error:
            raise ValueError(f"malformed run record {path}: {error}") from None
        record.path = None if path is None else str(path)
        return record

    @classmethod
    def _parse(cls, data: dict[str, Any], legacy: bool) -> RunRecord:
        """The typed record of an upgraded JSON object; _Malformed at the first bad field."""
        if not any(key in data for key in ("name", "status", "config", "task", "model", "seeds")):
            raise _Malformed("not a run record (none of name, status, config, task, model, seeds)")
        name = _field(data, "name", "", TEXT, _is_str)
        status = _field(
            data,
            "status",
            "",
            f"one of {', '.join(STATUSES)}",
            lambda v: _is_str(v) and v in STATUSES,
        )
        started, finished, error, output_dir = (
            _field(data, key, "", TEXT_OR_NULL, _or_null(_is_str), False)
            for key in ("started", "finished", "error", "output_dir")
        )
        config = _field(data, "config", "", OBJECT, _is_object)
        config_model = _field(config, "model", "config", OBJECT, _is_object, False) or {}
        _field(config_model, "architecture", "config.model", TEXT, _is_str, False)
        # the options of `architecture` (an object), or in formats 1 and 2 the architecture's name
        _field(config_model, "cell", "config.model", "an object or a string", _is_cell_field, False)
        _field(config_model, "n_layers", "config.model", INT, _is_int, False)
        _field(config, "task", "config", OBJECT, _is_object, False)
        _field(
            config,
            "tags",
            "config",
            "a list of strings or null",
            _or_null(_list_of(_is_str)),
            False,
        )
        seeds = _field(data, "seeds", "", "a list of integers", _list_of(_is_int))
        task = TaskInfo._parse(_field(data, "task", "", OBJECT, _is_object))
        model = ModelInfo._parse(_field(data, "model", "", OBJECT, _is_object), legacy)
        timing = _field(data, "timing", "", OBJECT_OR_NULL, _or_null(_is_object), False)
        has_results = status in FINISHED
        seeds_ok = _list_of(_is_object) if has_results else _or_null(_list_of(_is_object))
        per_seed = _field(data, "per_seed", "", "a list of objects", seeds_ok, has_results)
        summary = _field(data, "summary", "", OBJECT_OR_NULL, _or_null(_is_object), False)
        curves = _field(data, "curves", "", OBJECT_OR_NULL, _or_null(_is_object), False)
        flow = _field(data, "gradient_flow", "", OBJECT_OR_NULL, _or_null(_is_object), False)
        provenance = {
            key: _field(data, key, "", OBJECT_OR_NULL, _or_null(_is_object), False)
            for key in ("git", "versions", "device", "determinism")
        }
        interrupted = _field(data, "interrupted", "", OBJECT_OR_NULL, _or_null(_is_object), False)
        search = _field(data, "search", "", OBJECT_OR_NULL, _or_null(_is_object), False)
        return cls(
            name=name,
            status=status,
            config=config,
            task=task,
            model=model,
            seeds=seeds,
            started=started,
            finished=finished,
            error=error,
            output_dir=output_dir,
            timing=Timing._parse(timing) if timing is not None else None,
            per_seed=[SeedSummary._parse(s, f"per_seed[{i}]") for i, s in enumerate(per_seed)]
            if per_seed is not None
            else None,
            summary=Summary._parse(summary) if summary is not None else None,
            curves=Curves._parse(curves) if curves else None,
            gradient_flow=GradientFlow._parse(flow) if flow else None,
            resumed=_field(data, "resumed", "", "a list", _is_list, False),
            wandb_run_ids=_field(
                data, "wandb_run_ids", "", OBJECT_OR_NULL, _or_null(_is_object), False
            ),
            overrides=_field(data, "overrides", "", "a list or null", _or_null(_is_list), False),
            interrupted=Interruption._parse(interrupted) if interrupted is not None else None,
            search=search,
            extra=_rest(data, (*cls.KEYS, "path")),
            **provenance,
        )

    def to_json(self) -> dict[str, Any]:
        """run.json's content (a fresh JSON-ready object) in the current format."""
        out: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "status": self.status,
            "started": self.started,
            "finished": self.finished,
            "error": self.error,
            "output_dir": self.output_dir,
            "config": self.config,
        }
        optional = {
            "overrides": self.overrides,
            "git": self.git,
            "versions": self.versions,
            "device": self.device,
            "determinism": self.determinism,
        }
        out.update((k, v) for k, v in optional.items() if v is not None)
        out.update(model=self.model.to_json(), task=self.task.to_json(), seeds=self.seeds)
        sections = {
            "resumed": self.resumed,
            "wandb_run_ids": self.wandb_run_ids,
            "interrupted": self.interrupted and self.interrupted.to_json(),
            "per_seed": None if self.per_seed is None else [s.to_json() for s in self.per_seed],
            "summary": self.summary and self.summary.to_json(),
            "curves": self.curves and self.curves.to_json(),
            "timing": self.timing and self.timing.to_json(),
            "gradient_flow": self.gradient_flow and self.gradient_flow.to_json(),
            "search": self.search,
        }
        out.update((k, v) for k, v in sections.items() if v is not None)
        out.update(self.extra)
        return copy.deepcopy(out)

    def aggregate(self, which: str = "best") -> dict[str, MetricStats]:
        """Per metric, statistics over the seeds' `which` ("best" or "final") values."""
        return metric_stats([s.to_json() for s in self.per_seed or []], which)


def metric_stats(per_seed: list[dict[str, Any]], which: str) -> dict[str, MetricStats]:
    """`aggregate` of per-seed summaries (dicts in run.json's layout), typed."""
    return {k: MetricStats(**v) for k, v in aggregate(per_seed, which).items()}


def check_record(record: Any, path: Path | str) -> None:
    """Raise ValueError, one line naming `path` and the first bad field, unless `record` (a JSON
    object) is a run record every reader can read (see `RunRecord.from_json`)."""
    RunRecord.from_json(record, path)


def load_record(path: Path | str) -> RunRecord:
    """Read one run.json (a file or the run directory holding it), in the current format; its
    `path` is the run directory.

    FileNotFoundError when there is none; ValueError (one line naming the file) when it cannot be
    read, is not JSON, comes from a newer seqbench or is not a run record (`RunRecord.from_json`).
    """
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_NAME
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"no run record at {path}") from None
    except OSError as error:
        raise ValueError(f"cannot read run record {path}: {error.strerror or error}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"corrupt run record {path}: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"corrupt run record {path}: not a JSON object")
    record = RunRecord.from_json(data, path)
    record.path = str(path.parent)
    return record


def write_record(path: Path | str, record: RunRecord) -> None:
    """Write `record` as run.json (`path`: the file, or the run directory), atomically."""
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_NAME
    write_json_atomic(path, record.to_json())


def find_records(root: Path) -> Iterator[Path]:
    """Every run.json below `root`, in sorted order."""
    root = Path(root)
    if root.is_file():
        yield root
        return
    yield from sorted(root.rglob(RECORD_NAME))
