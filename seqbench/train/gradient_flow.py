"""Gradient flow through time: the norm of dL/dh_t at every step t of a fixed batch.

For a model and a batch, the loss L is differentiated with respect to offsets added to each
layer's hidden state h_t right after step t computes it (`SequenceModel(hidden_offsets=...)`),
at zero offsets. That derivative is dL/dh_t along every path: through the readout and through
h_{t+1}, ..., h_T. In a plain RNN it shrinks geometrically as t moves away from the steps where
the loss reads the state (the vanishing gradient); gates are meant to keep it from shrinking.

The loss is the task's training loss times the batch size, so for a loss that is a mean over
examples each example's row is the gradient of its own loss; the reported value is the L2 norm
over the H hidden units (the P_k probe units of `SequenceModel.probe_widths`: the TCN's layer
inputs, the LRU's complex state as real and imaginary parts), averaged over the examples of the batch (padded steps count as zero).
Shapes: S = seeds, L = recurrent layers, B = batch, T = time, H = hidden size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from seqbench.models.sequence import SequenceModel
from seqbench.tasks.base import Batch, StatefulTask, Task

#: where the batch comes from: the first examples of this held-out split
FLOW_SPLIT = "val"


def flow_batch(task: Task, size: int) -> Batch:
    """The first `size` examples of the task's validation split (streams cut to one segment for
    tasks that carry state across segments); the same batch at every step and for every seed."""
    full = task.eval_set(FLOW_SPLIT)
    if isinstance(task, StatefulTask):
        segment = task.eval_segment
        return Batch(full.inputs[:size, :segment], full.targets[:size, :segment])
    return jax.tree_util.tree_map(lambda x: x[:size], full)


def make_gradient_flow(model: SequenceModel, task: Task) -> Callable[[Any, Batch], jax.Array]:
    """flow(params, batch) -> (L, T) mean over the batch of ||d(B * loss)/dh_t||_2 per layer.

    Only the forward direction of a bidirectional layer is measured.
    """

    def flow(params: Any, batch: Batch) -> jax.Array:
        size, time = batch.inputs.shape[:2]
        features = batch.inputs.shape[2] if batch.inputs.ndim == 3 else model.vocab_size
        zeros = tuple(
            jnp.zeros((size, time, width), jnp.float32) for width in model.probe_widths(features)
        )

        def scaled_loss(offsets: tuple[jax.Array, ...]) -> jax.Array:
            outputs = model.apply(
                {"params": params}, batch.inputs, batch.seq_lengths, hidden_offsets=offsets
            )
            return task.loss(outputs, batch) * size

        grads = jax.grad(scaled_loss)(zeros)
        return jnp.stack([jnp.linalg.norm(g, axis=-1).mean(axis=0) for g in grads])

    return flow
