"""Where a run's numbers came from: the git commit, package versions, device and CPU model, and
the XLA flags that decide whether two runs agree bit for bit (sections of every run record)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

#: the packages whose versions a run record lists
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


#: XLA flags that make GPU programs deterministic (scatter and reductions in a fixed order); CPU
#: programs are deterministic without them
DETERMINISTIC_XLA_FLAGS = ("--xla_gpu_deterministic_ops=true",)


def add_xla_flags(wanted: tuple[str, ...]) -> None:
    """Add to $XLA_FLAGS those of `wanted` it lacks (effective if no JAX backend is running yet)."""
    flags = os.environ.get("XLA_FLAGS", "").split()
    os.environ["XLA_FLAGS"] = " ".join([*flags, *(f for f in wanted if f not in flags)])


def use_deterministic_flags() -> None:
    """Add DETERMINISTIC_XLA_FLAGS to $XLA_FLAGS (effective if no JAX backend is running yet)."""
    add_xla_flags(DETERMINISTIC_XLA_FLAGS)


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


#: instruction-set extensions that change which kernels XLA's CPU backend generates (and so the
#: order of floating-point operations): the vector and matrix units
VECTOR_FLAG_PREFIXES = ("sse", "ssse", "avx", "fma", "f16c", "amx", "vnni", "neon", "asimd", "sve")


def cpu_vector_flags() -> list[str] | None:
    """The CPU's vector and matrix instruction-set extensions, sorted (Linux /proc/cpuinfo "flags"
    on x86, "Features" on ARM; None elsewhere): two CPUs with the same model name can differ here
    (a virtual machine may hide AVX-512), and so can their numbers."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = line.split(":", 1)[1].split()
                    return sorted({f for f in flags if f.startswith(VECTOR_FLAG_PREFIXES)})
    except OSError:
        pass
    return None


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
        "cpu_vector_flags": cpu_vector_flags(),
        # the cores XLA's CPU thread pool runs on (it sizes itself to them)
        "threads": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
