"""Gated recurrent unit: K. Cho, B. van Merriënboer, C. Gulcehre, D. Bahdanau, F. Bougares,
H. Schwenk and Y. Bengio, "Learning phrase representations using RNN encoder-decoder for
statistical machine translation", EMNLP 2014.

Follows PyTorch's ``torch.nn.GRU`` (https://pytorch.org/docs/stable/generated/torch.nn.GRU.html),
G = 3 gate blocks r, z, n (in that order), with the reset gate applied after the recurrent
projection (as cuDNN; Cho et al. apply it before):

    r = σ(x W_ir + b_ir + h W_hr + b_hr)
    z = σ(x W_iz + b_iz + h W_hz + b_hz)
    n = tanh(x W_in + b_in + r * (h W_hn + b_hn))
    h' = (1 - z) * n + z * h

Shapes: B = batch, H = hidden size. Carry: h (B, H). No options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqbench.models.architectures.base import CellOptions, Spec
from seqbench.models.architectures.projected import (
    ProjectedLayer,
    projected_step_flops,
    zero_carry,
)


@dataclass
class GRUOptions(CellOptions):
    """`model.cell` of the GRU: none (PyTorch's equations and seqbench's initialisers)."""


@dataclass(frozen=True)
class GRURules:
    """PyTorch GRU step. Carry (h,); residual (r|z (B, 2H), n (B, H), h_n (B, H))."""

    gates: ClassVar[int] = 3
    carries: ClassVar[int] = 1

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


def layer(
    options: GRUOptions,
    hidden_size: int,
    *,
    remat: bool = False,
    hoist_projection: bool = False,
    name: str | None = None,
) -> ProjectedLayer:
    """The GRU layer: inputs (B, T, F) -> (outputs (B, T, H), h (B, H))."""
    del options
    return ProjectedLayer(
        hidden_size=hidden_size,
        rules=GRURules(),
        remat=remat,
        hoist_projection=hoist_projection,
        name=name,
    )


SPEC = Spec(
    name="gru",
    display_name="GRU",
    options=GRUOptions,
    layer=layer,
    hoistable=True,
    initial_carry=zero_carry(GRURules.carries),
    state_size=lambda options, features, hidden: hidden,
    step_flops=projected_step_flops(GRURules.gates),
    torch_module="GRU",
    flax_peer=lambda hidden: nn.GRUCell(features=hidden),
)
