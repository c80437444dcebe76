"""Run records: the `run.json` every run leaves, written atomically, and reading them back.

A record holds the resolved config, provenance (git commit, package versions, device), the model's
parameter count, per-seed final and best metrics, learning curves, the task's baseline, timings and
a status: "running" while training, then "completed", "diverged" (some seed stopped being finite)
or "failed" (an exception; its message is kept).
"""

from __future__ import annotations

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
SCHEMA_VERSION = 1
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
    }


def seed_summaries(
    seeds: np.ndarray,
    eval_steps: np.ndarray,
    eval_metrics: dict[str, np.ndarray],
    directions: dict[str, str],
    primary: str,
    diverged_step: np.ndarray,
) -> list[dict[str, Any]]:
    """Per seed: status, final metrics (last evaluation) and best metrics (at the best `primary`)."""
    out = []
    for s, seed in enumerate(seeds):
        primary_curve = eval_metrics[primary][:, s]
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


def load_record(path: Path) -> dict[str, Any]:
    """Read one run.json (a file or the run directory holding it)."""
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
    record["path"] = str(path.parent)
    return record


def find_records(root: Path) -> Iterator[Path]:
    """Every run.json below `root`, in sorted order."""
    root = Path(root)
    if root.is_file():
        yield root
        return
    yield from sorted(root.rglob(RECORD_NAME))
