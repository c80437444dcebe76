"""Minimal GRU (minGRU): L. Feng, F. Tung, M. O. Ahmed, Y. Bengio and H. Hajimirsadeghi, "Were
RNNs all we needed?", arXiv:2410.01201, 2024.

Follows BorealisAI/minRNNs ``models/minRNNs.py`` (class ``minGRU``), stacked as in its
``models/model.py`` (norm, minRNN, skip; norm, feed-forward, skip: a residual block). The gates read
x_t only, never h_{t-1}, so the recurrence is linear in h:

    [k_h | k_z] = x_t W + b           W (F, 2H), b (2H,): blocks h~, z in the reference's order
    z_t = σ(k_z)                      update gate
    h~_t = g(k_h)                     g(x) = x + 0.5 for x >= 0, σ(x) otherwise (positive)
    h_t = (1 - z_t) h_{t-1} + z_t h~_t

that is h_t = a_t h_{t-1} + b_t with a_t = 1 - z_t and b_t = z_t h~_t > 0. The paper's parallel
form (``scan="log"``, the default) runs it in log space with
`seqbench.models.linear_scan.log_linear_recurrence`:

    log a_t = log(1 - z_t) = -softplus(k_z)
    log b_t = log z_t + log g(k_h) = -softplus(-k_z) + log g(k_h)

The linear scans ("sequential", "associative", "chunked") take a_t = σ(-k_z) and b_t = σ(k_z) g(k_h)
(the same numbers, fewer transcendental functions) to
`seqbench.models.linear_scan.linear_recurrence`.

Shapes: B = batch, T = time, F = input features, H = hidden size, G = gate blocks (2 here, 3 for
minLSTM). Carry: h (B, H). Parameters: kernel (F, G H) and bias (G H,), PyTorch ``nn.Linear``'s
initialisation U(-1/sqrt(F), 1/sqrt(F)) for both, as the reference's ``to_hidden_and_gate``
(``kernel.T`` is its weight).

Differences from the reference:

- no output projection: the reference ends with ``to_out = Linear(H, dim)``; here the layer's
  outputs are the states h_t (B, T, H), as lucidrains/minGRU-pytorch at expansion factor 1 (the
  residual block's MLP follows the layer anyway), and the input width F plays the reference's
  ``dim`` with H its ``dim * expansion_factor``;
- the carry is h itself, of any sign: the log form takes the initial state as its own term, while
  the reference carries log h and so needs h > 0;
- no learned initial state (the reference's ``use_init_hidden_state``): the carry starts at zeros
  unless `initial_carry` is given.

Hidden offsets o_t (the gradient-flow probe, (B, T, H)) enter as h_t = a_t h_{t-1} + b_t + o_t. The
linear scans add them to b_t; the log form, which needs b_t > 0, adds the states of a second linear
recurrence with the same a_t and b_t = o_t (the recurrence is linear in b), see
:func:`min_rnn_recurrence`, which minLSTM shares.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqbench.models import linear_scan
from seqbench.models.architectures.base import CellOptions, Spec
from seqbench.models.scan import length_mask

#: `model.cell.scan` of minGRU and minLSTM: the paper's log-space form first, then the linear scans
SCANS = ("log", *linear_scan.SCANS)


def check_scan_options(scan: str, chunk_size: int) -> None:
    """ConfigError naming `model.cell.scan` / `model.cell.chunk_size` for bad values."""
    linear_scan.check_scan_options(scan, chunk_size, SCANS)


@dataclass
class MinGRUOptions(CellOptions):
    """`model.cell` of minGRU."""

    # how the linear recurrence runs: log (the paper's log-space parallel form), sequential,
    # associative or chunked (same states, different speed and precision)
    scan: str = "log"
    chunk_size: int = linear_scan.DEFAULT_CHUNK  # steps per chunk of the chunked and log scans

    def __post_init__(self) -> None:
        check_scan_options(self.scan, self.chunk_size)


def g(x: jax.Array) -> jax.Array:
    """g(x) = x + 0.5 for x >= 0, σ(x) otherwise (the paper's positive activation)."""
    return jnp.where(x >= 0, jax.nn.relu(x) + 0.5, jax.nn.sigmoid(x))


def log_g(x: jax.Array) -> jax.Array:
    """log g(x), g(x) = x + 0.5 for x >= 0 and σ(x) otherwise (the paper's positive activation)."""
    return jnp.where(x >= 0, jnp.log(jax.nn.relu(x) + 0.5), -jax.nn.softplus(-x))


def min_rnn_recurrence(
    rules: Any,
    projected: jax.Array,
    initial: jax.Array | None,
    *,
    scan: str,
    chunk_size: int = linear_scan.DEFAULT_CHUNK,
    seq_lengths: jax.Array | None = None,
    reverse: bool = False,
    hidden_offsets: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """h_t = a_t h_{t-1} + b_t + o_t with a_t, b_t from `projected` by `rules` and
    o_t = hidden_offsets.

    Args:
        rules: `MinGRURules` or `minlstm.MinLSTMRules`.
        projected: (B, T, G H) the input projection x W + b.
        initial: (B, H) h_{-1}, any sign, or None for zeros.
        scan: one of `SCANS`; "log" runs `rules.log_coefficients` through
            `log_linear_recurrence`, the others `rules.coefficients` through `linear_recurrence`.
        chunk_size: steps per chunk of the chunked and log scans (the log form's error grows with
            the steps it spans: see `log_linear_recurrence`).
        seq_lengths: (B,) int or None; steps t >= seq_lengths[b] leave row b's state unchanged.
        reverse: run each row's valid prefix from its last valid step down to step 0.
        hidden_offsets: (B, T, H) or None.

    Returns:
        (outputs (B, T, H): h_t, zeros at padded steps; final (B, H): h after each row's last
        valid step).
    """
    order = {"seq_lengths": seq_lengths, "reverse": reverse}
    if scan == "log":
        log_a, log_b = rules.log_coefficients(projected)
        states, final = linear_scan.log_linear_recurrence(
            log_a, log_b, initial, chunk_size=chunk_size, **order
        )
        if hidden_offsets is not None:
            # linear in b: the offsets' own states, from a zero start, add to those of b
            offset_states, offset_final = linear_scan.linear_recurrence(
                jnp.exp(log_a), hidden_offsets, None, scan="associative", **order
            )
            states, final = states + offset_states, final + offset_final
    else:
        a, b = rules.coefficients(projected)
        if hidden_offsets is not None:
            b = b + hidden_offsets
        states, final = linear_scan.linear_recurrence(
            a, b, initial, scan=scan, chunk_size=chunk_size, **order
        )
    if seq_lengths is not None:
        valid = length_mask(seq_lengths, states.shape[1])[..., None]
        states = jnp.where(valid, states, jnp.zeros((), states.dtype))
    return states, final


@dataclass(frozen=True)
class MinGRURules:
    """minGRU's coefficients from the projected input [k_h | k_z] (B, T, 2H)."""

    gates: ClassVar[int] = 2

    def bias_shift(self, hidden: int) -> jax.Array:
        """(2H,) added to the bias after its uniform draw: none."""
        return jnp.zeros(self.gates * hidden, jnp.float32)

    def coefficients(self, projected: jax.Array) -> tuple[jax.Array, jax.Array]:
        """projected (..., 2H) -> (a = 1 - z, b = z h~), each (..., H)."""
        k_h, k_z = jnp.split(projected, 2, axis=-1)
        return jax.nn.sigmoid(-k_z), jax.nn.sigmoid(k_z) * g(k_h)

    def log_coefficients(self, projected: jax.Array) -> tuple[jax.Array, jax.Array]:
        """projected (..., 2H) -> (log(1 - z), log(z h~)), each (..., H)."""
        k_h, k_z = jnp.split(projected, 2, axis=-1)
        return -jax.nn.softplus(k_z), -jax.nn.softplus(-k_z) + log_g(k_h)


class MinRNNLayer(nn.Module):
    """One direction of a minGRU or minLSTM layer (a `SequenceLayer`): inputs (B, T, F) ->
    (outputs (B, T, H), h (B, H)).

    `rules` (`MinGRURules`, `minlstm.MinLSTMRules`) turn the projection x W + b (B, T, G H) into
    log a_t, log b_t; :func:`min_rnn_recurrence` runs h_t = a_t h_{t-1} + b_t with `scan`.
    Parameters: kernel (F, G H), bias (G H,), both U(-1/sqrt(F), 1/sqrt(F)) (PyTorch's
    ``nn.Linear``), the bias then shifted by ``rules.bias_shift``. No dropout inside.
    """

    hidden_size: int
    rules: Any  # MinGRURules or minlstm.MinLSTMRules
    scan: str = "log"
    chunk_size: int = linear_scan.DEFAULT_CHUNK
    remat: bool = False  # recompute the projection and gates in the backward pass

    def __post_init__(self):
        if self.hidden_size < 1:
            raise ValueError(f"hidden_size must be >= 1, got {self.hidden_size}")
        if self.scan not in SCANS:
            raise ValueError(f"scan must be one of {', '.join(SCANS)}, got {self.scan!r}")
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
        """inputs (B, T, F) -> (outputs (B, T, H), final h (B, H)); see `SequenceLayer`."""
        del deterministic  # no dropout inside
        features, width = inputs.shape[-1], self.rules.gates * self.hidden_size
        bound = 1.0 / math.sqrt(features)
        shift = self.rules.bias_shift(self.hidden_size)
        kernel = self.param("kernel", _uniform(bound), (features, width), jnp.float32)
        bias = self.param("bias", lambda key, shape: _uniform(bound)(key, shape) + shift, (width,))

        rules, scan, chunk_size = self.rules, self.scan, self.chunk_size

        def run(kernel, bias, inputs, seq_lengths, initial, offsets):
            projected = inputs.astype(jnp.float32) @ kernel + bias
            return min_rnn_recurrence(
                rules,
                projected,
                initial,
                scan=scan,
                chunk_size=chunk_size,
                seq_lengths=seq_lengths,
                reverse=reverse,
                hidden_offsets=offsets,
            )

        if self.remat:
            # keep only the inputs; the (B, T, G H) projection and gates are recomputed
            run = jax.checkpoint(run)
        return run(kernel, bias, inputs, seq_lengths, initial_carry, hidden_offsets)


def _uniform(bound: float) -> nn.initializers.Initializer:
    """U(-bound, bound)."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def zero_carry(options: Any, batch: int, features: int, hidden_size: int) -> jax.Array:
    """`Spec.initial_carry`: h (B, H) zeros."""
    del options, features
    return jnp.zeros((batch, hidden_size), jnp.float32)


def min_rnn_step_flops(gates: int) -> Callable[[Any, int, int, int, int], float]:
    """`Spec.step_flops`: the projection's matmul 2 B T F G H (the scan is element-wise)."""

    def flops(options: Any, batch: int, length: int, features: int, hidden: int) -> float:
        del options
        return 2.0 * batch * length * features * gates * hidden

    return flops


def layer(
    options: MinGRUOptions, hidden_size: int, *, remat: bool = False, name: str | None = None
) -> MinRNNLayer:
    """The minGRU layer: inputs (B, T, F) -> (outputs (B, T, H), h (B, H))."""
    return MinRNNLayer(
        hidden_size=hidden_size,
        rules=MinGRURules(),
        scan=options.scan,
        chunk_size=options.chunk_size,
        remat=remat,
        name=name,
    )


SPEC = Spec(
    name="mingru",
    display_name="minGRU",
    options=MinGRUOptions,
    layer=layer,
    initial_carry=zero_carry,
    state_size=lambda options, features, hidden: hidden,
    step_flops=min_rnn_step_flops(MinGRURules.gates),
    probe_width=lambda options, features, hidden: hidden,
    block="residual",
    scans=SCANS,
)
