"""Long short-term memory: S. Hochreiter and J. Schmidhuber, "Long short-term memory", Neural
Computation 9 (1997), with the forget gate of F. A. Gers, J. Schmidhuber and F. Cummins,
"Learning to forget: continual prediction with LSTM", Neural Computation 12 (2000).

Follows PyTorch's ``torch.nn.LSTM`` (https://pytorch.org/docs/stable/generated/torch.nn.LSTM.html):
G = 4 gate blocks i, f, g, o (in that order) of a = x W_ih + b_ih + h W_hh + b_hh,

    i = σ(a_i), f = σ(a_f), g = tanh(a_g), o = σ(a_o)
    c' = f * c + i * g
    h' = o * tanh(c')

Shapes: B = batch, H = hidden size. Carry: (h, c), each (B, H). The forget block of b_ih starts at
`forget_bias` (Gers et al. 2000; Jozefowicz et al. 2015 recommend 1.0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqbench.config import require
from seqbench.models.architectures.base import CellOptions, Spec
from seqbench.models.architectures.projected import (
    ProjectedLayer,
    projected_step_flops,
    zero_carry,
)


@dataclass
class LSTMOptions(CellOptions):
    """`model.cell` of the LSTM."""

    forget_bias: float = 1.0  # initial forget-gate bias (the f block of b_ih; b_hh starts at 0)

    def __post_init__(self) -> None:
        require(
            math.isfinite(self.forget_bias),
            "model.cell.forget_bias",
            f"must be a finite number, got {self.forget_bias}",
        )


@dataclass(frozen=True)
class LSTMRules:
    """PyTorch LSTM step. Carry (h, c); residual s (B, 4H) = σ of the gate blocks, with the g
    block holding σ(2 a_g) so that g = 2 s_g - 1 (one sigmoid over all blocks, one fused pass)."""

    gates: ClassVar[int] = 4
    carries: ClassVar[int] = 2

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


def forget_bias_init(forget_bias: float) -> nn.initializers.Initializer:
    """b_ih (4H,): zeros with the forget block [H, 2H) at `forget_bias`."""

    def init(key, shape, dtype=jnp.float32):
        del key
        h = shape[0] // 4
        return jnp.zeros(shape, dtype).at[h : 2 * h].set(forget_bias)

    return init


def layer(
    options: LSTMOptions,
    hidden_size: int,
    *,
    remat: bool = False,
    hoist_projection: bool = False,
    name: str | None = None,
) -> ProjectedLayer:
    """The LSTM layer: inputs (B, T, F) -> (outputs (B, T, H), (h, c) each (B, H))."""
    return ProjectedLayer(
        hidden_size=hidden_size,
        rules=LSTMRules(),
        bias_ih_init=forget_bias_init(options.forget_bias),
        remat=remat,
        hoist_projection=hoist_projection,
        name=name,
    )


SPEC = Spec(
    name="lstm",
    display_name="LSTM",
    options=LSTMOptions,
    layer=layer,
    hoistable=True,
    initial_carry=zero_carry(LSTMRules.carries),
    state_size=lambda options, features, hidden: LSTMRules.carries * hidden,
    step_flops=projected_step_flops(LSTMRules.gates),
    torch_module="LSTM",
    flax_peer=lambda hidden: nn.LSTMCell(features=hidden),
)
