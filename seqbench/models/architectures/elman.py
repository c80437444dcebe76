"""Elman RNN ("simple RNN"): J. L. Elman, "Finding structure in time", Cognitive Science 14 (1990);
with relu and an identity recurrent kernel it is the IRNN of Q. V. Le, N. Jaitly and G. E. Hinton,
"A simple way to initialize recurrent networks of rectified linear units" (arXiv:1504.00941, 2015).

Follows PyTorch's ``torch.nn.RNN`` (https://pytorch.org/docs/stable/generated/torch.nn.RNN.html),
``nonlinearity`` tanh or relu, one gate block (G = 1):

    h' = act(x W_ih + b_ih + h W_hh + b_hh)

Shapes: B = batch, H = hidden size. Carry: h (B, H).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqbench.config import choice
from seqbench.models.architectures.base import CellOptions, Spec
from seqbench.models.architectures.projected import (
    ProjectedLayer,
    orthogonal_blocks_init,
    projected_step_flops,
    zero_carry,
)

_ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}
RECURRENT_INITS = ("orthogonal", "identity")


@dataclass
class ElmanOptions(CellOptions):
    """`model.cell` of the Elman RNN."""

    activation: str = "tanh"  # act: tanh or relu (torch.nn.RNN's `nonlinearity`)
    recurrent_init: str = "orthogonal"  # w_hh at initialisation: orthogonal, or identity (IRNN)

    def __post_init__(self) -> None:
        choice(self.activation, "model.cell.activation", tuple(_ACTIVATIONS))
        choice(self.recurrent_init, "model.cell.recurrent_init", RECURRENT_INITS)


@dataclass(frozen=True)
class ElmanRules:
    """h' = act(xp + h w_hh + b_hh). Carry (h,); no residual (h' itself gives act')."""

    activation: str = "tanh"

    gates: ClassVar[int] = 1
    carries: ClassVar[int] = 1

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


def identity_init(key, shape, dtype=jnp.float32):
    """Identity recurrent kernel (IRNN, Le et al. 2015). (H, H)."""
    del key
    return jnp.eye(shape[0], shape[1], dtype=dtype)


def layer(
    options: ElmanOptions,
    hidden_size: int,
    *,
    remat: bool = False,
    hoist_projection: bool = False,
    name: str | None = None,
) -> ProjectedLayer:
    """The Elman layer: inputs (B, T, F) -> (outputs (B, T, H), h (B, H))."""
    recurrent = identity_init if options.recurrent_init == "identity" else orthogonal_blocks_init(1)
    return ProjectedLayer(
        hidden_size=hidden_size,
        rules=ElmanRules(options.activation),
        recurrent_init=recurrent,
        remat=remat,
        hoist_projection=hoist_projection,
        name=name,
    )


def label(options: Mapping[str, Any]) -> str:
    """simple_rnn; simple_rnn (relu); simple_rnn (identity); irnn (relu with identity init)."""
    relu = options.get("activation") == "relu"
    if options.get("recurrent_init") == "identity":
        return "irnn" if relu else "simple_rnn (identity)"
    return "simple_rnn (relu)" if relu else "simple_rnn"


SPEC = Spec(
    name="simple_rnn",
    display_name="RNN",
    options=ElmanOptions,
    layer=layer,
    hoistable=True,
    initial_carry=zero_carry(1),
    state_size=lambda options, features, hidden: hidden,
    step_flops=projected_step_flops(ElmanRules.gates),
    torch_module="RNN",
    flax_peer=lambda hidden: nn.SimpleCell(features=hidden),
    label=label,
)
