"""Length-masked time recurrence shared by the recurrent cells.

Shapes: B = batch, T = time, D = per-step input width (already projected), H = hidden size.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Carry = Any
StepFn = Callable[[Carry, jax.Array], tuple[Carry, jax.Array]]


def length_mask(seq_lengths: jax.Array, time: int) -> jax.Array:
    """Validity mask: ``mask[b, t] = t < seq_lengths[b]``. (B,) int -> (B, T) bool."""
    return jnp.arange(time)[None, :] < jnp.asarray(seq_lengths)[:, None]


def masked_scan(
    step: StepFn,
    carry: Carry,
    xs: jax.Array,
    seq_lengths: jax.Array | None = None,
    reverse: bool = False,
) -> tuple[Carry, jax.Array]:
    """Run ``step`` over the time axis of ``xs`` with ``jax.lax.scan``, honouring lengths.

    Args:
        step: pure ``(carry, x_t) -> (carry, y_t)`` with x_t (B, D), y_t (B, H); carry is a
            pytree of (B, ...) arrays.
        carry: initial carry.
        xs: (B, T, D) per-step inputs, batch-major.
        seq_lengths: (B,) int valid lengths, or None for all T steps valid.
        reverse: process time from the last valid step of each row down to step 0.

    Returns:
        ``(final_carry, ys)`` with ys (B, T, H) aligned to the original time positions.
        For t >= seq_lengths[b] the carry of row b is left unchanged and ys[b, t] = 0, so
        ``final_carry`` is the carry after the last valid step. In reverse mode the padded
        tail is visited first and leaves the carry at its initial value, which makes the
        recurrence run over each row's valid prefix only (len-1 down to 0).
    """
    xs_tm = jnp.swapaxes(xs, 0, 1)
    if seq_lengths is None:
        carry, ys_tm = jax.lax.scan(step, carry, xs_tm, reverse=reverse)
        return carry, jnp.swapaxes(ys_tm, 0, 1)

    mask_tm = jnp.swapaxes(length_mask(seq_lengths, xs.shape[1]), 0, 1)

    def masked_step(c, inp):
        x_t, m_t = inp
        new_c, y_t = step(c, x_t)
        m = m_t[:, None]
        c = jax.tree_util.tree_map(lambda n, o: jnp.where(m, n, o), new_c, c)
        return c, jnp.where(m, y_t, jnp.zeros_like(y_t))

    carry, ys_tm = jax.lax.scan(masked_step, carry, (xs_tm, mask_tm), reverse=reverse)
    return carry, jnp.swapaxes(ys_tm, 0, 1)


def take_last_valid(ys: jax.Array, seq_lengths: jax.Array | None = None) -> jax.Array:
    """Output at each row's last valid step: ``ys[b, seq_lengths[b] - 1]``. (B, T, H) -> (B, H).

    A row of length 0 yields ``ys[b, 0]`` (which is zero for masked cell outputs).
    """
    if seq_lengths is None:
        return ys[:, -1]
    idx = jnp.clip(jnp.asarray(seq_lengths) - 1, 0, ys.shape[1] - 1)
    return jnp.take_along_axis(ys, idx[:, None, None].astype(jnp.int32), axis=1)[:, 0]
