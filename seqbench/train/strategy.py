"""How the training chunk runs: the seeds vmapped or mapped, the input projection in or out of the loop.

Two choices change the speed of a training step and not the function it computes (only the last
bits, by rounding):

- `trainer.seeds_over`: `vmap` (one batched program) or `map` (`lax.map`, the seeds one after
  another inside the program). Under vmap every seed has its own weights, so each matmul of the
  recurrent step becomes a batched one, and XLA's CPU backend runs those slower than a loop of
  single matmuls: on the 2-core CPU, 8 vmapped GRU seeds (H=128, T=100) took 163 ms per step
  against 135 ms for 8 single-seed runs and 117 ms for the same 8 seeds mapped; the TCN's
  convolutions went the other way (376 ms vmapped, 411 ms mapped). On a GPU the batched program
  fills the device and wins by far.
- `trainer.input_projection` (simple_rnn, lstm, gru: `Spec.hoistable`): x_t W_ih + b_ih `in_step`
  (fused with the gates) or `hoisted` (one (T*B, F) @ (F, GH) product before the loop). Which wins
  depends on the shape and the host: on one 2-core host a (32, 512) @ (512, 2048) product ran at a
  third of the rate of a 2048^2 one, so hoisting halved the large LSTM's step; on another the
  per-step products were as fast and streaming the (T, B, GH) projection cost more.

With `auto`, `choose` measures the candidate chunk programs for a few steps and keeps the fastest
(vmap on GPU and TPU without measuring), remembering the answer per (program, host). Measuring
costs one compile of a two-step chunk per candidate and a dozen steps; a run of fewer than
`MEASURE_FROM_STEPS` steps would not earn that back and takes the defaults (vmap, in_step), as
single-seed runs take vmap (the same work either way).

The answers live in `<compilation cache dir>/strategy.json` (written atomically; a damaged file is
measured again), keyed by the CPU's model and vector flags, the jax/jaxlib versions, the number of
seeds, the candidates and a fingerprint of the lowered default chunk (the program's shapes and
operations, not its numbers). A resumed run keeps the choice it started with (saved with the
checkpoint's history), so its numbers do not depend on a later measurement.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax

from seqbench.train.program import TrainProgram, TrainState

#: runs shorter than this take the defaults without measuring (the extra compiles would not pay)
MEASURE_FROM_STEPS = 500
#: steps per timed call of each candidate, and timed calls of each (alternating, best kept)
MEASURE_STEPS, MEASURE_CALLS = 2, 3
#: another candidate replaces the default only when at least this much faster (timing noise)
MARGIN = 0.97
CACHE_FILE = "strategy.json"
#: the two ways to run the seeds (trainer.seeds_over's choices besides auto), the default first
WAYS = ("vmap", "map")
#: where the input projection runs (trainer.input_projection's choices besides auto), default first
PROJECTIONS = ("in_step", "hoisted")
#: compile_program(name, fn, *args, static=(argnums,)) -> the compiled fn (the driver's also checks
#: the program against the device's memory before and after compiling)
Compile = Callable[..., Any]


def compile_plain(name: str, fn: Callable, *args: Any, static: tuple[int, ...] = ()) -> Any:
    """`fn` jitted, lowered for `args` and compiled, unchecked (`name` unused)."""
    del name
    return jax.jit(fn, static_argnums=static).lower(*args).compile()


@dataclass(frozen=True)
class Strategy:
    """The choice: `seeds_over` ("vmap" or "map") and `input_projection` ("in_step", "hoisted", or
    None for a model without one), each with a few words on why ("configured", "measured",
    "cached", "accelerator", "short run", "one seed", "resumed"), and, when measured (now or
    before), the best ms per step of each candidate (`label`)."""

    seeds_over: str
    seeds_over_why: str
    input_projection: str | None = None
    input_projection_why: str | None = None
    ms_per_step: dict[str, float] | None = None

    def record(self) -> dict[str, Any]:
        """The run record's `timing` entries."""
        out: dict[str, Any] = {"seeds_over": self.seeds_over, "seeds_over_why": self.seeds_over_why}
        if self.input_projection is not None:
            out["input_projection"] = self.input_projection
            out["input_projection_why"] = self.input_projection_why
        if self.ms_per_step is not None:
            out["strategy_ms_per_step"] = dict(self.ms_per_step)
        return out

    def history(self) -> dict[str, Any]:
        """What a checkpoint keeps of it (`choose`'s `resumed`)."""
        out: dict[str, Any] = {"seeds_over": self.seeds_over}
        if self.input_projection is not None:
            out["input_projection"] = self.input_projection
        return out


def label(seeds_over: str, input_projection: str | None) -> str:
    """A candidate's name in `Strategy.ms_per_step`: "vmap", or "vmap, hoisted" with a projection."""
    return seeds_over if input_projection is None else f"{seeds_over}, {input_projection}"


def fastest(ms_per_step: Mapping[str, float]) -> str:
    """The candidate to run, of those timed in `ms_per_step` (the default first): the fastest,
    unless the default is within `MARGIN` of it (timing noise)."""
    default = next(iter(ms_per_step))
    best = min(ms_per_step, key=ms_per_step.__getitem__)
    return best if ms_per_step[best] < MARGIN * ms_per_step[default] else default


def chunk_of(program: TrainProgram, how: str) -> Callable[[TrainState, Any, int], Any]:
    """The chunk function for `how` ("vmap" or "map")."""
    return program.mapped_chunk if how == "map" else program.batched_chunk


def choose(
    seeds_over: str,
    programs: Mapping[str | None, TrainProgram],
    state: TrainState,
    data: Any,
    steps: int,
    cache_dir: str | Path | None,
    resumed: Mapping[str, Any] | None = None,
    compile_program: Compile = compile_plain,
) -> Strategy:
    """How to run a run of `steps` steps from `state` (batched, S seeds).

    Args:
        seeds_over: `trainer.seeds_over` ("vmap", "map" or "auto").
        programs: the training program under each input projection still open: {None: program}
            for a model without one or whose projection is fixed (configured, remat), else
            {"in_step": ..., "hoisted": ...} (`trainer.input_projection=auto`) or one of them.
        resumed: the checkpoint's history (`Strategy.history`) when the run resumes, else None.
        compile_program: compiles the measured programs.

    Returns:
        the Strategy; its `input_projection` is a key of `programs`.
    """
    projections = list(programs)
    if resumed is not None:
        # checkpoints from before these choices were saved were made with vmap, in the step
        projection = resumed.get("input_projection", "in_step") if projections != [None] else None
        if projection not in programs:
            projection = projections[0]
        return _strategy(resumed.get("seeds_over", "vmap"), "resumed", projection, "resumed")
    ways, seeds_why = _seed_ways(seeds_over, state, steps)
    projection_why = "configured" if len(projections) == 1 else None
    if len(projections) > 1 and steps < MEASURE_FROM_STEPS:
        projections, projection_why = [PROJECTIONS[0]], "short run"
    if len(ways) == 1 and len(projections) == 1:
        return _strategy(ways[0], seeds_why, projections[0], projection_why)
    candidates = list(itertools.product(ways, projections))
    default = jax.jit(chunk_of(programs[projections[0]], ways[0]), static_argnums=2)
    key = _key(default.lower(state, data, MEASURE_STEPS).as_text(), state, candidates)
    path = None if cache_dir is None else Path(cache_dir).expanduser() / CACHE_FILE
    known = _read(path).get(key)
    if known is not None:
        how, projection = known["seeds_over"], known["input_projection"]
        return _strategy(
            how, seeds_why or "cached", projection, projection_why or "cached", known["ms_per_step"]
        )
    ms = measure(programs, candidates, state, data, compile_program)
    best = {label(*c): c for c in candidates}[fastest(ms)]
    if path is not None:
        answer = {"seeds_over": best[0], "input_projection": best[1], "ms_per_step": ms}
        _remember(path, key, answer)
    return _strategy(best[0], seeds_why or "measured", best[1], projection_why or "measured", ms)


def _seed_ways(seeds_over: str, state: TrainState, steps: int) -> tuple[list[str], str | None]:
    """The seed batchings to consider, and why when there is only one (None: to be measured)."""
    if seeds_over != "auto":
        return [seeds_over], "configured"
    if jax.default_backend() != "cpu":
        return ["vmap"], "accelerator"
    if int(state.step.shape[0]) < 2:
        return ["vmap"], "one seed"
    if steps < MEASURE_FROM_STEPS:
        return ["vmap"], "short run"
    return list(WAYS), None


def _strategy(
    how: str,
    seeds_why: str,
    projection: str | None,
    projection_why: str | None,
    ms: dict[str, float] | None = None,
) -> Strategy:
    return Strategy(how, seeds_why, projection, None if projection is None else projection_why, ms)


def measure(
    programs: Mapping[str | None, TrainProgram],
    candidates: list[tuple[str, str | None]],
    state: TrainState,
    data: Any,
    compile_program: Compile = compile_plain,
) -> dict[str, float]:
    """Best ms per training step of each (seeds_over, input_projection) candidate's chunk on
    `state`, timed in alternation after one warm-up call each (the state is not advanced)."""
    compiled = {
        label(how, projection): compile_program(
            f"training ({label(how, projection)}, measured)",
            chunk_of(programs[projection], how), state, data, MEASURE_STEPS, static=(2,),
        )
        for how, projection in candidates
    }  # fmt: skip
    best = {name: float("inf") for name in compiled}
    for _ in range(1 + MEASURE_CALLS):
        for name, run in compiled.items():
            start = time.perf_counter()
            jax.block_until_ready(run(state, data))
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: round(1e3 * seconds / MEASURE_STEPS, 3) for name, seconds in best.items()}


def _key(program_text: str, state: TrainState, candidates: list[tuple[str, str | None]]) -> str:
    import jaxlib

    from seqbench.provenance import cpu_model, cpu_vector_flags

    seeds = int(state.step.shape[0])
    host = json.dumps(
        [cpu_model(), cpu_vector_flags(), jax.__version__, jaxlib.__version__, seeds, candidates]
    )
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
        if isinstance(value, dict)
        and value.get("seeds_over") in WAYS
        and value.get("input_projection", "") in (*PROJECTIONS, None)
        and isinstance(value.get("ms_per_step"), dict)
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
