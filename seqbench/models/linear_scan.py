"""Diagonal linear recurrences h_t = a_t * h_{t-1} + b_t, run sequentially or in parallel over time.

Shapes: B = batch, T = time, N = state width (real or complex).

The linear recurrences (minGRU, minLSTM, LRU, RG-LRU) all reduce to this element-wise recurrence,
whose coefficients depend on the inputs only, so it can be computed without a loop over time. Three
scans compute the same states:

- ``sequential``: one step at a time (T steps, O(T) depth), in the batch-major layout, with its own
  backward pass, the reversed recurrence of the cotangents (``_stepwise_bwd``): no transposes and
  no saved per-step residuals (on a CPU, writing large arrays, more than arithmetic, bounds these
  recurrences);
- ``associative``: ``jax.lax.associative_scan`` with the operator
  (a1, b1) . (a2, b2) = (a1 a2, a2 b1 + b2) (Blelloch 1990; Martin & Cundy 2018), O(log T) depth;
- ``chunked``: the associative scan inside chunks of ``chunk_size`` steps, all chunks at once, then a
  sequential scan across chunks that carries the state (T / chunk_size steps), as in the chunked
  forms of Mamba-2 and GLA.

:func:`log_linear_recurrence` is the log-space form of Feng et al. 2024 (BorealisAI/minRNNs
``parallel_scan_log``, after Heinsen 2023) for positive b_t: cumulative sums of log a_t and a
``logcumsumexp`` of log b_t. The initial state enters as its own term A_t h_0, so it may have any
sign (the reference takes log h_0 and so needs h_0 > 0).

Every form honours ``seq_lengths`` (steps t >= seq_lengths[b] leave row b's state unchanged:
a = 1, b = 0 there), ``reverse`` (each row's valid prefix from its last step down to step 0) and a
non-zero initial state (the carry of truncated backpropagation through time).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from seqbench.config import choice, require
from seqbench.models.scan import length_mask

#: the scans of a linear recurrence, as `model.cell.scan` names them
SCANS = ("sequential", "associative", "chunked")
#: steps per chunk of the chunked scan unless an architecture says otherwise
DEFAULT_CHUNK = 64
#: log b at padded steps of the log-space form: exp() of it is 0, its gradient 0, and it stays far
#: from float32's limits after the cumulative sums of log a are subtracted
_LOG_ZERO = -1e30


def check_scan_options(scan: str, chunk_size: int, scans: tuple[str, ...] = SCANS) -> None:
    """ConfigError naming `model.cell.scan` / `model.cell.chunk_size` for bad values; `scans`:
    the architecture's (`Spec.scans`)."""
    choice(scan, "model.cell.scan", scans)
    require(
        isinstance(chunk_size, int) and not isinstance(chunk_size, bool) and chunk_size >= 1,
        "model.cell.chunk_size",
        f"must be an integer >= 1, got {chunk_size!r}",
    )


def _combine(left: tuple[jax.Array, jax.Array], right: tuple[jax.Array, jax.Array]):
    """(a1, b1) . (a2, b2) = (a1 a2, a2 b1 + b2): apply step 1, then step 2."""
    a1, b1 = left
    a2, b2 = right
    return a1 * a2, a2 * b1 + b2


def _step(x: jax.Array, t: jax.Array) -> jax.Array:
    """(B, T, ...) -> step t, (B, ...)."""
    return jax.lax.dynamic_index_in_dim(x, t, 1, keepdims=False)


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def _stepwise(a, b, initial, reverse):
    return _stepwise_forward(a, b, initial, reverse)


def _stepwise_forward(a, b, initial, reverse):
    """Batch-major a, b (B, T, N), initial (B, N) -> (states (B, T, N), final (B, N))."""
    time = b.shape[1]

    def step(s, carry):
        h, states = carry
        t = time - 1 - s if reverse else s
        h = _step(a, t) * h + _step(b, t)
        return h, jax.lax.dynamic_update_index_in_dim(states, h, t, 1)

    final, states = jax.lax.fori_loop(0, time, step, (initial, jnp.zeros_like(b)))
    return states, final


def _stepwise_fwd(a, b, initial, reverse):
    states, final = _stepwise_forward(a, b, initial, reverse)
    return (states, final), (a, initial, states)


def _stepwise_bwd(reverse, residuals, cotangents):
    """The reversed recurrence of the cotangents, t in scan order: with g_t = dL/dh_t from the
    states and dL/d final added to the last step, lam_t = g_t + a_{t+1} lam_{t+1}; then
    dL/da_t = lam_t h_{t-1}, dL/db_t = lam_t and dL/dh_{-1} = a_0 lam_0."""
    a, initial, states = residuals
    g_states, g_final = cotangents
    time = states.shape[1]

    def step(i, carry):
        later, d_a, d_b = carry  # later = a_{t+1} lam_{t+1} (B, N)
        s = time - 1 - i
        t = time - 1 - s if reverse else s
        before = jnp.clip(t + 1 if reverse else t - 1, 0, time - 1)
        h_before = jnp.where(s == 0, initial, _step(states, before))
        lam = _step(g_states, t) + later
        d_a = jax.lax.dynamic_update_index_in_dim(d_a, lam * h_before, t, 1)
        d_b = jax.lax.dynamic_update_index_in_dim(d_b, lam, t, 1)
        return _step(a, t) * lam, d_a, d_b

    start = (g_final.astype(states.dtype), jnp.zeros_like(a), jnp.zeros_like(states))
    d_initial, d_a, d_b = jax.lax.fori_loop(0, time, step, start)
    return d_a, d_b, d_initial


_stepwise.defvjp(_stepwise_fwd, _stepwise_bwd)


def _sequential(a, b, initial, seq_lengths, reverse):
    """Batch-major a, b (B, T, N), initial (B, N) -> (states (B, T, N), final (B, N)), padded
    steps held."""
    a, b = _hold_padded(a, b, seq_lengths, 1.0, 0.0)
    return _stepwise(a, b, initial, reverse)


def _associative(a: jax.Array, b: jax.Array, h0: jax.Array) -> jax.Array:
    """Time-major a, b (T, B, N), h0 (B, N) -> states (T, B, N)."""
    b = b.at[0].add(a[0] * h0)
    return jax.lax.associative_scan(_combine, (a, b), axis=0)[1]


def _in_chunks(
    a: jax.Array, b: jax.Array, chunk_size: int, hold_a: float, hold_b: float
) -> tuple[jax.Array, jax.Array]:
    """Time-major (T, B, N) -> (T / C, C, B, N), C = chunk_size, the tail padded with steps that
    hold the state (a = hold_a, b = hold_b)."""
    time = a.shape[0]
    chunk = max(1, min(chunk_size, time))
    pad = -time % chunk
    if pad:
        a = jnp.concatenate([a, jnp.full((pad, *a.shape[1:]), hold_a, a.dtype)])
        b = jnp.concatenate([b, jnp.full((pad, *b.shape[1:]), hold_b, b.dtype)])
    chunks = (time + pad) // chunk
    return a.reshape(chunks, chunk, *a.shape[1:]), b.reshape(chunks, chunk, *b.shape[1:])


def _across_chunks(decay: jax.Array, local: jax.Array, h0: jax.Array, time: int) -> jax.Array:
    """Chunk-local terms (T / C, C, B, N) -> states (T, B, N).

    decay: the product of a from each chunk's start to each step; local: the states of each chunk
    from a zero start. A sequential scan over chunks adds the state carried into each chunk.
    """

    def across(h, chunk_terms):
        decay_c, local_c = chunk_terms
        states = decay_c * h[None] + local_c
        return states[-1], states

    states = jax.lax.scan(across, h0.astype(local.dtype), (decay, local))[1]
    return states.reshape(-1, *states.shape[2:])[:time]


def _chunked(a: jax.Array, b: jax.Array, h0: jax.Array, chunk_size: int) -> jax.Array:
    """Time-major a, b (T, B, N), h0 (B, N) -> states (T, B, N), in chunks of `chunk_size` steps."""
    a_c, b_c = _in_chunks(a, b, chunk_size, 1.0, 0.0)
    # within every chunk at once: the cumulative decay and the states from a zero start
    decay, local = jax.lax.associative_scan(_combine, (a_c, b_c), axis=1)
    return _across_chunks(decay, local, h0, a.shape[0])


def _hold_padded(
    a: jax.Array, b: jax.Array, seq_lengths: jax.Array | None, hold_a: float, hold_b: float
) -> tuple[jax.Array, jax.Array]:
    """Batch-major a, b (B, T, N) with steps t >= seq_lengths[b] set to hold_a, hold_b."""
    if seq_lengths is None:
        return a, b
    mask = length_mask(seq_lengths, a.shape[1])[..., None]
    return jnp.where(mask, a, jnp.asarray(hold_a, a.dtype)), jnp.where(
        mask, b, jnp.asarray(hold_b, b.dtype)
    )


def _prepare(
    a: jax.Array,
    b: jax.Array,
    seq_lengths: jax.Array | None,
    reverse: bool,
    hold_a: float,
    hold_b: float,
) -> tuple[jax.Array, jax.Array]:
    """Batch-major (B, T, N) -> time-major (T, B, N) in scan order, padded steps set to hold."""
    a, b = _hold_padded(a, b, seq_lengths, hold_a, hold_b)
    a, b = jnp.swapaxes(a, 0, 1), jnp.swapaxes(b, 0, 1)
    if reverse:
        a, b = a[::-1], b[::-1]
    return a, b


def _finish(states: jax.Array, reverse: bool) -> tuple[jax.Array, jax.Array]:
    """Time-major states in scan order -> (states (B, T, N) at input positions, final (B, N))."""
    final = states[-1]
    if reverse:
        states = states[::-1]
    return jnp.swapaxes(states, 0, 1), final


def linear_recurrence(
    a: jax.Array,
    b: jax.Array,
    initial: jax.Array | None = None,
    *,
    scan: str = "associative",
    seq_lengths: jax.Array | None = None,
    reverse: bool = False,
    chunk_size: int = DEFAULT_CHUNK,
) -> tuple[jax.Array, jax.Array]:
    """h_t = a_t * h_{t-1} + b_t for t = 0 .. T-1, starting from h_{-1} = `initial`.

    Args:
        a: (B, T, N) decays, real or complex (broadcast against b).
        b: (B, T, N) inputs, real or complex.
        initial: (B, N) starting state, or None for zeros.
        scan: one of `SCANS`.
        seq_lengths: (B,) int or None; steps t >= seq_lengths[b] leave row b's state unchanged.
        reverse: run each row's valid prefix from its last valid step down to step 0.
        chunk_size: steps per chunk of the chunked scan.

    Returns:
        (states (B, T, N): h_t at each input position (padded steps repeat the held state),
        final (B, N): the state after the last valid step).
    """
    a, b = jnp.broadcast_arrays(a, b) if a.shape != b.shape else (a, b)
    dtype = jnp.result_type(a, b)
    a, b = a.astype(dtype), b.astype(dtype)
    h0 = jnp.zeros((b.shape[0], b.shape[2]), dtype) if initial is None else initial.astype(dtype)
    if scan == "sequential":
        return _sequential(a, b, h0, seq_lengths, reverse)
    a, b = _prepare(a, b, seq_lengths, reverse, 1.0, 0.0)
    if scan == "associative":
        states = _associative(a, b, h0)
    elif scan == "chunked":
        states = _chunked(a, b, h0, chunk_size)
    else:
        raise ValueError(f"scan must be one of {', '.join(SCANS)}, got {scan!r}")
    return _finish(states, reverse)


def log_linear_recurrence(
    log_a: jax.Array,
    log_b: jax.Array,
    initial: jax.Array | None = None,
    *,
    seq_lengths: jax.Array | None = None,
    reverse: bool = False,
    chunk_size: int | None = DEFAULT_CHUNK,
) -> tuple[jax.Array, jax.Array]:
    """h_t = a_t * h_{t-1} + b_t with a_t = exp(log_a), b_t = exp(log_b) > 0, in log space.

    h_t = A_t h_0 + exp(log A_t + logcumsumexp_{s<=t}(log b_s - log A_s)), log A_t = sum_{s<=t}
    log a_s: the parallel form of Feng et al. 2024 (Heinsen 2023). Its error grows with |log A_t|
    (a difference of two such numbers in float32: about 1e-7 relative per step of a typical
    gate), so with `chunk_size` the form runs inside chunks of that many steps, all at once, and
    a sequential scan over chunks carries the state between them (the error then stays that of
    one chunk); None: one chunk of all T steps, the reference's form.

    The cumulative sums are `lax.associative_scan`s, not `jnp.cumsum` / `lax.cumlogsumexp`: on
    CPU (jax 0.10) those lower to a `reduce_window` over the whole chunk, C operations per step
    instead of about 2, and made this form's evaluation 7x slower than the sequential scan.

    Args, Returns: as `linear_recurrence`, with log_a, log_b (B, T, N) real.
    """
    dtype = jnp.result_type(log_a, log_b, jnp.float32)
    log_a, log_b = log_a.astype(dtype), log_b.astype(dtype)
    h0 = jnp.zeros((log_b.shape[0], log_b.shape[2]), dtype) if initial is None else initial
    log_a, log_b = _prepare(log_a, log_b, seq_lengths, reverse, 0.0, _LOG_ZERO)
    time = log_a.shape[0]
    log_a, log_b = _in_chunks(log_a, log_b, chunk_size or time, 0.0, _LOG_ZERO)
    log_decay = jax.lax.associative_scan(jnp.add, log_a, axis=1)
    log_sums = jax.lax.associative_scan(jnp.logaddexp, log_b - log_decay, axis=1)
    local = jnp.exp(log_decay + log_sums)
    states = _across_chunks(jnp.exp(log_decay), local, h0.astype(dtype), time)
    return _finish(states, reverse)
