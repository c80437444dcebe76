"""Recurrent cells: one direction of one recurrent layer run over a whole sequence.

Every cell maps inputs (B, T, F) to ``(outputs (B, T, H), final_carry)`` and holds

    w_ih (F, G*H), w_hh (H, G*H), b_ih (G*H,), b_hh (G*H,)

with the G gate blocks along the last axis in PyTorch order (LSTM i, f, g, o; GRU r, z, n),
so ``w_ih.T`` is PyTorch's ``weight_ih_l0``. Writing x W for ``x @ W`` (row vectors), the
equations are exactly those of ``torch.nn.RNN`` / ``LSTM`` / ``GRU``.

Each cell's step equations live in a rules object: the forward step and its hand-derived
backward, run by :func:`seqbench.models.fused_scan.fused_scan` (input projection inside
the step, one matmul per step each way, weight gradients as one matmul over all steps). With
``remat=True`` (long sequences) the same forward step is differentiated by autodiff under
``jax.checkpoint``, so memory holds the carries only, O(T B H), instead of O(T B G H) gate
activations. With ``seq_lengths``, steps t >= length leave the carry unchanged and output
zeros; ``reverse=True`` runs each row's valid prefix backwards.
"""

import dataclasses
import math
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqbench.models.fused_scan import fused_scan
from seqbench.models.scan import length_mask, masked_scan

_ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


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


def identity_init(key, shape, dtype=jnp.float32):
    """Identity recurrent kernel (IRNN, Le et al. 2015). (H, H)."""
    del key
    return jnp.eye(shape[0], shape[1], dtype=dtype)


@dataclasses.dataclass(frozen=True)
class ElmanRules:
    """h' = act(xp + h w_hh + b_hh). Carry (h,); no residual (h' itself gives act')."""

    activation: str = "tanh"

    def forward(self, w_hh, b_hh, carry, xp):
        (h,) = carry
        return (_ACTIVATIONS[self.activation](xp + h @ w_hh + b_hh),), ()

    def backward(self, residual, prev, new, d_new):
        (h,), (d_h,) = new, d_new
        if self.activation == "tanh":
            d_pre = d_h * (1.0 - h * h)
        else:
            d_pre = jnp.where(h > 0, d_h, 0.0)
        return (None,), d_pre, None


@dataclasses.dataclass(frozen=True)
class LSTMRules:
    """PyTorch LSTM step. Carry (h, c); residual s (B, 4H) = σ of the gate blocks, with the g
    block holding σ(2 a_g) so that g = 2 s_g - 1 (one sigmoid over all blocks, one fused pass)."""

    def forward(self, w_hh, b_hh, carry, xp):
        h, c = carry
        hidden = h.shape[-1]
        scale = jnp.ones(4 * hidden, xp.dtype).at[2 * hidden : 3 * hidden].set(2.0)
        s = jax.nn.sigmoid((xp + h @ w_hh + b_hh) * scale)
        i, f, g2, o = jnp.split(s, 4, axis=-1)
        c = f * c + i * (2.0 * g2 - 1.0)
        return (o * jnp.tanh(c), c), s

    def backward(self, s, prev, new, d_new):
        (_, c_prev), (_, c), (d_h, d_c) = prev, new, d_new
        i, f, g2, o = jnp.split(s, 4, axis=-1)
        g = 2.0 * g2 - 1.0
        tanh_c = jnp.tanh(c)
        d_c = d_c + d_h * o * (1.0 - tanh_c * tanh_c)
        d_pre = jnp.concatenate(
            [
                d_c * g * i * (1.0 - i),
                d_c * c_prev * f * (1.0 - f),
                d_c * i * (1.0 - g * g),
                d_h * tanh_c * o * (1.0 - o),
            ],
            axis=-1,
        )
        return (None, d_c * f), d_pre, None


@dataclasses.dataclass(frozen=True)
class GRURules:
    """PyTorch GRU step. Carry (h,); residual (r|z (B, 2H), n (B, H), h_n (B, H))."""

    def forward(self, w_hh, b_hh, carry, xp):
        (h,) = carry
        hidden = h.shape[-1]
        hh = h @ w_hh + b_hh
        rz = jax.nn.sigmoid(xp[:, : 2 * hidden] + hh[:, : 2 * hidden])
        r, z = jnp.split(rz, 2, axis=-1)
        h_n = hh[:, 2 * hidden :]
        n = jnp.tanh(xp[:, 2 * hidden :] + r * h_n)
        return (n + z * (h - n),), (rz, n, h_n)

    def backward(self, residual, prev, new, d_new):
        (rz, n, h_n), (h_prev,), (d_h,) = residual, prev, d_new
        r, z = jnp.split(rz, 2, axis=-1)
        d_n = d_h * (1.0 - z) * (1.0 - n * n)
        d_r = d_n * h_n * r * (1.0 - r)
        d_z = d_h * (h_prev - n) * z * (1.0 - z)
        d_pre = jnp.concatenate([d_r, d_z, d_n * r], axis=-1)
        d_xp = jnp.concatenate([d_r, d_z, d_n], axis=-1)
        return (d_h * z,), d_pre, d_xp


class _RecurrentLayer(nn.Module):
    """Shared parameter declaration and masked scan; subclasses define the step."""

    hidden_size: int
    recurrent_init: str = "orthogonal"
    remat: bool = False

    gates: ClassVar[int] = 1
    recurrent_inits: ClassVar[tuple[str, ...]] = ("orthogonal",)

    def __post_init__(self):
        if self.hidden_size < 1:
            raise ValueError(f"hidden_size must be >= 1, got {self.hidden_size}")
        if self.recurrent_init not in self.recurrent_inits:
            raise ValueError(
                f"{type(self).__name__}: unknown recurrent_init {self.recurrent_init!r}; "
                f"allowed: {list(self.recurrent_inits)}"
            )
        super().__post_init__()

    def _recurrent_kernel_init(self) -> nn.initializers.Initializer:
        if self.recurrent_init == "identity":
            return identity_init
        return orthogonal_blocks_init(self.gates)

    def _bias_ih_init(self) -> nn.initializers.Initializer:
        return nn.initializers.zeros_init()

    def _rules(self):
        raise NotImplementedError

    def _initial_carry(self, batch: int, dtype) -> tuple[jax.Array, ...]:
        return (jnp.zeros((batch, self.hidden_size), dtype),)

    @nn.compact
    def __call__(
        self,
        inputs,
        seq_lengths=None,
        reverse: bool = False,
        initial_carry=None,
        hidden_offsets=None,
    ):
        """inputs (B, T, F), seq_lengths (B,) int or None -> (outputs (B, T, H), final_carry).

        final_carry is h (B, H), or (h, c) for the LSTM; `initial_carry` (same form) starts the
        recurrence there instead of at zeros (truncated backpropagation through time).
        `hidden_offsets` (B, T, H) is added to the hidden state h_t right after step t computes
        it, before h_t feeds step t+1 and the output: at zero offsets the outputs are unchanged,
        and the gradient of a loss with respect to the offsets is its gradient with respect to
        each h_t along every path (see :mod:`seqbench.train.gradient_flow`).
        """
        f, h, gh = inputs.shape[-1], self.hidden_size, self.gates * self.hidden_size
        w_ih = self.param("w_ih", glorot_blocks_init(self.gates), (f, gh), jnp.float32)
        w_hh = self.param("w_hh", self._recurrent_kernel_init(), (h, gh), jnp.float32)
        b_ih = self.param("b_ih", self._bias_ih_init(), (gh,), jnp.float32)
        b_hh = self.param("b_hh", nn.initializers.zeros_init(), (gh,), jnp.float32)
        if initial_carry is None:
            carry = self._initial_carry(inputs.shape[0], jnp.float32)
        else:
            carry = tuple(initial_carry) if isinstance(initial_carry, tuple) else (initial_carry,)
        rules = self._rules()
        if not self.remat and hidden_offsets is None:
            mask = None if seq_lengths is None else length_mask(seq_lengths, inputs.shape[1]).T
            weights = (w_ih, b_ih, w_hh, b_hh)
            xs = jnp.swapaxes(inputs, 0, 1)
            final, ys = fused_scan(rules, weights, carry, xs, mask, reverse)
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


class SimpleRNN(_RecurrentLayer):
    """Elman RNN (``torch.nn.RNN``): h' = act(x W_ih + b_ih + h W_hh + b_hh).

    act is tanh (default) or relu. G = 1. Carry: h (B, H).
    ``recurrent_init``: "orthogonal" or "identity" (IRNN, Le et al. 2015).
    """

    activation: str = "tanh"

    recurrent_inits: ClassVar[tuple[str, ...]] = ("orthogonal", "identity")

    def __post_init__(self):
        if self.activation not in _ACTIVATIONS:
            raise ValueError(
                f"SimpleRNN: unknown activation {self.activation!r}; allowed: {list(_ACTIVATIONS)}"
            )
        super().__post_init__()

    def _rules(self):
        return ElmanRules(self.activation)


class LSTM(_RecurrentLayer):
    """LSTM (``torch.nn.LSTM``), G = 4 blocks i, f, g, o of a = x W_ih + b_ih + h W_hh + b_hh:

        i = σ(a_i), f = σ(a_f), g = tanh(a_g), o = σ(a_o)
        c' = f * c + i * g
        h' = o * tanh(c')

    Carry: (h, c), each (B, H). ``forget_bias`` initialises the forget block of b_ih.
    """

    forget_bias: float = 1.0

    gates: ClassVar[int] = 4

    def _bias_ih_init(self) -> nn.initializers.Initializer:
        h, forget_bias = self.hidden_size, self.forget_bias

        def init(key, shape, dtype=jnp.float32):
            del key
            return jnp.zeros(shape, dtype).at[h : 2 * h].set(forget_bias)

        return init

    def _rules(self):
        return LSTMRules()

    def _initial_carry(self, batch: int, dtype):
        zeros = jnp.zeros((batch, self.hidden_size), dtype)
        return zeros, zeros


class GRU(_RecurrentLayer):
    """GRU (``torch.nn.GRU``), G = 3 blocks r, z, n:

        r = σ(x W_ir + b_ir + h W_hr + b_hr)
        z = σ(x W_iz + b_iz + h W_hz + b_hz)
        n = tanh(x W_in + b_in + r * (h W_hn + b_hn))
        h' = (1 - z) * n + z * h

    Carry: h (B, H).
    """

    gates: ClassVar[int] = 3

    def _rules(self):
        return GRURules()


CELLS: dict[str, type[nn.Module]] = {"simple_rnn": SimpleRNN, "lstm": LSTM, "gru": GRU}
GATES: dict[str, int] = {"simple_rnn": 1, "lstm": 4, "gru": 3}
