"""Temporal convolutional network: S. Bai, J. Z. Kolter and V. Koltun, "An empirical evaluation of
generic convolutional and recurrent networks for sequence modeling", arXiv:1803.01271, 2018.

Follows ``TemporalConvNet`` (with ``TemporalBlock`` and ``Chomp1d``) of the authors' code,
github.com/locuslab/TCN, file ``TCN/tcn.py``, with every level ``H`` channels wide (the per-task
scripts' ``[nhid] * levels``).

Shapes: B = batch, T = time, F = input features, H = hidden size (channels of every level),
k = `kernel_size`, n = `levels`, d_i = 2**i the dilation of level i = 0 .. n-1,
P_i = (k - 1) d_i the causal padding of level i, C_i the input width of level i (C_0 = F, else H).

One layer is n temporal blocks. Block i maps z (B, T, C_i) to

    a = dropout(relu(causal_conv(z; W1, b1, d_i)))              (B, T, H)
    u = dropout(relu(causal_conv(a; W2, b2, d_i)))              (B, T, H)
    z' = relu(u + (z if C_i == H else z D + e))                 (B, T, H)

(D (C_i, H), e (H,): the 1x1 "downsample" convolution), with the dilated causal convolution
(taps j = 0 .. k-1, the oldest first, as PyTorch's Conv1d over the input padded by P_i zeros on
the left and chomped on the right)

    causal_conv(z; W, b, d)_t = b + sum_j z_{t - (k - 1 - j) d} W[j]      (z_s = 0 for s < 0)

and PyTorch's weight normalisation (``weight_norm``, dim=0: one gain per output channel o)

    W[j, c, o] = g[o] v[j, c, o] / sqrt(sum_{j', c'} v[j', c', o]^2).

(v and g are parameters of their own: flax.linen.WeightNorm starts its scale at ones, W = v/||v||,
not at g = ||v||, and adds an epsilon under the norm.)

Parameters of block i (Flax names; PyTorch's ``weight_v`` is ``v.transpose(2, 1, 0)``):
``block_{i}/conv1/{v (k, C_i, H), g (H,), bias (H,)}``, ``block_{i}/conv2/{v (k, H, H), g, bias}``
and, when C_i != H, the 1x1 convolution ``block_{i}/downsample/{kernel (C_i, H), bias (H,)}``.

Initialisation. The reference's ``init_weights`` draws N(0, 0.01) into ``conv1.weight`` and
``conv2.weight``, but ``weight_norm`` recomputes ``weight`` from ``weight_g`` and ``weight_v``
before every forward pass, so that draw never reaches training (confirmed by the authors:
locuslab/TCN issue #1). What the reference trains from is PyTorch's Conv1d default,
v ~ U(-1/sqrt(k C_i), 1/sqrt(k C_i)), with g = ||v|| per output channel, so that W = v at first
(`conv_init="pytorch"`, the default); `conv_init="normal"` draws v ~ N(0, 0.01) instead, as
``init_weights`` was written. Biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's Conv1d
default, fan_in = k C_i, or C_i for the downsample); the downsample kernel, which has no weight
norm, ~ N(0, 0.01) as in the reference.

Receptive field: 1 + 2 (k - 1)(2**n - 1) steps (two convolutions per level).

Carry: the TCN has no recurrent state; to continue a sequence (truncated backpropagation through
time, streaming) every convolution carries the last P_i inputs it saw, oldest first, as the tuple

    (conv1 of block 0 (B, P_0, F), conv2 of block 0 (B, P_0, H),
     conv1 of block 1 (B, P_1, H), conv2 of block 1 (B, P_1, H), ...)

2n arrays in all, sum_i P_i (C_i + H) floats per example; zeros are the reference's zero
padding, so two calls chained by the carry give the outputs of one call over the joined sequence.
With `seq_lengths` a row's carry holds its last valid inputs (padded steps leave it unchanged).
`reverse=True` runs each row's valid prefix flipped in time (anti-causal), outputs flipped back.
`hidden_offsets` (B, T, F) are added to the inputs x_t: without a recurrent state, the
gradient-flow probe measures dL/dx_t. Dropout (rng stream "dropout") acts when
`deterministic=False`, as ``nn.Dropout`` in the reference's training mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqbench.config import choice, require
from seqbench.models.architectures.base import CellOptions, Spec
from seqbench.models.scan import length_mask

CONV_INITS = ("pytorch", "normal")

Carry = tuple[jax.Array, ...]


@dataclass
class TCNOptions(CellOptions):
    """`model.cell` of the TCN."""

    kernel_size: int = 2  # k: taps of each dilated causal convolution (TemporalConvNet's default)
    levels: int = 8  # n: temporal blocks per layer, block i dilated by 2**i (the scripts' --levels)
    dropout: float = 0.2  # after each ReLU inside the blocks, in training (TemporalConvNet's 0.2)
    # initial direction v of the weight-normed convolutions: "pytorch" U(+-1/sqrt(k C_in)), what the
    # reference trains with (its N(0, 0.01) draw is undone by weight_norm); "normal" N(0, 0.01)
    conv_init: str = "pytorch"
    # output channels of the last block's first convolution (null: H, the reference's equal
    # widths); model.param_budget sets it to land within 2% (a step of H moves the count ~2/H)
    last_inner: int | None = None

    def __post_init__(self) -> None:
        # kernel_size 1 breaks the reference (Chomp1d(0) keeps no steps) and carries nothing
        require(
            self.kernel_size >= 2,
            "model.cell.kernel_size",
            f"must be an integer >= 2, got {self.kernel_size}",
        )
        require(self.levels >= 1, "model.cell.levels", f"must be >= 1, got {self.levels}")
        require(
            0.0 <= self.dropout < 1.0,
            "model.cell.dropout",
            f"must be in [0, 1), got {self.dropout}",
        )
        choice(self.conv_init, "model.cell.conv_init", CONV_INITS)
        if self.last_inner is not None:
            require(
                self.last_inner >= 1,
                "model.cell.last_inner",
                f"must be null or an integer >= 1, got {self.last_inner}",
            )


def receptive_field(options: TCNOptions) -> int:
    """Steps one layer's output sees: 1 + 2 (k - 1)(2**n - 1) (two convolutions per level)."""
    return 1 + 2 * (options.kernel_size - 1) * (2**options.levels - 1)


def carry_shapes(
    options: TCNOptions, batch: int, features: int, hidden_size: int
) -> tuple[tuple[int, int, int], ...]:
    """The shapes of the carry's 2n arrays: (B, P_i, C_i) and (B, P_i, H) for each level i (the
    last level's second: (B, P, `last_inner`) when set)."""
    shapes = []
    for level in range(options.levels):
        pad = (options.kernel_size - 1) * 2**level
        inner = inner_width(options, level, hidden_size)
        shapes += [(batch, pad, features if level == 0 else hidden_size), (batch, pad, inner)]
    return tuple(shapes)


def inner_width(options: TCNOptions, level: int, hidden_size: int) -> int:
    """Output channels of block `level`'s first convolution: H, or `last_inner` for the last."""
    last = level == options.levels - 1 and options.last_inner is not None
    return options.last_inner if last else hidden_size


def zero_carry(options: TCNOptions, batch: int, features: int, hidden_size: int) -> Carry:
    """`Spec.initial_carry`: zeros, the reference's left padding."""
    shapes = carry_shapes(options, batch, features, hidden_size)
    return tuple(jnp.zeros(shape, jnp.float32) for shape in shapes)


def state_size(options: TCNOptions, features: int, hidden_size: int) -> int:
    """`Spec.state_size`: sum over levels of P_i (C_i + H) floats per example."""
    return sum(p * c for _, p, c in carry_shapes(options, 1, features, hidden_size))


def step_flops(options: TCNOptions, batch: int, length: int, features: int, hidden: int) -> float:
    """`Spec.step_flops`: 2 B T k C_in C_out per convolution, plus 2 B T F H for the first block's
    downsample when F != H."""
    k = options.kernel_size
    flops = 0.0
    for level in range(options.levels):
        width = features if level == 0 else hidden
        inner = inner_width(options, level, hidden)
        flops += 2.0 * batch * length * k * (width + hidden) * inner
        if width != hidden:
            flops += 2.0 * batch * length * width * hidden
    return flops


def _pytorch_uniform(fan_in: int) -> nn.initializers.Initializer:
    """PyTorch's Conv1d default for weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class WeightNormCausalConv(nn.Module):
    """Weight-normed dilated causal Conv1d, continuing from the carried inputs.

    Parameters: v (k, C, H), g (H,) (initialised to ||v|| per output channel), bias (H,).
    """

    features: int
    kernel_size: int
    dilation: int
    conv_init: str = "pytorch"

    @nn.compact
    def __call__(self, inputs, carry, ends=None):
        """inputs (B, T, C), carry (B, P, C) the P = (k-1) d inputs before them, ends (B,) int or
        None (T) -> (outputs (B, T, H), the P inputs before step `ends` of [carry, inputs])."""
        channels = inputs.shape[-1]
        fan_in = self.kernel_size * channels
        if self.conv_init == "normal":
            v_init = nn.initializers.normal(0.01)
        else:
            v_init = _pytorch_uniform(fan_in)
        v = self.param("v", v_init, (self.kernel_size, channels, self.features), jnp.float32)
        norm = jnp.sqrt(jnp.sum(v * v, axis=(0, 1)))
        g = self.param("g", lambda key: norm)
        bias = self.param("bias", _pytorch_uniform(fan_in), (self.features,), jnp.float32)
        kernel = v * (g / norm)
        padded = jnp.concatenate([carry.astype(inputs.dtype), inputs], axis=1)  # (B, P + T, C)
        time = inputs.shape[1]
        kernel = kernel.astype(inputs.dtype)
        # the k shifted views side by side, (B, T, k C), times the taps stacked, (k C, H): one
        # matmul. Inside the training loop's scan on a CPU, XLA's convolution is 4x and a sum of
        # k per-tap matmuls 2.4x slower than this, the per-tap sum with 1.7x the memory
        # (measured at the copy memory T=1000 preset's shape).
        taps = jnp.concatenate(
            [
                padded[:, j * self.dilation : j * self.dilation + time]
                for j in range(self.kernel_size)
            ],
            axis=-1,
        )
        outputs = taps @ kernel.reshape(self.kernel_size * channels, self.features)
        pad = carry.shape[1]
        if ends is None:
            new_carry = padded[:, padded.shape[1] - pad :]
        else:  # padded[b, ends[b] : ends[b] + P]: the P inputs before step ends[b]
            index = ends[:, None] + jnp.arange(pad)[None, :]
            new_carry = jnp.take_along_axis(padded, index[:, :, None], axis=1)
        return outputs + bias, new_carry


class TemporalBlock(nn.Module):
    """Block i: two weight-normed dilated causal convolutions with ReLU and dropout, and a
    residual (a 1x1 convolution when the input width differs from H): (B, T, C) -> (B, T, H)."""

    features: int
    kernel_size: int
    dilation: int
    dropout: float = 0.0
    conv_init: str = "pytorch"
    deterministic: bool = True
    inner: int | None = None  # conv1's output channels (None: `features`)

    @nn.compact
    def __call__(self, inputs, carry, ends=None):
        """inputs (B, T, C), carry ((B, P, C), (B, P, H)), ends (B,) or None -> (outputs
        (B, T, H), the new carry)."""

        def conv(name, width):
            return WeightNormCausalConv(
                width, self.kernel_size, self.dilation, self.conv_init, name=name
            )

        def drop(z):
            return nn.Dropout(self.dropout)(z, deterministic=self.deterministic)

        hidden, carry1 = conv("conv1", self.inner or self.features)(inputs, carry[0], ends)
        hidden = drop(nn.relu(hidden))
        hidden, carry2 = conv("conv2", self.features)(hidden, carry[1], ends)
        hidden = drop(nn.relu(hidden))
        residual = inputs
        channels = inputs.shape[-1]
        if channels != self.features:
            residual = nn.Dense(
                self.features,
                kernel_init=nn.initializers.normal(0.01),
                bias_init=_pytorch_uniform(channels),
                name="downsample",
            )(inputs)
        return nn.relu(hidden + residual), (carry1, carry2)


def _flip_valid(x: jax.Array, seq_lengths: jax.Array | None) -> jax.Array:
    """Reverse each row's valid prefix in time, padded steps in place: (B, T, C) -> (B, T, C)."""
    if seq_lengths is None:
        return jnp.flip(x, axis=1)
    steps = jnp.arange(x.shape[1])[None, :]
    lengths = jnp.asarray(seq_lengths)[:, None]
    index = jnp.where(steps < lengths, lengths - 1 - steps, steps)
    return jnp.take_along_axis(x, index[:, :, None], axis=1)


class TCNLayer(nn.Module):
    """One TemporalConvNet of `options.levels` blocks of `hidden_size` channels (a `SequenceLayer`).

    Submodules ``block_{i}`` (see the module docstring); `remat` recomputes each block's
    convolutions in the backward pass, keeping only the blocks' outputs (B, T, H).
    """

    hidden_size: int
    options: TCNOptions
    remat: bool = False

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
        """inputs (B, T, F), seq_lengths (B,) int or None -> (outputs (B, T, H), carry).

        carry: the 2n arrays of the module docstring, after each row's last valid step;
        `initial_carry` (same form, None: zeros) continues a sequence. `hidden_offsets` (B, T, F)
        are added to the inputs (zeros change nothing; their gradient is dL/dx_t).
        """
        batch, time, features = inputs.shape
        x = inputs if hidden_offsets is None else inputs + hidden_offsets.astype(inputs.dtype)
        mask = None
        if seq_lengths is not None:
            seq_lengths = jnp.asarray(seq_lengths)
            mask = length_mask(seq_lengths, time)[:, :, None]
            x = jnp.where(mask, x, jnp.zeros_like(x))  # no garbage (or NaN) from padded steps
        if reverse:
            x = _flip_valid(x, seq_lengths)
        options = self.options
        if initial_carry is None:
            initial_carry = zero_carry(options, batch, features, self.hidden_size)
        block_class = nn.remat(TemporalBlock) if self.remat else TemporalBlock
        carry = []
        for level in range(options.levels):
            block = block_class(
                self.hidden_size,
                options.kernel_size,
                2**level,
                options.dropout,
                options.conv_init,
                deterministic,
                inner_width(options, level, self.hidden_size),
                name=f"block_{level}",
            )
            x, block_carry = block(x, tuple(initial_carry[2 * level : 2 * level + 2]), seq_lengths)
            carry += block_carry
        if reverse:
            x = _flip_valid(x, seq_lengths)
        if mask is not None:
            x = jnp.where(mask, x, jnp.zeros_like(x))
        return x, tuple(carry)


def layer(
    options: TCNOptions, hidden_size: int, *, remat: bool = False, name: str | None = None
) -> TCNLayer:
    """The TCN layer: inputs (B, T, F) -> (outputs (B, T, H), carry of 2 `levels` arrays)."""
    return TCNLayer(hidden_size=hidden_size, options=options, remat=remat, name=name)


SPEC = Spec(
    name="tcn",
    display_name="TCN",
    options=TCNOptions,
    layer=layer,
    initial_carry=zero_carry,
    state_size=state_size,
    step_flops=step_flops,
    probe_width=lambda options, features, hidden: features,
    receptive_field=receptive_field,
    block="plain",
    scans=(),
    budget_option="last_inner",
)
