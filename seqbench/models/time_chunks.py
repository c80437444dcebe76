"""A sequence layer (or residual block) run over time in chunks, each rematerialised.

Shapes: B = batch, T = time, W = input width, H = output width, C = steps per chunk,
K = ceil(T / C) chunks.

`trainer.remat` alone recomputes a layer's gates in the backward pass, but the layer still keeps
(B, T, ·) arrays of its intermediate values (projections, coefficients, their cotangents), several
times the size of its inputs. In chunks of C steps, each call of the layer sees (B, C, ·) only, the
carry passes from one chunk to the next (`SequenceLayer`'s contract: continuing from the carry
equals one call), and `flax.linen.remat` recomputes a chunk's values when its gradient is needed:
the backward pass then keeps the layer's inputs and outputs (B, T, W + H), the K carries and one
chunk's intermediate values (Chen et al. 2016, "Training deep nets with sublinear memory cost",
applied over time). The chunks after the first run under `flax.linen.scan`, so the program holds
one copy of the layer.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def _call(module: nn.Module, x, lengths, carry, offsets, deterministic: bool):
    """module(x (B, C, W), lengths (B,) or None, carry, offsets (B, C, P) or None) -> (outputs
    (B, C, H), final carry)."""
    return module(
        x, lengths, initial_carry=carry, hidden_offsets=offsets, deterministic=deterministic
    )


def _chunked(x: jax.Array, chunks: int, chunk: int) -> jax.Array:
    """(B, K C, ...) -> (B, K, C, ...)."""
    return x.reshape(x.shape[0], chunks, chunk, *x.shape[2:])


def run_in_time_chunks(
    module: nn.Module,
    x: jax.Array,
    seq_lengths: jax.Array | None,
    *,
    chunk: int,
    initial_carry: Any = None,
    hidden_offsets: jax.Array | None = None,
    deterministic: bool = True,
) -> tuple[jax.Array, Any]:
    """module(x, seq_lengths, initial_carry=..., hidden_offsets=..., deterministic=...) in chunks
    of `chunk` steps, forward in time, each chunk rematerialised in the backward pass.

    `module`: a `SequenceLayer` (one direction) or a `ResidualBlock`, called as one call would
    be: the first chunk starts from `initial_carry` (None: the architecture's own start, e.g.
    RG-LRU's reset at the first step), each later one from the carry the chunk before it left.
    The time axis is padded to a whole number of chunks with steps past every row's length (they
    hold the carry) and the outputs cut back to T.

    Args:
        module: the layer or block, a submodule of the calling module.
        x: (B, T, W) inputs.
        seq_lengths: (B,) int or None (every row T steps).
        chunk: C, steps per chunk (T <= C: one plain call).
        initial_carry: the carry to start from, or None.
        hidden_offsets: (B, T, P) or None, the gradient-flow probe.
        deterministic: False in training (dropout acts).

    Returns:
        (outputs (B, T, H), the final carry), as one call of `module` gives.
    """
    batch, time = x.shape[:2]
    run = nn.remat(_call, static_argnums=(5,))
    if time <= chunk:
        return run(module, x, seq_lengths, initial_carry, hidden_offsets, deterministic)
    chunks = -(-time // chunk)
    pad = chunks * chunk - time
    lengths = jnp.full((batch,), time, jnp.int32) if seq_lengths is None else seq_lengths
    if pad:
        x = jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
        if hidden_offsets is not None:
            hidden_offsets = jnp.pad(hidden_offsets, [(0, 0), (0, pad), (0, 0)])
    # steps of each row in each chunk, (B, K)
    starts = chunk * jnp.arange(chunks)
    chunk_lengths = jnp.clip(lengths[:, None] - starts[None], 0, chunk).astype(lengths.dtype)
    first_lengths = None if seq_lengths is None and not pad else chunk_lengths[:, 0]
    first_offsets = None if hidden_offsets is None else hidden_offsets[:, :chunk]
    first, carry = run(
        module, x[:, :chunk], first_lengths, initial_carry, first_offsets, deterministic
    )

    def later(module: nn.Module, carry: Any, inputs: tuple) -> tuple[Any, jax.Array]:
        x_c, lengths_c, offsets_c = inputs
        outputs, carry = run(module, x_c, lengths_c, carry, offsets_c, deterministic)
        return carry, outputs

    scan = nn.scan(
        later,
        variable_broadcast="params",
        split_rngs={"params": False, "dropout": True},
        in_axes=1,
        out_axes=1,
    )
    rest = chunks - 1
    offsets = None if hidden_offsets is None else _chunked(hidden_offsets[:, chunk:], rest, chunk)
    carry, outputs = scan(
        module, carry, (_chunked(x[:, chunk:], rest, chunk), chunk_lengths[:, 1:], offsets)
    )
    outputs = jnp.concatenate([first, outputs.reshape(batch, rest * chunk, -1)], axis=1)
    return outputs[:, :time], carry
