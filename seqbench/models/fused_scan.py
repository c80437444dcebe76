"""Recurrent layer with a hand-written backward pass: one matmul per step each way.

Autodiff through ``lax.scan`` accumulates the recurrent weight gradient inside the backward loop,
one small (H, B) @ (B, G*H) product per step added to a loop-carried (H, G*H) buffer, and splits
the gate algebra into many small kernels. :func:`fused_scan` instead runs a reverse scan that
does only the per-step work that is truly sequential (the gate derivatives and
``dh_prev = d_pre @ w_hh.T``) and then forms ``d w_hh`` as one (H, T*B) @ (T*B, G*H) product and
``d b_hh`` as one sum over all steps, as cuDNN and PyTorch do; the input weights likewise.
The input projection ``x_t @ w_ih + b_ih`` runs inside the step, fused with the gate algebra, or,
with ``hoisted``, as one (T*B, F) @ (F, GH) product before the loop, as cuDNN and PyTorch do. Which
is faster depends on the shape and the machine (on one 2-core CPU, streaming the precomputed
(T, B, GH) projection through memory cost more than the small per-step products; on another the
small products ran at a third of the large one's rate), so `trainer.input_projection=auto`
measures both (`seqbench.train.strategy`). The backward pass is the same for both.

Shapes: T = time, B = batch, H = hidden size, G = gate blocks, GH = G*H.

A cell supplies its equations as ``rules`` (a hashable object with):

* ``forward(w_hh (H, GH), b_hh (GH,), carry, xp (B, GH)) -> (new_carry, residual)``: one step;
  ``carry`` is a tuple of (B, H) arrays whose first entry is the hidden state h (the output);
  ``residual`` is a pytree of (B, ...) arrays kept for the backward pass.
* ``backward(residual, prev_carry, new_carry, d_new_carry) -> (d_prev_direct, d_pre, d_xp)``:
  ``d_pre`` (B, GH) is the gradient of the recurrent pre-activation ``h_prev @ w_hh + b_hh``;
  ``d_xp`` (B, GH) that of the projected input, or None where it equals ``d_pre``;
  ``d_prev_direct`` is the carry gradient along every path except through ``w_hh`` (a tuple like
  the carry, None for a zero entry). The h entry gets ``d_pre @ w_hh.T`` added here.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp

Carry = tuple[jax.Array, ...]


def _shift_in(stacked: jax.Array, first: jax.Array, reverse: bool) -> jax.Array:
    """Value before each step: ``[first, s_0, ..., s_{T-2}]`` (the other way for reverse)."""
    if reverse:
        return jnp.concatenate([stacked[1:], first[None]], axis=0)
    return jnp.concatenate([first[None], stacked[:-1]], axis=0)


def _over_steps(a: jax.Array, b: jax.Array) -> jax.Array:
    """sum over t, b of a[t, b]ᵀ b[t, b]: (T, B, X), (T, B, Y) -> (X, Y), as one (X, T*B) @
    (T*B, Y) product. XLA's CPU backend ran the same contraction written with two contracting axes
    (einsum "tbx,tby->xy") 4-10% slower per LSTM and GRU training step, one seed or eight vmapped
    (jax 0.10.2, 2-core AMD EPYC; an earlier jax on another day had measured the opposite for
    vmapped seeds)."""
    return a.reshape(-1, a.shape[-1]).T @ b.reshape(-1, b.shape[-1])


def _keep(mask_t: jax.Array, new, old):
    """Rows where ``mask_t`` (B,) is set take ``new``; the others keep ``old``."""
    keep = mask_t[:, None] > 0
    return jax.tree_util.tree_map(lambda n, o: jnp.where(keep, n, o), new, old)


def _run(rules, reverse, hoisted, weights, carry, xs, mask):
    w_ih, b_ih, w_hh, b_hh = weights
    masked = mask.ndim == 2

    def step(carry, inputs):
        x_t, m_t = inputs
        xp_t = x_t if hoisted else x_t @ w_ih + b_ih
        new, residual = rules.forward(w_hh, b_hh, carry, xp_t)
        if masked:
            new = _keep(m_t, new, carry)
        return new, (new, residual)

    streamed = jnp.einsum("tbf,fg->tbg", xs, w_ih) + b_ih if hoisted else xs
    final, (carries, residuals) = jax.lax.scan(
        step, carry, (streamed, mask if masked else None), reverse=reverse
    )
    ys = carries[0] * mask[..., None] if masked else carries[0]
    return final, ys, carries, residuals


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _fused(rules, reverse, hoisted, weights, carry, xs, mask):
    final, ys, _, _ = _run(rules, reverse, hoisted, weights, carry, xs, mask)
    return final, ys


def _fused_fwd(rules, reverse, hoisted, weights, carry, xs, mask):
    final, ys, carries, residuals = _run(rules, reverse, hoisted, weights, carry, xs, mask)
    return (final, ys), (weights, carry, xs, mask, carries, residuals)


def _fused_bwd(rules, reverse, hoisted, saved, cotangents):
    del hoisted  # the input weights' gradients are one product over all steps either way
    (w_ih, _, w_hh, _), carry0, xs, mask, carries, residuals = saved
    d_final, d_ys = cotangents
    masked = mask.ndim == 2
    if masked:
        d_ys = d_ys * mask[..., None]
    prev = tuple(_shift_in(c, c0, reverse) for c, c0 in zip(carries, carry0, strict=True))
    w_hh_t = w_hh.T

    def step(d_carry, inputs):
        residual, prev_t, new_t, d_y, m_t = inputs
        d_new = (d_carry[0] + d_y, *d_carry[1:])
        direct, d_pre, d_xp = rules.backward(residual, prev_t, new_t, d_new)
        d_h = d_pre @ w_hh_t
        if direct[0] is not None:
            d_h = d_h + direct[0]
        rest = zip(direct[1:], new_t[1:], strict=True)
        d_prev = (d_h, *(jnp.zeros_like(n) if d is None else d for d, n in rest))
        grads = (d_pre,) if d_xp is None else (d_pre, d_xp)
        if masked:
            d_prev = _keep(m_t, d_prev, d_new)
            grads = _keep(m_t, grads, jax.tree_util.tree_map(jnp.zeros_like, grads))
        return d_prev, grads

    scanned = (residuals, prev, carries, d_ys, mask if masked else None)
    d_carry0, grads = jax.lax.scan(step, d_final, scanned, reverse=not reverse)
    d_pre, d_xp = grads[0], grads[-1]
    d_weights = (
        _over_steps(xs, d_xp),
        d_xp.sum(axis=(0, 1)),
        _over_steps(prev[0], d_pre),
        d_pre.sum(axis=(0, 1)),
    )
    d_xs = jnp.einsum("tbg,fg->tbf", d_xp, w_ih)
    return d_weights, d_carry0, d_xs, jnp.zeros_like(mask)


_fused.defvjp(_fused_fwd, _fused_bwd)


def fused_scan(
    rules: Any,
    weights: tuple[jax.Array, jax.Array, jax.Array, jax.Array],
    carry: Carry,
    xs: jax.Array,
    mask: jax.Array | None = None,
    reverse: bool = False,
    hoisted: bool = False,
) -> tuple[Carry, jax.Array]:
    """Run one recurrent layer over time-major inputs with the hand-written backward pass.

    Args:
        rules: the cell's forward/backward step equations (see the module docstring); hashable.
        weights: ``(w_ih (F, GH), b_ih (GH,), w_hh (H, GH), b_hh (GH,))``.
        carry: initial carry, a tuple of (B, H) arrays, hidden state first.
        xs: (T, B, F) inputs, time-major.
        mask: (T, B) validity (1 valid, 0 padding) or None. Padded steps keep the carry and
            output zeros, as in :func:`seqbench.models.scan.masked_scan`.
        reverse: process time from the end.
        hoisted: project all T inputs in one product before the loop instead of inside each step
            (the same function; the products round differently).

    Returns:
        ``(final_carry, ys)`` with ys (T, B, H) the hidden states (zero at padded steps).
    """
    mask = jnp.zeros((0,), xs.dtype) if mask is None else jnp.asarray(mask, xs.dtype)
    return _fused(rules, reverse, hoisted, tuple(weights), tuple(carry), xs, mask)
