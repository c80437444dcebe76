"""The shared layer of the PyTorch-equation cells: input and recurrent projections into G gate
blocks, and a step rule that turns them into the next carry.

Shapes: B = batch, T = time, F = input features, H = hidden size, G = gate blocks, GH = G*H.

A `ProjectedLayer` holds

    w_ih (F, GH), w_hh (H, GH), b_ih (GH,), b_hh (GH,)

with the G gate blocks along the last axis in PyTorch's order, so ``w_ih.T`` is PyTorch's
``weight_ih_l0`` (see `seqbench.models.torch_compat`). Writing x W for ``x @ W`` (row vectors),
each step computes the projected input ``xp = x_t w_ih + b_ih`` (B, GH) and hands it, with
``w_hh`` and ``b_hh``, to its `StepRules`.

The rules object carries the step equations: the forward step and its hand-derived backward, run
by :func:`seqbench.models.fused_scan.fused_scan` (input projection inside the step, or hoisted out
of the loop with ``hoist_projection``; one matmul per step each way, weight gradients as one matmul
over all steps). With ``remat=True`` (long
sequences) the same forward step is differentiated by autodiff under ``jax.checkpoint``, so memory
holds the carries only, O(T B H), instead of O(T B G H) gate activations; hidden offsets (the
gradient-flow probe) take that autodiff path too. With ``seq_lengths``, steps t >= length leave the
carry unchanged and output zeros; ``reverse=True`` runs each row's valid prefix backwards.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqbench.models.fused_scan import fused_scan
from seqbench.models.scan import length_mask, masked_scan

Carry = tuple[jax.Array, ...]


class StepRules(Protocol):
    """One cell's step equations (a hashable, frozen dataclass; see `fused_scan` for the contract).

    gates: G, the gate blocks of the projections. carries: the (B, H) arrays in the carry, the
    hidden state h first.
    forward(w_hh (H, GH), b_hh (GH,), carry, xp (B, GH)) -> (new_carry, residual).
    backward(residual, prev_carry, new_carry, d_new_carry) -> (d_prev_direct, d_pre (B, GH),
        d_xp (B, GH) or None).
    """

    gates: ClassVar[int]
    carries: ClassVar[int]

    def forward(
        self, w_hh: jax.Array, b_hh: jax.Array, carry: Carry, xp: jax.Array
    ) -> tuple[Carry, Any]: ...

    def backward(
        self, residual: Any, prev: Carry, new: Carry, d_new: Carry
    ) -> tuple[tuple[jax.Array | None, ...], jax.Array, jax.Array | None]: ...


def glorot_blocks_init(gates: int) -> nn.initializers.Initializer:
    """Glorot/Xavier uniform for a (F, G*H) kernel, per gate block: fan_in F, fan_out H.

    Every block shares the bound sqrt(6 / (F + H)), so this is one uniform draw.
    """

    def init(key, shape, dtype=jnp.float32):
        fan_in, fan_out = shape[0], shape[1] // gates
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return jax.random.uniform(key, shape, dtype, -limit, limit)

    return init


def orthogonal_blocks_init(gates: int) -> nn.initializers.Initializer:
    """Independent orthogonal (H, H) matrix for each gate block of a (H, G*H) kernel."""

    def init(key, shape, dtype=jnp.float32):
        h = shape[0]
        ortho = nn.initializers.orthogonal()
        blocks = [ortho(k, (h, h), dtype) for k in jax.random.split(key, gates)]
        return jnp.concatenate(blocks, axis=1)

    return init


def projected_step_flops(gates: int) -> Callable[[Any, int, int, int, int], float]:
    """`Spec.step_flops` of a projected layer: the gate matmuls 2 B T (F + H) G H of one forward
    pass (element-wise gate arithmetic left out, as usual for such counts)."""

    def flops(options: Any, batch: int, length: int, features: int, hidden: int) -> float:
        del options
        return 2.0 * batch * length * (features + hidden) * gates * hidden

    return flops


class ProjectedLayer(nn.Module):
    """One direction of a projected recurrent layer over a sequence (a `SequenceLayer`).

    Parameters: w_ih (F, GH) Glorot per gate block; w_hh (H, GH) `recurrent_init` (None:
    orthogonal per gate block); b_ih (GH,) `bias_ih_init` (None: zeros); b_hh (GH,) zeros.
    Carry: h (B, H) when the rules carry one array, else the tuple (h, ...) of (B, H) arrays.
    """

    hidden_size: int
    rules: Any  # StepRules
    recurrent_init: nn.initializers.Initializer | None = None
    bias_ih_init: nn.initializers.Initializer | None = None
    remat: bool = False
    # project the whole sequence before the loop (fused path only: remat and hidden offsets keep
    # the projection in the step, so that no (T, B, GH) buffer is stored)
    hoist_projection: bool = False

    def __post_init__(self):
        if self.hidden_size < 1:
            raise ValueError(f"hidden_size must be >= 1, got {self.hidden_size}")
        super().__post_init__()

    @nn.compact
    def __call__(
        self,
        inputs,
        seq_lengths=None,
        reverse: bool = False,
        initial_carry=None,
        hidden_offsets=None,
        deterministic: bool = True,
    ):
        """inputs (B, T, F), seq_lengths (B,) int or None -> (outputs (B, T, H), final_carry).

        final_carry is h (B, H), or the tuple (h, ...) for rules with several carried arrays;
        `initial_carry` (same form) starts the recurrence there instead of at zeros (truncated
        backpropagation through time). `hidden_offsets` (B, T, H) is added to the hidden state h_t
        right after step t computes it, before h_t feeds step t+1 and the output: at zero offsets
        the outputs are unchanged, and the gradient of a loss with respect to the offsets is its
        gradient with respect to each h_t along every path (see
        :mod:`seqbench.train.gradient_flow`).
        """
        del deterministic  # no dropout inside
        rules = self.rules
        gates = rules.gates
        f, h, gh = inputs.shape[-1], self.hidden_size, gates * self.hidden_size
        recurrent_init = self.recurrent_init or orthogonal_blocks_init(gates)
        bias_ih_init = self.bias_ih_init or nn.initializers.zeros_init()
        w_ih = self.param("w_ih", glorot_blocks_init(gates), (f, gh), jnp.float32)
        w_hh = self.param("w_hh", recurrent_init, (h, gh), jnp.float32)
        b_ih = self.param("b_ih", bias_ih_init, (gh,), jnp.float32)
        b_hh = self.param("b_hh", nn.initializers.zeros_init(), (gh,), jnp.float32)
        if initial_carry is None:
            zeros = jnp.zeros((inputs.shape[0], self.hidden_size), jnp.float32)
            carry = (zeros,) * rules.carries
        else:
            carry = tuple(initial_carry) if isinstance(initial_carry, tuple) else (initial_carry,)
        if not self.remat and hidden_offsets is None:
            mask = None if seq_lengths is None else length_mask(seq_lengths, inputs.shape[1]).T
            weights = (w_ih, b_ih, w_hh, b_hh)
            xs = jnp.swapaxes(inputs, 0, 1)
            final, ys = fused_scan(rules, weights, carry, xs, mask, reverse, self.hoist_projection)
            outputs = jnp.swapaxes(ys, 0, 1)
        else:
            # Autodiff through the plain step: for long sequences (remat: keep only the carry per
            # step and recompute projection and gates in the backward pass, no (T, B, G*H)
            # buffers), or to add hidden offsets, which ride along as extra input columns.
            def projected_step(carry, x_t):
                x_t, offset_t = x_t[:, :f], x_t[:, f:]
                new, _ = rules.forward(w_hh, b_hh, carry, x_t @ w_ih + b_ih)
                if hidden_offsets is not None:
                    new = (new[0] + offset_t, *new[1:])
                return new, new[0]

            xs = inputs
            if hidden_offsets is not None:
                xs = jnp.concatenate([inputs, hidden_offsets.astype(inputs.dtype)], axis=-1)
            step = (
                jax.checkpoint(projected_step, prevent_cse=False) if self.remat else projected_step
            )
            final, outputs = masked_scan(step, carry, xs, seq_lengths, reverse)
        return outputs, (final if len(final) > 1 else final[0])


def zero_carry(carries: int) -> Callable[[Any, int, int], Any]:
    """`Spec.initial_carry` of a projected layer whose rules carry `carries` (B, H) arrays: h
    (B, H) zeros, or the tuple of them."""

    def initial_carry(options: Any, batch: int, features: int, hidden_size: int) -> Any:
        del options, features
        h = jnp.zeros((batch, hidden_size), jnp.float32)
        return h if carries == 1 else (h,) * carries

    return initial_carry
