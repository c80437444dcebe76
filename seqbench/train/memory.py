"""Will a program fit in the device's memory? Checked before it runs, refused in one line if not.

`run_training` checks every program it compiles (initialisation, evaluation, training chunk,
gradient flow) twice:

- before compiling, the bytes of its inputs and outputs, from the lowered program's shapes
  (`check_lowered`). This one must come first: for absurd sizes (`model.hidden_size=1000000000`,
  4e18 parameters) XLA's compiler aborts the whole process on a shape whose size overflows.
- after compiling, XLA's own estimate (`check_compiled`, from `compiled.memory_analysis()`):
  arguments + outputs - aliased + temporaries + generated code; for a forward pass (the
  evaluation) on a CPU the temporaries count `CPU_TEMPORARY_FACTOR` times, as the runtime peaks
  above XLA's figure for them there.

Either raises `OutOfMemory` when the estimate exceeds the memory available to the device
(`available_memory`): on a CPU the physical memory, or the cgroup's `memory.max` when that is
lower; on a GPU or TPU the allocator's `bytes_limit`; or `trainer.memory_limit_gb` when set. An
out-of-memory error that XLA raises at run time anyway becomes one line too (`out_of_memory_message`).
Sizes are printed in decimal units (1 GB = 1e9 bytes).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax

ADVICE = "reduce model.hidden_size, trainer.batch_size or task.length"
CGROUP_LIMIT = Path("/sys/fs/cgroup/memory.max")
#: On a CPU, XLA's runtime can take more than the temporaries its buffer assignment reports: the
#: held-out forward pass of the linear recurrences' parallel scans peaked at 1.7-2.3 times the
#: estimate (the LSTM's sequential scan and the TCN at 1.0), and a minLSTM evaluation estimated at
#: 6.1 GB was killed by the kernel at 23.6 GB; the gradient programs measured stay within 2% of it.
#: `python -m seqbench.speed.memory` measures the ratios on a host (results/bench/cpu_memory.md);
#: the check counts a CPU forward pass's temporaries this many times.
CPU_TEMPORARY_FACTOR = 2.5
_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


class OutOfMemory(RuntimeError):
    """A program that needs more memory than the device has (one line)."""


@dataclass(frozen=True)
class MemoryLimit:
    """`limit` bytes a program may use; `source` says where the number comes from, in words;
    `temporary_factor`: how many times XLA's estimate of a forward pass's temporaries is counted
    on this device (`CPU_TEMPORARY_FACTOR` on a CPU, 1 elsewhere)."""

    limit: int
    source: str
    temporary_factor: float = 1.0


def format_bytes(size: float) -> str:
    """`size` bytes in decimal units with three significant digits: 23.4 GB, 96 EB."""
    power = 0
    while size >= 1000 and power < len(_UNITS) - 1:
        size /= 1000
        power += 1
    return f"{size:.3g} {_UNITS[power]}"


def machine_memory() -> int | None:
    """Bytes of physical memory this process may use: the machine's, or the cgroup (v2) limit
    when one is set and lower; None where neither can be read."""
    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        physical = None
    try:
        text = CGROUP_LIMIT.read_text().strip()
        cgroup = int(text) if text != "max" else None
    except (OSError, ValueError):
        cgroup = None
    known = [size for size in (physical, cgroup) if size and size > 0]
    return min(known) if known else None


def device_memory(device: jax.Device) -> int | None:
    """Bytes of memory of `device`: the machine's for a CPU (`machine_memory`), the allocator's
    `bytes_limit` for a GPU or TPU; None where the backend does not say."""
    if device.platform == "cpu":
        return machine_memory()
    try:
        stats = device.memory_stats()
    except Exception:  # backends without memory statistics
        return None
    limit = (stats or {}).get("bytes_limit")
    return int(limit) if limit else None


def available_memory(
    limit_gb: float | None = None, device: jax.Device | None = None
) -> MemoryLimit:
    """What a program may use on `device` (default: JAX's first device): `limit_gb` GB if given
    (`trainer.memory_limit_gb`), else the device's memory; `limit` 0 means unknown (no check)."""
    device = device or jax.devices()[0]
    factor = CPU_TEMPORARY_FACTOR if device.platform == "cpu" else 1.0
    if limit_gb is not None:
        size = int(limit_gb * 1e9)
        return MemoryLimit(size, f"{format_bytes(size)} trainer.memory_limit_gb allows", factor)
    size = device_memory(device) or 0
    return MemoryLimit(size, f"{format_bytes(size)} this {device.platform} has", factor)


def tree_bytes(tree: Any) -> int:
    """Total bytes of the arrays (or shape/dtype structs) in a pytree."""
    total = 0
    for leaf in jax.tree_util.tree_leaves(tree):
        itemsize = getattr(leaf.dtype, "itemsize", 4)
        total += math.prod(leaf.shape) * itemsize
    return total


def _refuse(program: str, needs: str, available: MemoryLimit) -> None:
    raise OutOfMemory(
        f"the {program} program needs {needs}, more than the {available.source}; {ADVICE}"
    )


def check_lowered(lowered: jax.stages.Lowered, program: str, available: MemoryLimit) -> None:
    """Raise OutOfMemory if the inputs and outputs of `lowered` alone exceed `available`.

    Shapes only: nothing is compiled, so no size can make XLA abort here.
    """
    size = tree_bytes(lowered.in_avals) + tree_bytes(lowered.out_info)
    if available.limit and size > available.limit:
        _refuse(
            program,
            f"at least {format_bytes(size)} of memory for its inputs and outputs",
            available,
        )


def check_compiled(
    compiled: jax.stages.Compiled, program: str, available: MemoryLimit, forward: bool = False
) -> None:
    """Raise OutOfMemory if XLA's memory analysis of `compiled` exceeds `available` (no check where
    the backend gives no analysis); with `forward` (a forward pass only, as the evaluation) its
    temporaries count `available.temporary_factor` times."""
    try:
        stats = compiled.memory_analysis()
    except Exception:  # backends without memory analysis
        return
    if stats is None or not available.limit:
        return
    in_out = stats.argument_size_in_bytes + stats.output_size_in_bytes - stats.alias_size_in_bytes
    temporary = stats.temp_size_in_bytes + stats.generated_code_size_in_bytes
    factor = available.temporary_factor if forward else 1.0
    counted = factor * temporary
    if in_out + counted > available.limit:
        times = f" x {factor:g}, as this device's runtime can take" if factor != 1 else ""
        _refuse(
            program,
            f"about {format_bytes(in_out + counted)} of memory (inputs and outputs "
            f"{format_bytes(in_out)}, temporaries {format_bytes(temporary)}{times})",
            available,
        )


def out_of_memory_message(error: BaseException) -> str | None:
    """One line for an error that means memory ran out (`OutOfMemory`, XLA's RESOURCE_EXHAUSTED or
    "Out of memory" runtime errors, Python's MemoryError); None for any other error."""
    if isinstance(error, OutOfMemory):
        return str(error)
    text = str(error)
    if isinstance(error, MemoryError) or (
        isinstance(error, jax.errors.JaxRuntimeError)
        and ("RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower())
    ):
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        return f"ran out of memory while training ({first or type(error).__name__}); {ADVICE}"
    return None
