"""Minimal LSTM (minLSTM): L. Feng, F. Tung, M. O. Ahmed, Y. Bengio and H. Hajimirsadeghi, "Were
RNNs all we needed?", arXiv:2410.01201, 2024.

Follows BorealisAI/minRNNs ``models/minRNNs.py`` (class ``minLSTM``), stacked as in its
``models/model.py`` (a residual block). The gates read x_t only, so the recurrence is linear in h:

    [k_h | k_f | k_i] = x_t W + b     W (F, 3H), b (3H,): blocks h~, f, i in the reference's order
    f_t = σ(k_f), i_t = σ(k_i)         forget and input gates
    f'_t = f_t / (f_t + i_t), i'_t = i_t / (f_t + i_t)     (normalize_gates; else f' = f, i' = i)
    h~_t = g(k_h)                      g(x) = x + 0.5 for x >= 0, σ(x) otherwise (positive)
    h_t = f'_t h_{t-1} + i'_t h~_t

The paper's parallel form (``scan="log"``, the default) runs h_t = a_t h_{t-1} + b_t in log space
with a_t = f'_t, b_t = i'_t h~_t; with d = softplus(-k_f) - softplus(-k_i) = log(i_t / f_t),

    log f'_t = -softplus(d),  log i'_t = -softplus(-d)
    (unnormalised: log f_t = -softplus(-k_f), log i_t = -softplus(-k_i))
    log b_t = log i'_t + log g(k_h)

and the linear scans take a_t = exp(log a_t), b_t = exp(log b_t); both through
`seqbench.models.architectures.mingru.min_rnn_recurrence`, which also adds the hidden offsets.

Shapes: B = batch, T = time, F = input features, H = hidden size. Carry: h (B, H). Parameters:
kernel (F, 3H), bias (3H,), PyTorch ``nn.Linear``'s U(-1/sqrt(F), 1/sqrt(F)) as the reference's
``to_hidden_and_gate`` (``kernel.T`` is its weight), with `forget_bias` added to the f block of
the bias (the reference's ``forget_bias_init_scale``).

Differences from the reference, as for minGRU (see `mingru`): no output projection ``to_out`` (the
outputs are the states h_t), a carry h of any sign instead of (h, log h), no learned initial
state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from seqbench.config import require
from seqbench.models import linear_scan
from seqbench.models.architectures.base import CellOptions, Spec
from seqbench.models.architectures.mingru import (
    SCANS,
    MinRNNLayer,
    check_scan_options,
    g,
    log_g,
    min_rnn_step_flops,
    zero_carry,
)


@dataclass
class MinLSTMOptions(CellOptions):
    """`model.cell` of minLSTM."""

    # how the linear recurrence runs: log (the paper's log-space parallel form), sequential,
    # associative or chunked (same states, different speed and precision)
    scan: str = "log"
    chunk_size: int = linear_scan.DEFAULT_CHUNK  # steps per chunk of the chunked and log scans
    # f' = f / (f + i), i' = i / (f + i): the paper's time-independent scaling (the reference's
    # use_coeff_norm); false: f and i as they are
    normalize_gates: bool = True
    # added to the forget block of the bias at initialisation (the reference's
    # forget_bias_init_scale; 0: PyTorch's nn.Linear bias as it is)
    forget_bias: float = 0.0

    def __post_init__(self) -> None:
        check_scan_options(self.scan, self.chunk_size)
        require(
            isinstance(self.normalize_gates, bool),
            "model.cell.normalize_gates",
            f"must be true or false, got {self.normalize_gates!r}",
        )
        require(
            math.isfinite(self.forget_bias),
            "model.cell.forget_bias",
            f"must be a finite number, got {self.forget_bias}",
        )


@dataclass(frozen=True)
class MinLSTMRules:
    """minLSTM's coefficients from the projected input [k_h | k_f | k_i] (B, T, 3H)."""

    normalize_gates: bool = True
    forget_bias: float = 0.0

    gates: ClassVar[int] = 3

    def bias_shift(self, hidden: int) -> jax.Array:
        """(3H,) added to the bias after its uniform draw: `forget_bias` on the f block."""
        return (
            jnp.zeros(self.gates * hidden, jnp.float32)
            .at[hidden : 2 * hidden]
            .set(self.forget_bias)
        )

    def coefficients(self, projected: jax.Array) -> tuple[jax.Array, jax.Array]:
        """projected (..., 3H) -> (a = f', b = i' h~), each (..., H)."""
        k_h, k_f, k_i = jnp.split(projected, 3, axis=-1)
        if self.normalize_gates:
            forget = jax.nn.sigmoid(jax.nn.softplus(-k_i) - jax.nn.softplus(-k_f))  # f / (f + i)
            return forget, (1.0 - forget) * g(k_h)
        return jax.nn.sigmoid(k_f), jax.nn.sigmoid(k_i) * g(k_h)

    def log_coefficients(self, projected: jax.Array) -> tuple[jax.Array, jax.Array]:
        """projected (..., 3H) -> (log f', log(i' h~)), each (..., H)."""
        k_h, k_f, k_i = jnp.split(projected, 3, axis=-1)
        if self.normalize_gates:
            log_ratio = jax.nn.softplus(-k_f) - jax.nn.softplus(-k_i)  # log(i / f)
            log_f, log_i = -jax.nn.softplus(log_ratio), -jax.nn.softplus(-log_ratio)
        else:
            log_f, log_i = -jax.nn.softplus(-k_f), -jax.nn.softplus(-k_i)
        return log_f, log_i + log_g(k_h)


def layer(
    options: MinLSTMOptions, hidden_size: int, *, remat: bool = False, name: str | None = None
) -> MinRNNLayer:
    """The minLSTM layer: inputs (B, T, F) -> (outputs (B, T, H), h (B, H))."""
    return MinRNNLayer(
        hidden_size=hidden_size,
        rules=MinLSTMRules(options.normalize_gates, options.forget_bias),
        scan=options.scan,
        chunk_size=options.chunk_size,
        remat=remat,
        name=name,
    )


def label(options: Mapping[str, Any]) -> str:
    """minlstm; minlstm (unnormalised) without the gate normalisation."""
    return "minlstm" if options.get("normalize_gates", True) else "minlstm (unnormalised)"


SPEC = Spec(
    name="minlstm",
    display_name="minLSTM",
    options=MinLSTMOptions,
    layer=layer,
    initial_carry=zero_carry,
    state_size=lambda options, features, hidden: hidden,
    step_flops=min_rnn_step_flops(MinLSTMRules.gates),
    label=label,
    probe_width=lambda options, features, hidden: hidden,
    block="residual",
    scans=SCANS,
)
