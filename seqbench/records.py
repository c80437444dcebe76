"""Run records: the `run.json` every run leaves, written atomically, and reading them back.

A record holds the resolved config, provenance (git commit, package versions, device), the model's
parameter count, per-seed final and best metrics, learning curves, the task's baseline, timings and
a status: "running" while training, then "completed", "diverged" (some seed stopped being finite),
"failed" (an exception; its message is kept) or "interrupted" (stopped on request, e.g. by SIGTERM;
resumable from its last checkpoint).

Evaluated metrics are named `<split>/<metric>` ("val/mse", "test/mse"). A seed's "final" metrics are
those of its last evaluation; its "best" metrics are those of the evaluation with the best validation
value of the task's primary metric (so "best" test numbers are chosen on validation, never on test).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

RECORD_NAME = "run.json"
#: 1: one evaluation set, metrics unprefixed; 2: "val" and "test" splits, metrics `<split>/<name>`
SCHEMA_VERSION = 2
SELECT_SPLIT, REPORT_SPLIT = "val", "test"
#: config entries that do not change what is computed (left out of a configuration's identity)
NON_IDENTITY_KEYS = (
    "seeds",
    "name",
    "resume",
    "tags",
    "output_dir",
    "paths",
    "task.data_dir",
    "task.cache_dir",
    "logger",
    "trainer.progress",
    "trainer.compilation_cache_dir",
    "trainer.checkpoint",
    "trainer.gradient_flow_steps",
    "trainer.gradient_flow_batch",
    "trainer.checkpoint_every",
    "trainer.deterministic",
)
STATUSES = ("running", "completed", "diverged", "failed", "interrupted")
#: the statuses of a run that ended with results (tables and plots read these; resume skips them)
FINISHED = ("completed", "diverged")
PACKAGES = (
    "seqbench",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "numpy",
    "hydra-core",
    "omegaconf",
    "wandb",
)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _jsonable(value: Any) -> Any:
    """NumPy and non-finite floats to plain JSON (NaN and inf become null)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
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
    write_text_atomic(path, json.dumps(_jsonable(data), indent=1, allow_nan=False))


#: XLA flags that make GPU programs deterministic (scatter and reductions in a fixed order); CPU
#: programs are deterministic without them
DETERMINISTIC_XLA_FLAGS = ("--xla_gpu_deterministic_ops=true",)


def use_deterministic_flags() -> None:
    """Add DETERMINISTIC_XLA_FLAGS to $XLA_FLAGS (effective if no JAX backend is running yet)."""
    flags = os.environ.get("XLA_FLAGS", "").split()
    os.environ["XLA_FLAGS"] = " ".join(
        [*flags, *(f for f in DETERMINISTIC_XLA_FLAGS if f not in flags)]
    )


def determinism_info(requested: bool) -> dict[str, Any]:
    """What the run record says about reproducibility."""
    return {
        "requested": requested,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "cpu": "bit-identical for the same config and seeds, without extra flags",
        "gpu_needs": list(DETERMINISTIC_XLA_FLAGS),
    }


def git_info(cwd: Path | None = None) -> dict[str, Any]:
    """The commit of the seqbench checkout and whether its tree had uncommitted changes."""
    cwd = cwd or Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_model() -> str | None:
    """The CPU's model name (Linux /proc/cpuinfo, else `platform.processor()`): with the thread
    count, what decides whether two CPU runs agree bit for bit."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def device_info() -> dict[str, Any]:
    import jax

    devices = jax.devices()
    return {
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "host": platform.node(),
        "processor": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": sorted(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None,
    }


def metric_key(metric: str, split: str = REPORT_SPLIT) -> str:
    """`mse` -> `test/mse` (names that already carry a split are kept)."""
    return metric if "/" in metric else f"{split}/{metric}"


def config_identity(config: dict[str, Any]) -> str:
    """A hash of what a config computes: equal for the seeds, re-runs and logger choices of one
    configuration (see NON_IDENTITY_KEYS), different when any hyper-parameter differs."""
    identity = json.loads(json.dumps(config, default=str))
    for dotted in NON_IDENTITY_KEYS:
        *parents, last = dotted.split(".")
        node = identity
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
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
    select = metric_key(primary, SELECT_SPLIT)
    if select not in eval_metrics:
        select = metric_key(primary, REPORT_SPLIT)
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


def upgrade_record(record: dict[str, Any], path: Path) -> dict[str, Any]:
    """Bring an older record to the current format in memory; refuse one from a newer seqbench.

    Format 1 had a single evaluation set, the test set of format 2: its metrics become `test/<name>`.
    """
    version = record.get("schema_version", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ValueError(
            f"run record {path} has format {version}, newer than this seqbench reads "
            f"({SCHEMA_VERSION}); upgrade seqbench"
        )
    if version == 1:

        def prefixed(metrics: Any) -> Any:
            if not isinstance(metrics, dict):  # None, or malformed: left to check_record
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
        record["schema_version"] = SCHEMA_VERSION
    return record


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


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_metrics(value: Any) -> bool:
    """{name: number or null}."""
    return _is_object(value) and all(v is None or _is_number(v) for v in value.values())


def _or_null(ok: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or ok(value)


def _list_of(ok: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, list) and all(ok(v) for v in value)


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


def _check_fields(record: dict[str, Any]) -> None:
    """Raise _Malformed at the first field the trainer, the reports or resuming would misread."""
    if not any(key in record for key in ("name", "status", "config", "task", "model", "seeds")):
        raise _Malformed("not a run record (none of name, status, config, task, model, seeds)")
    text, text_or_null = "a string", "a string or null"
    obj, obj_or_null = "an object", "an object or null"
    metrics_or_null = "an object {metric: number or null} or null"
    _field(record, "name", "", text, _is_str)
    _field(
        record,
        "status",
        "",
        f"one of {', '.join(STATUSES)}",
        lambda v: _is_str(v) and v in STATUSES,
    )
    for key in ("started", "finished", "error"):
        _field(record, key, "", text_or_null, _or_null(_is_str), False)
    config = _field(record, "config", "", obj, _is_object)
    config_model = _field(config, "model", "config", obj, _is_object, False) or {}
    _field(config_model, "cell", "config.model", text, _is_str, False)
    _field(config_model, "n_layers", "config.model", "an integer", _is_int, False)
    _field(config, "task", "config", obj, _is_object, False)
    _field(
        config, "tags", "config", "a list of strings or null", _or_null(_list_of(_is_str)), False
    )
    _field(record, "seeds", "", "a list of integers", _list_of(_is_int))
    task = _field(record, "task", "", obj, _is_object)
    _field(task, "name", "task", text, _is_str)
    _field(task, "label", "task", text_or_null, _or_null(_is_str), False)
    directions = 'an object {metric: "min" or "max"}'
    metrics = _field(
        task,
        "metrics",
        "task",
        directions,
        lambda v: _is_object(v) and v and all(d in ("min", "max") for d in v.values()),
    )
    _field(
        task,
        "primary_metric",
        "task",
        f"one of {', '.join(metrics)}",
        lambda v: _is_str(v) and v in metrics,
    )
    _field(task, "baseline", "task", "an object {metric: number or null}", _is_metrics)
    model = _field(record, "model", "", obj, _is_object)
    _field(model, "cell", "model", text, _is_str)
    _field(model, "param_count", "model", "an integer", _is_int)
    timing = _field(record, "timing", "", obj_or_null, _or_null(_is_object), False) or {}
    for key in ("compile_s", "steps_per_s", "tokens_per_s", "wall_s"):
        _field(timing, key, "timing", "a number or null", _or_null(_is_number), False)
    has_results = record["status"] in FINISHED
    seeds_ok = _list_of(_is_object) if has_results else _or_null(_list_of(_is_object))
    per_seed = _field(record, "per_seed", "", "a list of objects", seeds_ok, has_results) or []
    for i, seed in enumerate(per_seed):
        _field(seed, "seed", f"per_seed[{i}]", "an integer", _is_int)
        _field(seed, "status", f"per_seed[{i}]", text, _is_str, False)
        for kind in ("final", "best"):
            _field(seed, kind, f"per_seed[{i}]", metrics_or_null, _or_null(_is_metrics), False)
    summary = _field(record, "summary", "", obj_or_null, _or_null(_is_object), False) or {}
    for kind in ("final", "best"):
        stats = (
            _field(
                summary,
                kind,
                "summary",
                "an object {metric: {mean, std, n}}",
                lambda v: _is_object(v) and all(_is_object(s) for s in v.values()),
                False,
            )
            or {}
        )
        for metric, entry in stats.items():
            for key in ("mean", "std"):
                _field(
                    entry, key, f"summary.{kind}.{metric}", "a number or null", _or_null(_is_number)
                )
    curves = _field(record, "curves", "", obj_or_null, _or_null(_is_object), False)
    if curves:
        steps = _field(curves, "eval_steps", "curves", "a list of numbers", _list_of(_is_number))
        evals = _field(curves, "eval", "curves", obj, _is_object)
        for metric, values in evals.items():
            _check_array(values, f"curves.eval.{metric}", (1, 2), rows=len(steps))
    flow = _field(record, "gradient_flow", "", obj_or_null, _or_null(_is_object), False)
    if flow:
        flow_steps = _field(flow, "steps", "gradient_flow", "a list of integers", _list_of(_is_int))
        arrays = f"a list of {len(flow_steps)} (seeds, layers, T) arrays"
        norms = _field(
            flow,
            "norm",
            "gradient_flow",
            arrays,
            lambda v: isinstance(v, list) and len(v) == len(flow_steps),
        )
        for i, norm in enumerate(norms):
            _check_array(norm, f"gradient_flow.norm[{i}]", (3,))
    _field(record, "resumed", "", "a list", lambda v: isinstance(v, list), False)
    _field(record, "wandb_run_ids", "", obj_or_null, _or_null(_is_object), False)


def check_record(record: Any, path: Path | str) -> None:
    """Raise ValueError, one line naming `path` and the first bad field, unless `record` is a run
    record every reader can index: `name`; `status` (one of STATUSES); `config` (an object;
    `model`, `task`, `tags` typed where present); `seeds` (integers); `task` (`name`, `metrics`
    {metric: "min"|"max"}, `primary_metric` among them, `baseline`); `model` (`cell`,
    `param_count`); for "completed" and "diverged" runs `per_seed` (each seed's `seed`, `final`
    and `best` metrics). `summary`, `curves` (each eval curve one row per `eval_steps` entry),
    `gradient_flow` and `timing` are optional (records rebuilt from wandb have none of them) but
    checked where present. "running" and other unfinished records need no results.
    """
    if not isinstance(record, dict):
        raise ValueError(f"malformed run record {path}: not a JSON object")
    try:
        _check_fields(record)
    except _Malformed as error:
        raise ValueError(f"malformed run record {path}: {error}") from None


def load_record(path: Path) -> dict[str, Any]:
    """Read one run.json (a file or the run directory holding it), in the current format.

    FileNotFoundError when there is none; ValueError (one line naming the file) when it cannot be
    read, is not JSON, comes from a newer seqbench or is not a run record (see `check_record`).
    """
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_NAME
    try:
        with open(path) as f:
            record = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"no run record at {path}") from None
    except OSError as error:
        raise ValueError(f"cannot read run record {path}: {error.strerror or error}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"corrupt run record {path}: {error}") from None
    if not isinstance(record, dict):
        raise ValueError(f"corrupt run record {path}: not a JSON object")
    record["path"] = str(path.parent)
    record = upgrade_record(record, path)
    check_record(record, path)
    return record


def find_records(root: Path) -> Iterator[Path]:
    """Every run.json below `root`, in sorted order."""
    root = Path(root)
    if root.is_file():
        yield root
        return
    yield from sorted(root.rglob(RECORD_NAME))
