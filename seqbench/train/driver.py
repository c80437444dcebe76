"""Drive a `TrainProgram` from the host: compile, run chunks, evaluate, time, keep the curves.

The host touches the device once per chunk of `eval_every` steps (to read the chunk's mean losses
and the evaluation metrics); every step in between runs inside one jitted `lax.scan`.

With `trainer.keep_best`, each seed's parameters at its best evaluation are kept on the device
(`BestTracker`: one select over the seed axis after an evaluation that improved some seed) and saved
with every checkpoint, so a resumed run keeps the same best parameters as an uninterrupted one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from seqbench.config import TrainerConfig
from seqbench.lifecycle import TrainingStopped
from seqbench.records import selection_metric
from seqbench.tasks.base import Task
from seqbench.train.checkpoint import Checkpointer, KeptBest
from seqbench.train.memory import available_memory, check_compiled, check_lowered
from seqbench.train.program import NOT_DIVERGED, TrainProgram, TrainState
from seqbench.train.strategy import Strategy, choose, chunk_of


@dataclass
class TrainResult:
    """Everything a run measured, as host NumPy arrays.

    seeds: (S,) seeds. eval_steps: (E,) steps at which the model was evaluated (0 first).
    eval_metrics: {"<split>/<metric>": (E, S)} for every held-out split ("val/mse", "test/mse"),
    NaN from a seed's divergence on.
    train_steps: (C,) last step of each chunk; train_loss: (C, S) mean loss over each chunk.
    diverged_step: (S,) first step whose loss or update was not finite or blew up, -1 if none.
    gradient_flow: {step: (S, L, T)} mean ||dL/dh_t|| per seed, layer and time step, at each
    step asked for (see `seqbench.train.gradient_flow`); empty if none was.
    timing: compile_s, train_s, eval_s, flow_s, steps_per_s, tokens_per_s.
    state: the final batched TrainState (on device).
    best: each seed's parameters at its best evaluation (`trainer.keep_best`; else None).
    strategy: how the training chunks ran (`trainer.seeds_over`, `trainer.input_projection`).
    """

    seeds: np.ndarray
    eval_steps: np.ndarray
    eval_metrics: dict[str, np.ndarray]
    train_steps: np.ndarray
    train_loss: np.ndarray
    diverged_step: np.ndarray
    gradient_flow: dict[int, np.ndarray] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    state: TrainState | None = None
    best: KeptBest | None = None
    strategy: Strategy | None = None


@jax.jit
def _select_seeds(improved: jax.Array, new: Any, old: Any) -> Any:
    """`new`'s rows where `improved` (S,) bool, `old`'s elsewhere; leaves (S, ...)."""

    def select(new_leaf: jax.Array, old_leaf: jax.Array) -> jax.Array:
        mask = improved.reshape(improved.shape + (1,) * (new_leaf.ndim - 1))
        return jnp.where(mask, new_leaf, old_leaf)

    return jax.tree_util.tree_map(select, new, old)


class BestTracker:
    """Each seed's parameters at its best evaluation so far, on the device, chosen exactly as
    `seqbench.records.seed_summaries` chooses a seed's "best": the evaluation with the best finite
    value of the selection metric (`records.selection_metric`: validation primary metric, test
    without a validation split; `direction` "min" or "max"), the first of equal ones, never one
    after the seed diverged (the record's curves are NaN there).

    `kept` (a `KeptBest`) holds them: params with a leading seed axis S, (S,) steps and values.
    """

    def __init__(self, kept: KeptBest):
        self.kept = kept

    @classmethod
    def start(
        cls, task: Task, splits: list[str], params: Any, complete: bool = True
    ) -> BestTracker:
        """A tracker with no best yet for the (S, ...) `params` (they stand in until a seed's first
        finite value), selecting on `task`'s primary metric among `splits`. `complete`: False when
        it starts after step 0 (a resume from a checkpoint that kept none)."""
        metric = selection_metric(
            [f"{split}/{task.primary_metric}" for split in splits], task.primary_metric
        )
        seeds = jax.tree_util.tree_leaves(params)[0].shape[0]
        return cls(
            KeptBest(
                params=params,
                steps=np.full(seeds, -1, np.int64),
                values=np.full(seeds, np.nan),
                metric=metric,
                direction=task.metric_directions[task.primary_metric],
                complete=complete,
            )
        )

    def update(
        self, step: int, metrics: dict[str, np.ndarray], params: Any, diverged_step: np.ndarray
    ) -> np.ndarray:
        """Take the rows of `params` (S, ...) evaluated at `step` with `metrics` {"<split>/<metric>":
        (S,)} for the seeds they improve (`diverged_step` (S,), NOT_DIVERGED if none); the (S,)
        bool mask of those seeds. One device select, only when some seed improved."""
        kept = self.kept
        values = np.asarray(metrics[kept.metric], dtype=np.float64)
        alive = (diverged_step == NOT_DIVERGED) | (step <= diverged_step)
        with np.errstate(invalid="ignore"):
            better = values < kept.values if kept.direction == "min" else values > kept.values
        improved = np.isfinite(values) & alive & ((kept.steps < 0) | better)
        if improved.any():
            kept.params = _select_seeds(jnp.asarray(improved), params, kept.params)
            kept.steps = np.where(improved, step, kept.steps)
            kept.values = np.where(improved, values, kept.values)
        return improved


def enable_compilation_cache(cache_dir: str | None) -> None:
    """Turn on JAX's persistent compilation cache in `cache_dir` (None: leave it off).

    The thresholds are lowered to zero: by default the cache keeps nothing for the small, fast-to-
    compile programs of recurrent training on CPU.
    """
    if cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(Path(cache_dir).expanduser()))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _chunk_lengths(steps: int, eval_every: int) -> list[int]:
    lengths = [eval_every] * (steps // eval_every)
    if steps % eval_every:
        lengths.append(steps % eval_every)
    return lengths


@dataclass(frozen=True)
class Hooks:
    """What the driver calls back while it trains; every hook is optional.

    on_eval(step, {"<split>/<metric>": (S,)}, train_loss): after every evaluation (for trackers),
        with the (S,) mean training loss of the chunk just run (None at step 0).
    on_flow(step, (S, L, T)): after each gradient-flow measurement.
    should_stop(): asked before the first chunk and before every later one; when it answers True,
        the state reached is checkpointed (if it is not already) and TrainingStopped is raised.
    """

    on_eval: Callable[[int, dict[str, np.ndarray], np.ndarray | None], None] | None = None
    on_flow: Callable[[int, np.ndarray], None] | None = None
    should_stop: Callable[[], bool] | None = None


@dataclass(frozen=True)
class GradientFlow:
    """The gradient-flow measurement: `measure(params, batch) -> (L, T)` (see
    `seqbench.train.gradient_flow`) on the fixed `batch`, at `steps` (0 or chunk ends)."""

    measure: Callable[[Any, Any], jax.Array]
    batch: Any
    steps: tuple[int, ...]


def run_training(
    program: TrainProgram,
    task: Task,
    seeds: list[int],
    trainer: TrainerConfig,
    *,
    hooks: Hooks = Hooks(),
    checkpointer: Checkpointer | None = None,
    gradient_flow: GradientFlow | None = None,
    state: TrainState | None = None,
    programs: Mapping[str, TrainProgram] | None = None,
) -> TrainResult:
    """Train one model per seed, all seeds in one vmapped program, for `trainer.steps` steps.

    Chunks of `trainer.eval_every` steps run as one jitted program each; after every chunk each
    held-out split of the task is scored (one compiled program for all) and `hooks` are called. A
    given `state` (batched, e.g. with a seed poisoned by a test) replaces the fresh initialisation.

    With a `checkpointer`, the state and the history so far are saved after every chunk that ends
    on a multiple of `trainer.checkpoint_every` steps (None: every chunk) and after the last; a run
    whose checkpointer already holds a checkpoint continues from it, replaying no chunk.

    With `gradient_flow`, it is measured for every seed at each of its steps.

    With `trainer.keep_best`, each seed's parameters at its best evaluation are kept (`BestTracker`),
    saved with every checkpoint, restored with it, and returned as `TrainResult.best`.

    The seeds run vmapped or mapped as `trainer.seeds_over` says, and `programs` (the training
    program under each input projection, `trainer.input_projection=auto`; None: `program` alone)
    are measured with them; the fastest trains and evaluates (`seqbench.train.strategy`). A
    resumed run keeps the choice its checkpoint was made with.

    Every program is checked against the device's memory (or `trainer.memory_limit_gb` GB) before
    it is compiled and again after, and refused with `seqbench.train.memory.OutOfMemory` if it will
    not fit.
    """
    steps, eval_every, batch_size = trainer.steps, trainer.eval_every, trainer.batch_size
    checkpoint_every = trainer.checkpoint_every
    on_eval, on_flow, should_stop = hooks.on_eval, hooks.on_flow, hooks.should_stop
    flow_steps = () if gradient_flow is None else tuple(gradient_flow.steps)
    seed_array = jnp.asarray(seeds, dtype=jnp.int32)
    train_data = jax.device_put(task.train_data())
    eval_sets = jax.device_put(task.eval_sets())

    timing = {"compile_s": 0.0, "train_s": 0.0, "eval_s": 0.0, "flow_s": 0.0}

    memory = available_memory(trainer.memory_limit_gb)

    def compile_checked(
        name: str, fn: Callable, *args: Any, static: tuple[int, ...] = (), forward: bool = False
    ) -> Callable:
        lowered = jax.jit(fn, static_argnums=static).lower(*args)
        check_lowered(lowered, name, memory)
        compiled = lowered.compile()
        check_compiled(compiled, name, memory, forward=forward)
        return compiled

    def compile_timed(
        name: str, fn: Callable, *args: Any, static: tuple[int, ...] = (), forward: bool = False
    ) -> Callable:
        start = time.perf_counter()
        compiled = compile_checked(name, fn, *args, static=static, forward=forward)
        timing["compile_s"] += time.perf_counter() - start
        return compiled

    if state is None:
        state = compile_timed("initialisation", program.batched_init, seed_array)(seed_array)
    best = BestTracker.start(task, list(eval_sets), state.params) if trainer.keep_best else None
    chunks: dict[int, Callable] = {}
    flows: dict[int, np.ndarray] = {}
    measure, flow_batch = None, None
    if gradient_flow is not None and flow_steps:
        flow_batch = jax.device_put(gradient_flow.batch)
        measure = compile_timed(
            "gradient-flow",
            jax.vmap(gradient_flow.measure, in_axes=(0, None)),
            state.params,
            flow_batch,
        )

    eval_steps, eval_history, train_steps, train_loss = [], [], [], []
    done = 0
    restored = None
    if checkpointer is not None:
        chunk_ends = np.cumsum(_chunk_lengths(steps, eval_every)).tolist()
        restored = checkpointer.restore_with_best(state, chunk_ends)
    if restored is not None:
        state, history, kept = restored
        if best is not None:
            if kept is not None and kept.metric == best.kept.metric:
                best = BestTracker(kept)
            else:  # a checkpoint from before best parameters were kept: the best of what follows
                best = BestTracker.start(task, list(eval_sets), state.params, complete=False)
        done = int(history["done"])
        eval_steps, train_steps = list(history["eval_steps"]), list(history["train_steps"])
        eval_history = [
            {k: np.asarray(v, dtype=np.float64) for k, v in row.items()}
            for row in history["eval_history"]
        ]
        train_loss = [np.asarray(row, dtype=np.float64) for row in history["train_loss"]]
        flows = {
            int(k): np.asarray(v, dtype=np.float64)
            for k, v in history.get("gradient_flow", {}).items()
        }
        timing["train_s"] += float(history["train_s"])
        timing["resumed_from_step"] = done

    start = time.perf_counter()
    programs = {None: program} if programs is None else dict(programs)
    strategy = choose(
        trainer.seeds_over,
        programs,
        state,
        train_data,
        steps,
        trainer.compilation_cache_dir,
        resumed=history if restored is not None else None,
        compile_program=compile_checked,
    )
    timing["compile_s"] += time.perf_counter() - start
    program = programs[strategy.input_projection]
    run_chunk = chunk_of(program, strategy.seeds_over)

    def evaluate_splits(params: Any, sets: dict[str, Any]) -> dict[str, jax.Array]:
        return {
            f"{split}/{name}": values
            for split, batch in sets.items()
            for name, values in program.batched_evaluate(params, batch).items()
        }

    evaluate = compile_timed("evaluation", evaluate_splits, state.params, eval_sets, forward=True)

    def save_checkpoint() -> None:
        history = {
            "done": done,
            "eval_steps": eval_steps,
            "eval_history": [{k: v.tolist() for k, v in row.items()} for row in eval_history],
            "train_steps": train_steps,
            "train_loss": [row.tolist() for row in train_loss],
            "train_s": timing["train_s"],
            "gradient_flow": {str(k): v.tolist() for k, v in flows.items()},
            **strategy.history(),
        }
        checkpointer.save(done, state, history, best.kept if best is not None else None)

    def run_eval(step: int, chunk_loss: np.ndarray | None = None) -> None:
        start = time.perf_counter()
        metrics, diverged_at = jax.device_get(
            (evaluate(state.params, eval_sets), state.diverged_step)
        )
        eval_steps.append(step)
        eval_history.append({k: np.asarray(v, dtype=np.float64) for k, v in metrics.items()})
        if best is not None:
            best.update(step, eval_history[-1], state.params, np.asarray(diverged_at))
        timing["eval_s"] += time.perf_counter() - start
        if on_eval is not None:
            on_eval(step, eval_history[-1], chunk_loss)
        if measure is not None and step in flow_steps:
            start = time.perf_counter()
            flows[step] = np.asarray(jax.device_get(measure(state.params, flow_batch)), np.float64)
            timing["flow_s"] += time.perf_counter() - start
            if on_flow is not None:
                on_flow(step, flows[step])

    def stop_if_asked() -> None:
        if should_stop is None or done >= steps or not should_stop():
            return
        saved = checkpointer is not None and done > 0
        if saved and checkpointer.latest_step() != done:
            save_checkpoint()
        raise TrainingStopped(done, saved)

    if done == 0:
        run_eval(0)
    stop_if_asked()
    bar = tqdm(
        total=steps,
        initial=done,
        disable=not trainer.progress,
        unit="step",
        dynamic_ncols=True,
        leave=True,
    )
    try:
        for length in _chunk_lengths(steps, eval_every)[len(train_steps) :]:
            if length not in chunks:
                chunks[length] = compile_timed(
                    "training", run_chunk, state, train_data, length, static=(2,)
                )
            stop_if_asked()
            start = time.perf_counter()
            state, losses = chunks[length](state, train_data)
            losses = np.asarray(jax.device_get(losses), dtype=np.float64)  # (S, length)
            timing["train_s"] += time.perf_counter() - start
            done += length
            train_steps.append(done)
            finite = np.isfinite(losses)
            counts = finite.sum(axis=1)
            sums = np.where(finite, losses, 0.0).sum(axis=1)
            train_loss.append(np.where(counts > 0, sums / np.maximum(counts, 1), np.nan))
            run_eval(done, train_loss[-1])
            if checkpointer is not None and (
                done == steps or not checkpoint_every or done % checkpoint_every == 0
            ):
                save_checkpoint()
            if trainer.progress:
                bar.update(length)
                alive = train_loss[-1][np.isfinite(train_loss[-1])]
                shown = f"{alive.mean():.4g}" if alive.size else "nan"
                bar.set_postfix(loss=shown, refresh=False)
    finally:
        bar.close()

    diverged = np.asarray(jax.device_get(state.diverged_step))
    eval_steps_arr = np.asarray(eval_steps)
    eval_metrics = {k: np.stack([h[k] for h in eval_history]) for k in eval_history[0]}
    for s, at in enumerate(diverged):
        if at != NOT_DIVERGED:
            for values in eval_metrics.values():
                values[eval_steps_arr > at, s] = np.nan
    train_s = max(timing["train_s"], 1e-9)
    timing["steps_per_s"] = steps / train_s
    timing["tokens_per_s"] = steps * batch_size * task.spec.seq_len * len(seeds) / train_s
    return TrainResult(
        seeds=np.asarray(seeds),
        eval_steps=eval_steps_arr,
        eval_metrics=eval_metrics,
        train_steps=np.asarray(train_steps),
        train_loss=np.asarray(train_loss),
        diverged_step=diverged,
        gradient_flow=flows,
        timing=timing,
        state=state,
        best=best.kept if best is not None else None,
        strategy=strategy,
    )
