"""The pure training program: one seed's step, a chunk of steps under `lax.scan`, seeds under `vmap`.

Everything here is a pure function of arrays; `seqbench.train.driver` drives it from the host, one
jitted chunk (many steps) per call. A seed diverges at the first step whose loss, gradients or
updated parameters are not finite, or whose loss blows up (exceeds `blowup_factor` times its first
training loss, that loss taken as at least `BLOWUP_FLOOR`): it is frozen at the parameters it had
before that step and marked with the step. Since seeds are separate lanes of a `vmap`, the other
seeds never see its values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from seqbench.tasks.base import Batch, StatefulTask, Task

NOT_DIVERGED = -1
#: the smallest first loss the blow-up rule compares with (a first loss near 0 would make any loss
#: a blow-up)
BLOWUP_FLOOR = 1e-3


class TrainState(NamedTuple):
    """One seed's training state (a leading seed axis S when batched).

    params: the model parameters.
    opt_state: the optimizer state.
    data_key: PRNG key of the seed's data order (with the step, it fixes every training batch).
    dropout_key: PRNG key of the seed's dropout masks (folded with the step).
    step: int32 () steps taken.
    diverged_step: int32 () first step whose loss or update was not finite or whose loss blew up,
        NOT_DIVERGED (-1) if none.
    initial_loss: float32 () the loss of the seed's first accepted step (the blow-up rule's reference),
        NaN before it.
    carry: for stateful tasks (truncated backpropagation through time), each layer's recurrent
        state at the end of the last training segment, (B, H) arrays; None otherwise.
    """

    params: Any
    opt_state: Any
    data_key: jax.Array
    dropout_key: jax.Array
    step: jax.Array
    diverged_step: jax.Array
    initial_loss: jax.Array
    carry: Any = None


def all_finite(tree: Any) -> jax.Array:
    """bool (): every element of every leaf is finite.

    The per-leaf flags' conjunction compiles to a chain of scalar `and`s, which XLA copies into
    every consumer (each leaf's select in the training step): a program quadratic in the number of
    leaves, twice the compile time of a small model's step. An operation XLA deems expensive at the
    end of the chain (log: 0 for true, -inf for false) stops the copying; the other ways to get one
    flag (one reduction over all the leaves joined) move the step's floats in the last bit.
    """
    leaves = jax.tree_util.tree_leaves(tree)
    every = jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))
    return jnp.isfinite(jnp.log(every.astype(jnp.float32)))


@dataclass(frozen=True)
class TrainProgram:
    """The pure functions of one training setup. `batched_*` and `mapped_chunk` carry a leading
    seed axis S (`mapped_chunk`: the batched chunk with the seeds run one after another)."""

    init: Callable[[jax.Array], TrainState]
    step: Callable[[TrainState, Any], tuple[TrainState, jax.Array]]
    chunk: Callable[[TrainState, Any, int], tuple[TrainState, jax.Array]]
    evaluate: Callable[[Any, Batch], dict[str, jax.Array]]
    batched_init: Callable[[jax.Array], TrainState]
    batched_chunk: Callable[[TrainState, Any, int], tuple[TrainState, jax.Array]]
    mapped_chunk: Callable[[TrainState, Any, int], tuple[TrainState, jax.Array]]
    batched_evaluate: Callable[[Any, Batch], dict[str, jax.Array]]


def make_train(
    model: nn.Module,
    task: Task,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    eval_batch_size: int | None = None,
    blowup_factor: float | None = 1e4,
) -> TrainProgram:
    """Build the training program of `model` on `task`.

    init(seed int32 ()) -> TrainState; step(state, data) -> (state, loss ()); chunk(state, data, n)
    runs n steps with `lax.scan` -> (state, losses (n,)), `data` being the task's `train_data()` on
    device; evaluate(params, eval_set) -> {metric: mean ()}, over the evaluation set in chunks of
    `eval_batch_size` examples, weighted by `task.example_weights`. The batched versions take and
    return a leading seed axis on states, seeds, losses and metrics (data and evaluation sets are
    shared).

    A step diverges its seed (see the module docstring) when its loss, gradients or updated
    parameters are not finite, or when its loss exceeds `blowup_factor` * max(the seed's first
    training loss, BLOWUP_FLOOR) (None: finite losses never diverge).

    Stateful tasks (a `StatefulTask`, e.g. character-level language modelling) train by truncated
    backpropagation through time: the model's final recurrent state of one step's segments starts
    the next step's (gradients stop there), and is reset to zeros where `task.starts_sequence`
    says the streams start over; their evaluation runs each held-out stream segment by segment
    (`task.eval_segment` steps), carrying the state through the whole stream.
    """

    example = task.sample(jax.random.key(0), 1)
    stateful = isinstance(task, StatefulTask)

    def init(seed: jax.Array) -> TrainState:
        init_key, data_key, dropout_key = jax.random.split(jax.random.key(seed), 3)
        params = model.init(init_key, example.inputs, example.seq_lengths)["params"]
        return TrainState(
            params=params,
            opt_state=optimizer.init(params),
            data_key=data_key,
            dropout_key=dropout_key,
            step=jnp.zeros((), jnp.int32),
            diverged_step=jnp.full((), NOT_DIVERGED, jnp.int32),
            initial_loss=jnp.full((), jnp.nan, jnp.float32),
            carry=model.initial_carry(batch_size, task.spec.input_dim) if stateful else None,
        )

    def loss_fn(
        params: Any, batch: Batch, dropout_key: jax.Array, carry: Any
    ) -> tuple[jax.Array, Any]:
        outputs = model.apply(
            {"params": params},
            batch.inputs,
            batch.seq_lengths,
            deterministic=False,
            rngs={"dropout": dropout_key},
            initial_carry=carry,
            return_carry=stateful,
        )
        if stateful:
            outputs, carry = outputs
        return task.loss(outputs, batch), carry

    def step(state: TrainState, data: Any) -> tuple[TrainState, jax.Array]:
        batch = task.train_batch(data, state.data_key, state.step, batch_size)
        dropout_key = jax.random.fold_in(state.dropout_key, state.step)
        carry = state.carry
        if stateful:
            restart = task.starts_sequence(data, state.step, batch_size)
            carry = jax.tree_util.tree_map(lambda c: jnp.where(restart, 0.0, c), carry)
        (loss, new_carry), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, batch, dropout_key, carry
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        alive = state.diverged_step == NOT_DIVERGED
        healthy = jnp.isfinite(loss) & all_finite(grads) & all_finite(params)
        first = jnp.isnan(state.initial_loss)
        if blowup_factor is not None:
            reference = jnp.where(first, loss, state.initial_loss)
            healthy &= ~(loss > blowup_factor * jnp.maximum(reference, BLOWUP_FLOOR))
        accept = alive & healthy

        def keep(new: Any, old: Any) -> Any:
            return jax.tree_util.tree_map(lambda n, o: jnp.where(accept, n, o), new, old)

        new_state = TrainState(
            params=keep(params, state.params),
            opt_state=keep(opt_state, state.opt_state),
            data_key=state.data_key,
            dropout_key=state.dropout_key,
            step=state.step + 1,
            diverged_step=jnp.where(alive & ~healthy, state.step, state.diverged_step),
            initial_loss=jnp.where(accept & first, loss, state.initial_loss).astype(jnp.float32),
            carry=keep(jax.lax.stop_gradient(new_carry), carry) if stateful else None,
        )
        return new_state, jnp.where(accept, loss, jnp.nan)

    def chunk(state: TrainState, data: Any, n_steps: int) -> tuple[TrainState, jax.Array]:
        return jax.lax.scan(lambda s, _: step(s, data), state, None, length=n_steps)

    def evaluate_streams(params: Any, eval_set: Batch) -> dict[str, jax.Array]:
        """Stateful tasks: (S, L) streams in segments of `task.eval_segment`, state carried."""
        streams, length = eval_set.inputs.shape[:2]
        segment = task.eval_segment
        segments = jax.tree_util.tree_map(
            lambda x: jnp.swapaxes(x.reshape(streams, length // segment, segment), 0, 1),
            (eval_set.inputs, eval_set.targets),
        )

        def run_segment(carry: Any, xs: tuple[jax.Array, jax.Array]) -> tuple[Any, dict]:
            batch = Batch(*xs)
            outputs, carry = model.apply(
                {"params": params}, batch.inputs, initial_carry=carry, return_carry=True
            )
            return carry, task.metrics(outputs, batch)

        start = model.initial_carry(streams, task.spec.input_dim)
        _, per_segment = jax.lax.scan(run_segment, start, segments)
        return {name: jnp.mean(values) for name, values in per_segment.items()}

    def evaluate(params: Any, eval_set: Batch) -> dict[str, jax.Array]:
        if stateful:
            return evaluate_streams(params, eval_set)
        n = eval_set.inputs.shape[0]
        size = min(eval_batch_size or n, n)
        pad = -n % size  # the last chunk is filled with copies of example 0, weighted 0
        padded = jax.tree_util.tree_map(
            lambda x: jnp.concatenate([x, jnp.repeat(x[:1], pad, axis=0)]), eval_set
        )
        valid = (jnp.arange(n + pad) < n).astype(jnp.float32)
        chunks = jax.tree_util.tree_map(
            lambda x: x.reshape((n + pad) // size, size, *x.shape[1:]), (padded, valid)
        )

        def chunk_metrics(chunk: tuple[Batch, jax.Array]) -> tuple[dict[str, jax.Array], jax.Array]:
            batch, weights = chunk
            outputs = model.apply({"params": params}, batch.inputs, batch.seq_lengths)
            example_weights = task.example_weights(batch)
            if example_weights is not None:
                weights = weights * example_weights
            return task.metrics(outputs, batch), weights

        per_example, weights = jax.lax.map(chunk_metrics, chunks)
        total = jnp.sum(weights)
        return {name: jnp.sum(values * weights) / total for name, values in per_example.items()}

    return TrainProgram(
        init=init,
        step=step,
        chunk=chunk,
        evaluate=evaluate,
        # Not vmap: the orthogonal initialisers' QR would become one batched LAPACK call per gate
        # block, and jaxlib's CPU LAPACK kernels split a batch over the intra-op thread pool and
        # block a pool thread waiting for the pieces; two such calls at once on a 2-thread pool
        # wait for each other forever. Mapped over seeds, every QR is a single matrix, run inline.
        batched_init=lambda seeds: jax.lax.map(init, seeds),
        batched_chunk=lambda state, data, n_steps: jax.vmap(lambda s: chunk(s, data, n_steps))(
            state
        ),
        # The seeds one after another inside one program: on CPU the per-seed weights turn every
        # matmul of the vmapped chunk into a batched one, which XLA runs slower than a loop of
        # single ones for most recurrent layers (`seqbench.train.strategy` measures it).
        mapped_chunk=lambda state, data, n_steps: jax.lax.map(
            lambda s: chunk(s, data, n_steps), state
        ),
        # Seeds one after another here too: an evaluation is a forward pass over the whole held-out
        # set, so vmapping it multiplies its peak memory by the seeds (3 x 1000 sequences of
        # T=1600 under minLSTM's log-space scan outgrew 24 GB) and, on the 2-core CPU, ran slower.
        batched_evaluate=lambda params, eval_set: jax.lax.map(
            lambda seed_params: evaluate(seed_params, eval_set), params
        ),
    )
