"""seqbench.models.linear_scan against a step-by-step Python loop and its automatic gradients.

The sequential scan has its own backward pass (the reversed recurrence of the cotangents), so its
gradients are checked here against JAX's differentiation of a plain Python loop, for
real and complex states, padding (a length-0 row included), the reverse direction, a non-zero
initial state and a cotangent on the final state. The architecture tests (tests/test_arch_*.py)
check every scan of each architecture against this one.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scan_checks import TOL, fast_jit

from seqbench.models.linear_scan import SCANS, linear_recurrence

B, T, N = 3, 9, 4
LENGTHS = np.array([9, 4, 0])


def _inputs(complex_state: bool):
    rng = np.random.default_rng(0)
    a = rng.uniform(0.3, 0.99, (B, T, N))
    b, h0 = rng.normal(size=(B, T, N)), rng.normal(size=(B, N))
    weights = rng.normal(size=(B, T, N)), rng.normal(size=(B, N))
    if complex_state:
        a = a * np.exp(1j * rng.uniform(-np.pi, np.pi, (B, T, N)))
        b, h0 = b + 1j * rng.normal(size=(B, T, N)), h0 + 1j * rng.normal(size=(B, N))
    return (a, b, h0), weights


def _loop(a, b, h0, lengths, reverse):
    """The recurrence in plain jnp, one step at a time per row: (states (B, T, N), final)."""
    rows, finals = [], []
    for row in range(B):
        h, states = h0[row], [None] * T
        steps = range(int(lengths[row]))
        for t in reversed(steps) if reverse else steps:
            h = a[row, t] * h + b[row, t]
            states[t] = h
        if reverse:  # the padded tail comes first in scan order: it holds h0
            rows.append(jnp.stack([h0[row] if s is None else s for s in states]))
        else:
            rows.append(_held_forward(states, h0[row]))
        finals.append(h)
    return jnp.stack(rows), jnp.stack(finals)


def _held_forward(states, h0):
    """Forward order: padded steps (None) repeat the state before them."""
    held, h = [], h0
    for s in states:
        h = h if s is None else s
        held.append(h)
    return jnp.stack(held)


def _loss(states, final, weights):
    """A real scalar that reads every state and the final one."""
    return jnp.sum(weights[0] * jnp.abs(states) ** 2) + jnp.sum(weights[1] * jnp.real(final))


@pytest.mark.parametrize("complex_state", [False, True], ids=["real", "complex"])
def test_every_scan_and_its_gradients_match_a_plain_loop(complex_state):
    (a, b, h0), weights = _inputs(complex_state)
    cases = [(lengths, reverse) for lengths in (None, LENGTHS) for reverse in (False, True)]

    def ours(a, b, h0):
        results = {}
        for scan in SCANS:
            for lengths, reverse in cases:

                def loss(a, b, h0, scan=scan, lengths=lengths, reverse=reverse):
                    options = {"seq_lengths": lengths, "reverse": reverse, "chunk_size": 4}
                    states, final = linear_recurrence(a, b, h0, scan=scan, **options)
                    return _loss(states, final, weights), (states, final)

                grads, outputs = jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(a, b, h0)
                results[scan, lengths is not None, reverse] = outputs, grads
        return results

    dtype = np.complex64 if complex_state else np.float32
    inputs = [x.astype(dtype) for x in (a, b, h0)]

    def reference(a, b, h0):
        results = {}
        for lengths, reverse in cases:
            full = np.full(B, T) if lengths is None else lengths

            def loss(a, b, h0, full=full, reverse=reverse):
                states, final = _loop(a, b, h0, full, reverse)
                return _loss(states, final, weights), (states, final)

            grads, outputs = jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(a, b, h0)
            results[lengths is not None, reverse] = outputs, grads
        return results

    results = jax.tree.map(np.asarray, fast_jit(ours)(*inputs))
    expected = jax.tree.map(np.asarray, fast_jit(reference)(*inputs))
    for (scan, padded, reverse), got in results.items():
        names = ("states", "final", "d a", "d b", "d h0")
        leaves = zip(
            names, jax.tree.leaves(got), jax.tree.leaves(expected[padded, reverse]), strict=True
        )
        for name, x, y in leaves:
            np.testing.assert_allclose(x, y, **TOL, err_msg=f"{scan} {padded=} {reverse=} {name}")
