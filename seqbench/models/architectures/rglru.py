"""RG-LRU: the recurrent block of Griffin and Hawk. S. De, S. L. Smith, A. Fernando et al.,
"Griffin: Mixing Gated Linear Recurrences with Local Attention for Efficient Language Models",
arXiv:2402.19427, 2024 (Hawk is the model made of this block alone).

Follows google-deepmind/recurrentgemma, ``recurrentgemma/jax/modules.py`` (``RecurrentBlock``)
and ``recurrentgemma/jax/layers.py`` (``RGLRU``, ``Conv1D``, ``BlockDiagonalLinear``,
``rnn_real_param_init``), version 1.0.1, real-valued (``only_real=True``): the same equations,
initialisers and parameter tree, so when F = H a ``RecurrentBlock(width=H, lru_width=H)`` runs
with this layer's parameters unchanged (its linear_out maps back to its input width, ours to H).

Shapes: B = batch, T = time, F = input features, H = hidden size (the RNN width),
W = ``conv_width``, n = ``num_heads`` (H/n = block width of the gates).

Writing x W for ``x @ W`` (row vectors), at each step t:

    y_t = GeLU(x_t W_y + b_y)                                   linear_y    (F, H)
    u_t = x_t W_x + b_x                                         linear_x    (F, H)
    v_t = b_conv + sum_{j<W} w_conv[j] * u_{t-W+1+j}            conv_1d     w (W, H), causal,
                                                                            per channel
    r_t = σ(BlockDiag_a(v_t)),  i_t = σ(BlockDiag_i(v_t))       a_gate, input_gate (n blocks)
    log a_t = -c softplus(Λ) r_t,  c = 8    (a_t = σ(-Λ)^(c r_t))   rg_lru.a_param Λ (H,)
    h_t = a_t * h_{t-1} + sqrt(1 - a_t²) * (i_t * v_t)          the RG-LRU
    out_t = (h_t * y_t) W_out + b_out                           linear_out  (H, H)

GeLU is ``jax.nn.gelu`` (its tanh approximation) as in the reference. Λ has the reference's sign:
σ(-Λ) is the paper's a = σ(Λ_paper). The gradient of the square root is bounded by 1000 (the
reference's ``sqrt_bound_derivative``, against NaNs as a_t -> 1).

Reset at the sequence start, as the reference does at ``segment_pos == 0``: at the first processed
step the previous state is dropped (a = 0) and the input is not normalised (the factor
sqrt(1 - a²) is 1), so h_0 = i_0 * v_0. It applies when ``initial_carry`` is None: at step 0, or
with ``reverse=True`` at each row's last valid step (the first one processed). With an
``initial_carry`` the layer continues a sequence, as the reference does when it is given a cache
(later ``segment_pos`` > 0): no reset, the convolution reads the carried inputs.

Initialisation (the reference's): linear_x, linear_y and linear_out kernels normal with variance
1/fan_in (``RecurrentBlock``'s ``final_w_init_variance_scale`` at its default 1), conv_1d normal
with variance 0.01/W, the gate blocks (n, H/n, H/n) normal with variance 1/H (JAX's fan_in of that
shape counts the block axis too), all biases zero; Λ such that σ(-Λ)², the squared decay at
r = 1 and c = 1, is uniform in [min_rad², max_rad²] = [0.9², 0.999²] (``rnn_real_param_init``:
uniform over the area of a ring).

Carry: (conv buffer (B, W-1, H): the last W-1 convolution inputs u in processing order, oldest
first; h (B, H)), both real float32. Padded steps (t >= seq_lengths[b]) leave both unchanged and
output zeros. The recurrence h_t = a_t h_{t-1} + b_t runs with
`seqbench.models.linear_scan.linear_recurrence` (``scan``: sequential, associative or chunked);
hidden offsets are added to b_t, so to h_t right after step t computes it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqbench.config import require
from seqbench.models.architectures.base import CellOptions, Spec
from seqbench.models.linear_scan import DEFAULT_CHUNK, SCANS, check_scan_options, linear_recurrence
from seqbench.models.scan import length_mask

#: c in log a_t = -c softplus(Λ) r_t (the reference's constant)
DECAY_SCALE = 8.0
#: the ring Λ is drawn on: σ(-Λ) in [MIN_RAD, MAX_RAD] (the reference's RGLRU defaults)
MIN_RAD = 0.9
MAX_RAD = 0.999
#: bound on the derivative of sqrt(1 - a²) with respect to 1 - a² (the reference's)
MAX_SQRT_GRADIENT = 1000.0

Carry = tuple[jax.Array, jax.Array]


@dataclass
class RGLRUOptions(CellOptions):
    """`model.cell` of the RG-LRU recurrent block."""

    # blocks of the block-diagonal gate linears (a_gate, input_gate); must divide the hidden size.
    # 1 (dense gates) fits every hidden size, which the parameter-budget search needs; the
    # reference's models use their attention head count (10 in RecurrentGemma-2B)
    num_heads: int = 1
    conv_width: int = 4  # W: steps the causal per-channel convolution before the RG-LRU sees
    # how the linear recurrence runs: sequential (the reference's linear scan), associative or
    # chunked; all three compute the same states
    scan: str = "sequential"
    chunk_size: int = DEFAULT_CHUNK  # steps per chunk of the chunked scan

    def __post_init__(self) -> None:
        require(self.num_heads >= 1, "model.cell.num_heads", f"must be >= 1, got {self.num_heads}")
        require(
            self.conv_width >= 1, "model.cell.conv_width", f"must be >= 1, got {self.conv_width}"
        )
        check_scan_options(self.scan, self.chunk_size, SCANS)


def check_heads(num_heads: int, hidden_size: int) -> None:
    """ConfigError naming model.cell.num_heads unless it divides the hidden size."""
    require(
        hidden_size % num_heads == 0,
        "model.cell.num_heads",
        f"must divide the hidden size {hidden_size}, got {num_heads}",
    )


# --- initialisers ------------------------------------------------------------------------------


def fan_in_normal(scale: float = 1.0) -> nn.initializers.Initializer:
    """Normal with variance scale / fan_in (the reference's kernel initialiser)."""
    return nn.initializers.variance_scaling(scale, "fan_in", "normal")


def a_param_init(min_rad: float = MIN_RAD, max_rad: float = MAX_RAD) -> nn.initializers.Initializer:
    """Λ (H,) with σ(-Λ)² uniform in [min_rad², max_rad²], i.e. Λ = -logit(radius)."""

    def init(key, shape, dtype=jnp.float32):
        radius_squared = jax.random.uniform(key, shape, jnp.float32, min_rad**2, max_rad**2)
        radius = jnp.sqrt(radius_squared)
        return (jnp.log1p(-radius) - jnp.log(radius)).astype(dtype)

    return init


# --- parameter holders: the reference's parameter tree -----------------------------------------


class _Linear(nn.Module):
    """Parameters of a dense layer: {"kernel" (fan_in, features), "bias" (features,)}."""

    features: int
    kernel_scale: float = 1.0

    @nn.compact
    def __call__(self, fan_in: int) -> dict[str, jax.Array]:
        kernel_init = fan_in_normal(self.kernel_scale)
        kernel = self.param("kernel", kernel_init, (fan_in, self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        return {"kernel": kernel, "bias": bias}


class _Conv1D(nn.Module):
    """Parameters of the causal convolution: {"w" (W, H), "b" (H,)}; w[W-1] weighs step t."""

    width: int
    conv_width: int

    @nn.compact
    def __call__(self) -> dict[str, jax.Array]:
        shape = (self.conv_width, self.width)
        w = self.param("w", fan_in_normal(0.01), shape, jnp.float32)
        b = self.param("b", nn.initializers.zeros_init(), (self.width,), jnp.float32)
        return {"w": w, "b": b}


class _BlockDiagonal(nn.Module):
    """Parameters of a block-diagonal linear: {"w" (n, H/n, H/n), "b" (n, H/n)}."""

    width: int
    num_blocks: int

    @nn.compact
    def __call__(self) -> dict[str, jax.Array]:
        block = self.width // self.num_blocks
        w = self.param("w", fan_in_normal(1.0), (self.num_blocks, block, block), jnp.float32)
        b = self.param("b", nn.initializers.zeros_init(), (self.num_blocks, block), jnp.float32)
        return {"w": w, "b": b}


class _RGLRUParams(nn.Module):
    """Parameters of the RG-LRU: {"a_param" Λ (H,), "input_gate", "a_gate"}."""

    width: int
    num_heads: int

    @nn.compact
    def __call__(self) -> dict[str, Any]:
        return {
            "a_param": self.param("a_param", a_param_init(), (self.width,), jnp.float32),
            "input_gate": _BlockDiagonal(self.width, self.num_heads, name="input_gate")(),
            "a_gate": _BlockDiagonal(self.width, self.num_heads, name="a_gate")(),
        }


# --- the computation ---------------------------------------------------------------------------


@jax.custom_vjp
def sqrt_bounded_gradient(x: jax.Array) -> jax.Array:
    """sqrt(x) whose derivative is at most MAX_SQRT_GRADIENT (taken at x >= 1/(4 M²))."""
    return jnp.sqrt(x)


def _sqrt_forward(x):
    return jnp.sqrt(x), x


def _sqrt_backward(x, grad):
    floor = 1.0 / (4.0 * MAX_SQRT_GRADIENT**2)
    return (grad * 0.5 * jax.lax.rsqrt(jnp.maximum(x, floor)),)


sqrt_bounded_gradient.defvjp(_sqrt_forward, _sqrt_backward)


def _dense(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    return x @ params["kernel"] + params["bias"]


def _block_diagonal(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    """(B, T, H) -> (B, T, H) through n independent (H/n, H/n) blocks."""
    blocks = params["w"].shape[0]
    x = x.reshape(*x.shape[:-1], blocks, -1)
    y = jnp.einsum("...ni,nij->...nj", x, params["w"]) + params["b"]
    return y.reshape(*y.shape[:-2], -1)


def _processing_order(time: int, seq_lengths: jax.Array | None, batch: int) -> jax.Array:
    """(B, T) int: the input position of each processed step when running in reverse.

    Row b's valid prefix reversed (step s reads position L_b - 1 - s), then its padding in place;
    the permutation is its own inverse, so it also takes the outputs back to input positions.
    """
    steps = jnp.arange(time)[None, :]
    if seq_lengths is None:
        return jnp.broadcast_to(time - 1 - steps, (batch, time))
    lengths = jnp.asarray(seq_lengths)[:, None]
    return jnp.where(steps < lengths, lengths - 1 - steps, steps)


def _gather_steps(x: jax.Array, order: jax.Array) -> jax.Array:
    """x (B, T, D), order (B, T) -> x[b, order[b, t]] (B, T, D)."""
    return jnp.take_along_axis(x, order[:, :, None], axis=1)


def _causal_conv(
    params: dict[str, jax.Array],
    u: jax.Array,
    buffer: jax.Array,
    seq_lengths: jax.Array | None,
) -> tuple[jax.Array, jax.Array]:
    """u (B, T, H) in processing order after buffer (B, W-1, H) -> (v (B, T, H), new buffer).

    v_t = b + sum_j w[j] * ext[t + j], ext = [buffer, u] (B, T+W-1, H); the new buffer is the W-1
    inputs up to each row's last valid step.
    """
    w, time = params["w"], u.shape[1]
    ext = jnp.concatenate([buffer.astype(u.dtype), u], axis=1)
    v = params["b"] + sum(w[j] * ext[:, j : j + time] for j in range(w.shape[0]))
    window = w.shape[0] - 1
    if seq_lengths is None:
        new_buffer = ext[:, time:]
    else:
        starts = jnp.asarray(seq_lengths)[:, None] + jnp.arange(window)[None, :]
        new_buffer = _gather_steps(ext, starts)
    return v, new_buffer


def recurrent_block(
    params: dict[str, Any],
    inputs: jax.Array,
    seq_lengths: jax.Array | None,
    initial_carry: Carry | None,
    hidden_offsets: jax.Array | None,
    *,
    reverse: bool,
    conv_width: int,
    scan: str,
    chunk_size: int,
) -> tuple[jax.Array, Carry]:
    """The layer's forward pass as a pure function of its parameter tree.

    inputs (B, T, F), seq_lengths (B,) or None, initial_carry (buffer (B, W-1, H), h (B, H)) or
    None (zeros, and the reset at the first processed step), hidden_offsets (B, T, H) or None
    -> (outputs (B, T, H), (buffer, h)).
    """
    batch, time, _ = inputs.shape
    hidden = params["linear_x"]["kernel"].shape[1]
    x = inputs.astype(jnp.float32)
    order = _processing_order(time, seq_lengths, batch) if reverse else None
    if order is not None:
        x = _gather_steps(x, order)
        if hidden_offsets is not None:
            hidden_offsets = _gather_steps(hidden_offsets, order)
    if initial_carry is None:
        buffer = jnp.zeros((batch, conv_width - 1, hidden), jnp.float32)
        h0 = jnp.zeros((batch, hidden), jnp.float32)
    else:
        buffer, h0 = initial_carry

    y = jax.nn.gelu(_dense(params["linear_y"], x))
    u = _dense(params["linear_x"], x)
    v, buffer = _causal_conv(params["conv_1d"], u, buffer, seq_lengths)

    lru = params["rg_lru"]
    input_gate = jax.nn.sigmoid(_block_diagonal(lru["input_gate"], v))
    recurrence_gate = jax.nn.sigmoid(_block_diagonal(lru["a_gate"], v))
    log_a = -DECAY_SCALE * recurrence_gate * jax.nn.softplus(lru["a_param"])
    a = jnp.exp(log_a)
    multiplier = sqrt_bounded_gradient(1.0 - jnp.exp(2.0 * log_a))
    if initial_carry is None:
        # the reset at the first processed step: drop the (zero) state, input not normalised
        a = a.at[:, 0].set(0.0)
        multiplier = multiplier.at[:, 0].set(1.0)
    b = multiplier * (input_gate * v)
    if hidden_offsets is not None:
        b = b + hidden_offsets.astype(b.dtype)
    states, h = linear_recurrence(
        a, b, h0, scan=scan, seq_lengths=seq_lengths, chunk_size=chunk_size
    )

    outputs = _dense(params["linear_out"], states * y)
    if seq_lengths is not None:
        outputs = jnp.where(length_mask(seq_lengths, time)[..., None], outputs, 0.0)
    if order is not None:
        outputs = _gather_steps(outputs, order)
    return outputs, (buffer, h)


class RGLRULayer(nn.Module):
    """One direction of Griffin's recurrent block over a sequence (a `SequenceLayer`).

    Parameters (the reference ``RecurrentBlock``'s tree): linear_y, linear_x {kernel (F, H),
    bias (H,)}, conv_1d {w (W, H), b (H,)}, rg_lru {a_param (H,), input_gate, a_gate {w (n, H/n,
    H/n), b (n, H/n)}}, linear_out {kernel (H, H), bias (H,)}.
    Carry: (conv buffer (B, W-1, H), h (B, H)).
    """

    hidden_size: int
    num_heads: int = 1
    conv_width: int = 4
    scan: str = "sequential"
    chunk_size: int = DEFAULT_CHUNK
    remat: bool = False

    def __post_init__(self):
        if self.hidden_size < 1:
            raise ValueError(f"hidden_size must be >= 1, got {self.hidden_size}")
        check_heads(self.num_heads, self.hidden_size)
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
        """inputs (B, T, F) -> (outputs (B, T, H), (conv buffer (B, W-1, H), h (B, H))).

        seq_lengths (B,) or None; reverse runs each row's valid prefix backwards; initial_carry
        (buffer, h) continues a sequence (no reset at its first step); hidden_offsets (B, T, H)
        are added to h_t. No dropout inside.
        """
        del deterministic
        hidden, features = self.hidden_size, inputs.shape[-1]
        params = {
            "linear_y": _Linear(hidden, name="linear_y")(features),
            "linear_x": _Linear(hidden, name="linear_x")(features),
            "conv_1d": _Conv1D(hidden, self.conv_width, name="conv_1d")(),
            "rg_lru": _RGLRUParams(hidden, self.num_heads, name="rg_lru")(),
            "linear_out": _Linear(hidden, name="linear_out")(hidden),
        }
        forward = functools.partial(
            recurrent_block,
            reverse=reverse,
            conv_width=self.conv_width,
            scan=self.scan,
            chunk_size=self.chunk_size,
        )
        if self.remat:
            # keep only the inputs and parameters; recompute the (B, T, H) activations backwards
            forward = jax.checkpoint(forward)
        return forward(params, inputs, seq_lengths, initial_carry, hidden_offsets)


def layer(
    options: RGLRUOptions, hidden_size: int, *, remat: bool = False, name: str | None = None
) -> RGLRULayer:
    """The RG-LRU recurrent block: inputs (B, T, F) -> (outputs (B, T, H), (buffer, h)).

    ConfigError naming model.cell.num_heads when it does not divide `hidden_size`.
    """
    return RGLRULayer(
        hidden_size=hidden_size,
        num_heads=options.num_heads,
        conv_width=options.conv_width,
        scan=options.scan,
        chunk_size=options.chunk_size,
        remat=remat,
        name=name,
    )


def initial_carry(options: RGLRUOptions, batch: int, features: int, hidden_size: int) -> Carry:
    """Zero carry: (conv buffer (B, W-1, H), h (B, H)), float32."""
    del features
    buffer = jnp.zeros((batch, options.conv_width - 1, hidden_size), jnp.float32)
    return buffer, jnp.zeros((batch, hidden_size), jnp.float32)


def state_size(options: RGLRUOptions, features: int, hidden_size: int) -> int:
    """(W-1) H buffered convolution inputs + H for h."""
    del features
    return (options.conv_width - 1) * hidden_size + hidden_size


def step_flops(options: RGLRUOptions, batch: int, length: int, features: int, hidden: int) -> float:
    """`Spec.step_flops`: 2 B T (2 F H + H² + 2 H²/n + W H), n = num_heads, W = conv_width."""
    num_heads, conv_width = options.num_heads, options.conv_width
    per_step = (
        2 * features * hidden  # linear_x, linear_y
        + hidden * hidden  # linear_out
        + 2 * hidden * (hidden // num_heads)  # a_gate, input_gate
        + conv_width * hidden  # conv_1d
    )
    return 2.0 * batch * length * per_step


SPEC = Spec(
    name="rglru",
    display_name="RG-LRU",
    options=RGLRUOptions,
    layer=layer,
    initial_carry=initial_carry,
    state_size=state_size,
    step_flops=step_flops,
    probe_width=lambda options, features, hidden: hidden,
    block="residual",
    scans=SCANS,
)
