"""How the training chunk runs the seeds: `vmap` (one batched program) or `map` (one after another).

Under `vmap` every seed has its own weights, so each matmul of the recurrent step becomes a batched
one, and XLA's CPU backend runs those slower than a loop of single matmuls: on the 2-core CPU, 8
vmapped GRU seeds (H=128, T=100) took 163 ms per step against 135 ms for 8 single-seed runs and
117 ms for the same 8 seeds under `lax.map` in one program; the TCN's convolutions went the other
way (376 ms vmapped, 411 ms mapped, 410 ms alone). On a GPU the batched program fills the device
and wins by far. So `trainer.seeds_over=auto` takes vmap on GPU and TPU and, on CPU, measures both
chunk programs for a few steps and keeps the faster, remembering the answer per (program, host).

The measurement costs two compiles of a two-step chunk and a dozen steps; a run of fewer than
`MEASURE_FROM_STEPS` steps would not earn that back and takes vmap, as do single-seed runs (the
same work either way). The answers live in `<compilation cache dir>/seed_batching.json` (written
atomically; a damaged file is measured again), keyed by the CPU's model and vector flags, the
jax/jaxlib versions, the number of seeds and a fingerprint of the lowered vmapped chunk (the
program's shapes and operations, not its numbers). A resumed run keeps the choice it started with
(it is saved with the checkpoint's history), so its numbers do not depend on a later measurement.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax

from seqbench.train.program import TrainProgram, TrainState

#: runs shorter than this take vmap without measuring (two extra compiles would not pay)
MEASURE_FROM_STEPS = 500
#: steps per timed call of each candidate, and timed calls of each (alternating, best kept)
MEASURE_STEPS, MEASURE_CALLS = 2, 3
#: map replaces vmap only when at least this much faster (timing noise on a busy machine)
MARGIN = 0.97
CACHE_FILE = "seed_batching.json"
#: the two ways to run the seeds (trainer.seeds_over's choices besides auto)
WAYS = ("vmap", "map")
#: compile_program(name, fn, *args, static=(argnums,)) -> the compiled fn (the driver's also checks
#: the program against the device's memory before and after compiling)
Compile = Callable[..., Any]


def compile_plain(name: str, fn: Callable, *args: Any, static: tuple[int, ...] = ()) -> Any:
    """`fn` jitted, lowered for `args` and compiled, unchecked (`name` unused)."""
    del name
    return jax.jit(fn, static_argnums=static).lower(*args).compile()


@dataclass(frozen=True)
class SeedBatching:
    """The choice: `how` ("vmap" or "map"), `why` (a few words for the record: "configured",
    "measured", "cached", "accelerator", "short run", "one seed", "resumed") and, when measured
    (now or before), the best ms per step of each candidate."""

    how: str
    why: str
    ms_per_step: dict[str, float] | None = None

    def record(self) -> dict[str, Any]:
        """The run record's `timing` entries."""
        out: dict[str, Any] = {"seeds_over": self.how, "seeds_over_why": self.why}
        if self.ms_per_step is not None:
            out["seeds_over_ms_per_step"] = dict(self.ms_per_step)
        return out


def chunk_of(program: TrainProgram, how: str) -> Callable[[TrainState, Any, int], Any]:
    """The chunk function for `how` ("vmap" or "map")."""
    return program.mapped_chunk if how == "map" else program.batched_chunk


def choose(
    configured: str,
    program: TrainProgram,
    state: TrainState,
    data: Any,
    steps: int,
    cache_dir: str | Path | None,
    resumed: str | None = None,
    compile_program: Compile = compile_plain,
) -> SeedBatching:
    """How to run the seeds of `state` (batched, S seeds) for a run of `steps` steps:
    `configured` ("vmap", "map" or "auto"), `resumed` the choice a checkpoint was made with;
    `compile_program` compiles the measured programs."""
    if resumed is not None:
        return SeedBatching(resumed, "resumed")
    if configured != "auto":
        return SeedBatching(configured, "configured")
    if jax.default_backend() != "cpu":
        return SeedBatching("vmap", "accelerator")
    if int(state.step.shape[0]) < 2:
        return SeedBatching("vmap", "one seed")
    if steps < MEASURE_FROM_STEPS:
        return SeedBatching("vmap", "short run")
    lowered = jax.jit(program.batched_chunk, static_argnums=2).lower(state, data, MEASURE_STEPS)
    key = _key(lowered.as_text(), int(state.step.shape[0]))
    path = None if cache_dir is None else Path(cache_dir).expanduser() / CACHE_FILE
    known = _read(path).get(key)
    if known is not None:
        return SeedBatching(known["how"], "cached", known["ms_per_step"])
    ms = measure(program, state, data, compile_program)
    how = "map" if ms["map"] < MARGIN * ms["vmap"] else "vmap"
    if path is not None:
        _remember(path, key, {"how": how, "ms_per_step": ms})
    return SeedBatching(how, "measured", ms)


def measure(
    program: TrainProgram,
    state: TrainState,
    data: Any,
    compile_program: Compile = compile_plain,
) -> dict[str, float]:
    """Best ms per training step of the vmapped and the mapped chunk on `state`, timed in
    alternation after one warm-up call each (the state is not advanced)."""
    compiled = {
        how: compile_program(
            f"training ({how}, measured)", chunk_of(program, how), state, data, MEASURE_STEPS,
            static=(2,),
        )
        for how in WAYS
    }  # fmt: skip
    best = {how: float("inf") for how in compiled}
    for _ in range(1 + MEASURE_CALLS):
        for how, run in compiled.items():
            start = time.perf_counter()
            jax.block_until_ready(run(state, data))
            best[how] = min(best[how], time.perf_counter() - start)
    return {how: round(1e3 * seconds / MEASURE_STEPS, 3) for how, seconds in best.items()}


def _key(program_text: str, seeds: int) -> str:
    import jaxlib

    from seqbench.provenance import cpu_model, cpu_vector_flags

    host = json.dumps([cpu_model(), cpu_vector_flags(), jax.__version__, jaxlib.__version__, seeds])
    return hashlib.sha256((host + program_text).encode()).hexdigest()


def _read(path: Path | None) -> dict[str, Any]:
    """The cache's answers ({} when there is no cache, or it is unreadable: measured again)."""
    if path is None or not path.is_file():
        return {}
    try:
        answers = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(answers, dict):
        return {}
    return {
        key: value
        for key, value in answers.items()
        if isinstance(value, dict) and value.get("how") in WAYS
    }


def _remember(path: Path, key: str, answer: dict[str, Any]) -> None:
    """Add `answer` under `key`, atomically; a cache that cannot be written is left alone (the
    run goes on with its measured choice)."""
    from seqbench.records import write_json_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {**_read(path), key: answer})
    except OSError:
        pass
