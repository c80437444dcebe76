"""Run records: the `run.json` every run leaves, written atomically, and reading them back.

A record holds the resolved config, provenance (git commit, package versions, device), the model's
parameter count, per-seed final and best metrics, learning curves, the task's baseline, timings and
a status: "running" while training, then "completed", "diverged" (some seed stopped being finite)
or "failed" (an exception; its message is kept).

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
from collections.abc import Iterator
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
STATUSES = ("running", "completed", "diverged", "failed")
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


def device_info() -> dict[str, Any]:
    import jax

    devices = jax.devices()
    return {
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "host": platform.node(),
        "processor": platform.machine(),
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

        def prefixed(metrics: dict | None) -> dict | None:
            return None if metrics is None else {metric_key(k): v for k, v in metrics.items()}

        for seed in record.get("per_seed") or []:
            seed["final"], seed["best"] = prefixed(seed.get("final")), prefixed(seed.get("best"))
        summary = record.get("summary") or {}
        for kind in list(summary):
            summary[kind] = prefixed(summary[kind])
        curves = record.get("curves") or {}
        if "eval" in curves:
            curves["eval"] = prefixed(curves["eval"])
        record["schema_version"] = SCHEMA_VERSION
    return record


def load_record(path: Path) -> dict[str, Any]:
    """Read one run.json (a file or the run directory holding it), in the current format."""
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_NAME
    try:
        with open(path) as f:
            record = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"no run record at {path}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"corrupt run record {path}: {error}") from None
    if not isinstance(record, dict):
        raise ValueError(f"corrupt run record {path}: not a JSON object")
    record["path"] = str(path.parent)
    return upgrade_record(record, path)


def find_records(root: Path) -> Iterator[Path]:
    """Every run.json below `root`, in sorted order."""
    root = Path(root)
    if root.is_file():
        yield root
        return
    yield from sorted(root.rglob(RECORD_NAME))
