"""Linear Recurrent Unit: A. Orvieto, S. L. Smith, A. Gu, A. Fernando, C. Gulcehre, R. Pascanu and
S. De, "Resurrecting recurrent neural networks for long sequences", ICML 2023 (arXiv:2303.06349).

Follows the class ``LRU`` of NicolasZucchet/minimal-LRU, ``lru/model.py`` (its parameters, their
names and layouts, and its initialisation). A complex diagonal linear recurrence of N channels:

    λ = exp(-exp(ν_log) + i exp(θ_log))                        (N,) complex, |λ| < 1
    γ = exp(γ_log)                                              (N,) real (γ normalisation)
    x_t = λ ⊙ x_{t-1} + γ ⊙ (B u_t)                             (N,) complex
    y_t = Re(C x_t) + D u_t                                     (H,) real

Shapes: B = batch, T = time, F = input features, H = hidden size (outputs), N = complex state
channels (`state_size`, default H); in the equations B is the input matrix. Parameters (float32): ν_log ``nu_log``, θ_log ``theta_log``,
γ_log ``gamma_log`` (N,); B = ``B_re`` + i ``B_im`` (N, F); C = ``C_re`` + i ``C_im`` (H, N); D
``D``: (H,) diagonal when F == H (the paper's u and y have one width), else a full (F, H) matrix
with y_t = ... + u_t D (this layer maps F -> H, which the paper's square layer does not).

Initialisation (the reference's `nu_init`, `theta_init`, `gamma_log_init`, `matrix_init`): |λ|
uniform on the ring r_min <= |λ| <= r_max (|λ|² uniform in [r_min², r_max²]), phase arg λ uniform
in [0, max_phase]; γ_log = log sqrt(1 - |λ|²); B ~ N(0, 1/(2F)), C ~ N(0, 1/N); diagonal D ~ N(0,
1); full D ~ N(0, 1/F) (keeps D u at the variance of the diagonal case). Two guards the reference
lacks: the uniform draws behind ν_log and θ_log avoid exactly 0 (which would make ν_log = +inf
when r_min = 0, a NaN gradient, and θ_log = -inf), and 1 - |λ|² is evaluated as
-expm1(-2 exp(ν_log)) (the same number, without rounding to 0 when |λ| is near 1).

The recurrence runs through `seqbench.models.linear_scan.linear_recurrence` (options `scan`:
associative, as the reference, sequential or chunked). Carry: the complex state x as the pair
(re (B, N), im (B, N)) of float32 arrays. Hidden offsets (B, T, 2N) = [re | im] are added to x_t
right after step t computes it (to its drive γ ⊙ (B u_t)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

from seqbench.config import require
from seqbench.models.architectures.base import CellOptions, Spec
from seqbench.models.linear_scan import DEFAULT_CHUNK, check_scan_options, linear_recurrence
from seqbench.models.scan import length_mask

#: the scans of `model.cell.scan`, the reference's (a parallel scan over time) first
SCANS = ("associative", "sequential", "chunked")


@dataclass
class LRUOptions(CellOptions):
    """`model.cell` of the LRU."""

    state_size: int | None = None  # N, complex state channels; None: the hidden size H
    r_min: float = 0.0  # smallest |λ| at initialisation (inner radius of the ring), in [0, 1)
    r_max: float = 1.0  # largest |λ| at initialisation (outer radius of the ring), in (r_min, 1]
    max_phase: float = 6.28  # phases arg λ start uniform in [0, max_phase] (radians)
    scan: str = "associative"  # how the recurrence runs: associative, sequential or chunked
    chunk_size: int = DEFAULT_CHUNK  # steps per chunk of the chunked scan

    def __post_init__(self) -> None:
        if self.state_size is not None:
            require(
                isinstance(self.state_size, int) and self.state_size >= 1,
                "model.cell.state_size",
                f"must be a positive int or null (the hidden size), got {self.state_size!r}",
            )
        require(
            0.0 <= self.r_min < 1.0,
            "model.cell.r_min",
            f"must be in [0, 1), got {self.r_min}",
        )
        require(
            self.r_min < self.r_max <= 1.0,
            "model.cell.r_max",
            f"must be in (r_min, 1] = ({self.r_min}, 1], got {self.r_max}",
        )
        require(
            math.isfinite(self.max_phase) and self.max_phase > 0.0,
            "model.cell.max_phase",
            f"must be a positive number, got {self.max_phase}",
        )
        check_scan_options(self.scan, self.chunk_size, SCANS)


def complex_state_size(options: LRUOptions, hidden_size: int) -> int:
    """N: `options.state_size`, or the hidden size when that is None."""
    return hidden_size if options.state_size is None else options.state_size


def _uniform_above_zero(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Uniform in (0, 1): the reference's [0, 1) draw with an exact 0 moved to the smallest
    normal float32 (every other value is unchanged)."""
    return jax.random.uniform(key, shape, jnp.float32, minval=jnp.finfo(jnp.float32).tiny)


def nu_log_init(r_min: float, r_max: float) -> nn.initializers.Initializer:
    """ν_log (N,) with |λ| = exp(-exp(ν_log)) on the ring [r_min, r_max], uniform in area."""

    def init(key, shape, dtype=jnp.float32):
        u = _uniform_above_zero(key, shape)
        return jnp.log(-0.5 * jnp.log(u * (r_max**2 - r_min**2) + r_min**2)).astype(dtype)

    return init


def theta_log_init(max_phase: float) -> nn.initializers.Initializer:
    """θ_log (N,) with the phase arg λ = exp(θ_log) uniform in [0, max_phase]."""

    def init(key, shape, dtype=jnp.float32):
        return jnp.log(max_phase * _uniform_above_zero(key, shape)).astype(dtype)

    return init


def gamma_log_of(nu_log: jax.Array) -> jax.Array:
    """γ_log = log sqrt(1 - |λ|²) with |λ|² = exp(-2 exp(ν_log)). (N,) -> (N,)."""
    return 0.5 * jnp.log(-jnp.expm1(-2.0 * jnp.exp(nu_log)))


def normal_init(scale: float) -> nn.initializers.Initializer:
    """Entries N(0, scale²) (the reference's `matrix_init` with normalization 1/scale)."""

    def init(key, shape, dtype=jnp.float32):
        return scale * jax.random.normal(key, shape, dtype)

    return init


class LRULayer(nn.Module):
    """One direction of an LRU layer over a sequence (a `SequenceLayer`): inputs (B, T, F) ->
    (outputs (B, T, H), carry (re (B, N), im (B, N))). Parameters: see the module docstring."""

    options: LRUOptions
    hidden_size: int
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
        """inputs (B, T, F), seq_lengths (B,) int or None -> (outputs (B, T, H), (re, im) (B, N)).

        `initial_carry` (re, im), each (B, N), starts the recurrence there instead of at zero.
        `hidden_offsets` (B, T, 2N) = [re | im] is added to x_t right after step t computes it;
        the gradient with respect to it is dL/dx_t (real and imaginary parts).
        """
        del deterministic  # no dropout inside
        options = self.options
        features, hidden = inputs.shape[-1], self.hidden_size
        state = complex_state_size(options, hidden)
        theta_log = self.param(
            "theta_log", theta_log_init(options.max_phase), (state,), jnp.float32
        )
        nu_log = self.param(
            "nu_log", nu_log_init(options.r_min, options.r_max), (state,), jnp.float32
        )
        gamma_log = self.param("gamma_log", lambda key: gamma_log_of(nu_log))
        b_init = normal_init(1.0 / math.sqrt(2 * features))
        b_re = self.param("B_re", b_init, (state, features), jnp.float32)
        b_im = self.param("B_im", b_init, (state, features), jnp.float32)
        c_init = normal_init(1.0 / math.sqrt(state))
        c_re = self.param("C_re", c_init, (hidden, state), jnp.float32)
        c_im = self.param("C_im", c_init, (hidden, state), jnp.float32)
        if features == hidden:
            d = self.param("D", normal_init(1.0), (hidden,), jnp.float32)
        else:
            d = self.param(
                "D", normal_init(1.0 / math.sqrt(features)), (features, hidden), jnp.float32
            )
        if initial_carry is None:
            zeros = jnp.zeros((inputs.shape[0], state), jnp.float32)
            initial_carry = (zeros, zeros)

        def run(weights, inputs, seq_lengths, initial_carry, hidden_offsets):
            theta_log, nu_log, gamma_log, b_re, b_im, c_re, c_im, d = weights
            decay = jnp.exp(jax.lax.complex(-jnp.exp(nu_log), jnp.exp(theta_log)))
            gamma = jnp.exp(gamma_log)
            # u is real: γ ⊙ (B u) = γ ⊙ (B_re u) + i γ ⊙ (B_im u), two real matmuls
            drive_re = (inputs @ b_re.T) * gamma
            drive_im = (inputs @ b_im.T) * gamma
            if hidden_offsets is not None:
                drive_re = drive_re + hidden_offsets[..., :state]
                drive_im = drive_im + hidden_offsets[..., state:]
            drive = jax.lax.complex(drive_re, drive_im)
            states, final = linear_recurrence(
                jnp.broadcast_to(decay, drive.shape),
                drive,
                jax.lax.complex(*initial_carry),
                scan=options.scan,
                seq_lengths=seq_lengths,
                reverse=reverse,
                chunk_size=options.chunk_size,
            )
            outputs = states.real @ c_re.T - states.imag @ c_im.T
            outputs = outputs + (inputs * d if d.ndim == 1 else inputs @ d)
            if seq_lengths is not None:
                mask = length_mask(seq_lengths, inputs.shape[1])[..., None]
                outputs = jnp.where(mask, outputs, 0.0)
            return outputs, (final.real, final.imag)

        if self.remat:
            # keep only the layer's inputs for the backward pass; recompute the (B, T, N) states
            run = jax.checkpoint(run)
        weights = (theta_log, nu_log, gamma_log, b_re, b_im, c_re, c_im, d)
        initial_carry = tuple(jnp.asarray(part, jnp.float32) for part in initial_carry)
        return run(weights, inputs, seq_lengths, initial_carry, hidden_offsets)


def layer(
    options: LRUOptions, hidden_size: int, *, remat: bool = False, name: str | None = None
) -> LRULayer:
    """The LRU layer: inputs (B, T, F) -> (outputs (B, T, H), (re, im) each (B, N))."""
    return LRULayer(options=options, hidden_size=hidden_size, remat=remat, name=name)


def initial_carry(
    options: LRUOptions, batch: int, features: int, hidden_size: int
) -> tuple[jax.Array, jax.Array]:
    """The zero state x = 0 as (re, im), each (B, N) float32."""
    del features
    zeros = jnp.zeros((batch, complex_state_size(options, hidden_size)), jnp.float32)
    return zeros, zeros


def step_flops(options: LRUOptions, batch: int, length: int, features: int, hidden: int) -> float:
    """Matmul FLOPs of one forward pass, 2 FLOPs per real multiply-add.

    Per step and example: γ ⊙ (B u) with complex B and real u is two real (N, F) matmuls, 2 N F
    multiply-adds (a complex-by-complex multiply-add would cost 4 real ones; u has no imaginary
    part); Re(C x) = C_re x_re - C_im x_im is two real (H, N) matmuls, 2 H N multiply-adds (the
    imaginary part is never formed); D u: H multiply-adds (diagonal, F == H) or F H (full). The
    element-wise recurrence (a complex multiply-add per channel, more in the associative scan)
    is left out, as the element-wise gate arithmetic of the other cells is.
    """
    state = complex_state_size(options, hidden)
    direct = hidden if features == hidden else features * hidden
    multiply_adds = 2 * state * features + 2 * hidden * state + direct
    return 2.0 * batch * length * multiply_adds


SPEC = Spec(
    name="lru",
    display_name="LRU",
    options=LRUOptions,
    layer=layer,
    initial_carry=initial_carry,
    state_size=lambda options, features, hidden: 2 * complex_state_size(options, hidden),
    step_flops=step_flops,
    probe_width=lambda options, features, hidden: 2 * complex_state_size(options, hidden),
    block="residual",
    scans=SCANS,
)
