"""The residual block: pre-norm, sequence layer, skip; pre-norm, gated MLP, skip.

Shapes: B = batch, T = time, H = model width (the hidden size; the block keeps it).

Follows Griffin's residual block (De et al. 2024, google-deepmind/recurrentgemma
`recurrentgemma/jax/modules.py`, `ResidualBlock` and `MLPBlock`): RMS normalisation before each
branch, the temporal-mixing layer (any registered architecture's layer), a skip connection, then
an MLP whose up-projection is gated, GeLU(x W_gate) * (x W_up), projected back to H, and a second
skip. Dropout (rng "dropout") acts on each branch's output before its skip.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from seqbench.models.architectures.base import CellOptions, Spec


class GatedMLP(nn.Module):
    """x (B, T, H) -> Dense_down(GeLU(Dense_gate(x)) * Dense_up(x)) (B, T, H), inner width
    `inner` (Griffin: 3 H)."""

    inner: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width, inner = x.shape[-1], self.inner
        gate = nn.gelu(nn.Dense(inner, name="gate")(x), approximate=True)
        return nn.Dense(width, name="down")(gate * nn.Dense(inner, name="up")(x))


class ResidualBlock(nn.Module):
    """One residual block around one direction of a sequence layer.

    `architecture`, `options`: the layer's `Spec` and options; the layer maps H -> H.
    `remat`, `hoist_projection`: as `Spec.build_layer`'s. `mlp_width`: the gated MLP's inner width.
    Submodules: `norm_layer`, `layer`, `norm_mlp`, `mlp`.
    """

    architecture: Spec
    options: CellOptions
    remat: bool = False
    hoist_projection: bool = False
    mlp_width: int = 1
    dropout: float = 0.0

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        seq_lengths: jax.Array | None = None,
        *,
        initial_carry: Any = None,
        hidden_offsets: jax.Array | None = None,
        deterministic: bool = True,
    ) -> tuple[jax.Array, Any]:
        """x (B, T, H) -> (outputs (B, T, H), the layer's final carry)."""
        width = x.shape[-1]
        layer = self.architecture.build_layer(
            self.options,
            width,
            remat=self.remat,
            hoist_projection=self.hoist_projection,
            name="layer",
        )
        mixed, final = layer(
            nn.RMSNorm(name="norm_layer")(x),
            seq_lengths,
            initial_carry=initial_carry,
            hidden_offsets=hidden_offsets,
            deterministic=deterministic,
        )
        drop = nn.Dropout(rate=self.dropout)
        x = x + drop(mixed, deterministic=deterministic)
        mlp = GatedMLP(self.mlp_width, name="mlp")(nn.RMSNorm(name="norm_mlp")(x))
        return x + drop(mlp, deterministic=deterministic), final
