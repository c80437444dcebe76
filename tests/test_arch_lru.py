"""The LRU (Orvieto et al. 2023) against a float64 NumPy transcription of minimal-LRU's ``LRU``
(NicolasZucchet/minimal-LRU, lru/model.py) and against memax's linen ``LRU`` (when memax is
installed); every scan against the sequential one; the ring initialisation; the options."""

import dataclasses
import functools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from scan_checks import (
    TOL,
    assert_like_sequential,
    assert_padding_respected,
    every_scan,
    run_compiled,
    spec_layer,
)

from seqbench.config import ConfigError
from seqbench.models.architectures import get
from seqbench.models.architectures.lru import (
    SCANS,
    SPEC,
    LRUOptions,
    gamma_log_of,
    nu_log_init,
    theta_log_init,
)

CONF = Path(__file__).resolve().parents[1] / "conf" / "model" / "lru.yaml"
lru_layer = functools.partial(spec_layer, SPEC)


def random_variables(module, inputs, seed, r_min=0.5, r_max=0.99, max_phase=3.14):
    """Parameters for `module` drawn in NumPy (no init compute): λ on the ring, γ_log off its
    initial value log sqrt(1 - |λ|²) by N(0, 0.1²), B, C, D ~ N(0, 0.5²)."""
    shapes = jax.eval_shape(module.init, jax.random.key(0), inputs)["params"]
    rng = np.random.default_rng(seed)
    state = shapes["nu_log"].shape
    modulus = np.sqrt(rng.uniform(r_min**2, r_max**2, state))
    params = {
        "nu_log": np.log(-np.log(modulus)),
        "theta_log": np.log(rng.uniform(0.01, max_phase, state)),
        "gamma_log": np.log(np.sqrt(1 - modulus**2)) + 0.1 * rng.standard_normal(state),
    }
    for name in ("B_re", "B_im", "C_re", "C_im", "D"):
        params[name] = 0.5 * rng.standard_normal(shapes[name].shape)
    assert params.keys() == shapes.keys()
    return {"params": {name: jnp.asarray(v, jnp.float32) for name, v in params.items()}}


def numpy_lru(params, u, length, x0, reverse=False, offsets=None):
    """minimal-LRU's ``LRU.__call__`` on one row in float64, written as a step loop:

        λ = exp(-exp(ν_log) + i exp(θ_log)), B_norm = (B_re + i B_im) γ (per row of B),
        x_t = λ x_{t-1} + B_norm u_t, y_t = Re(C x_t) + D u_t

    with seqbench's protocol around it: start from x0 (N,) complex, run steps 0..length-1 (or
    length-1..0 if reverse) of u (T, F), add offsets[t] (N,) complex to x_t after step t, and
    D (F, H) as u_t D when it is a matrix. -> outputs (T, H), zeros at t >= length; final x (N,).
    """
    p = {name: np.asarray(value, np.float64) for name, value in params.items()}
    decay = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
    b_norm = (p["B_re"] + 1j * p["B_im"]) * np.exp(p["gamma_log"])[:, None]
    c = p["C_re"] + 1j * p["C_im"]
    outputs = np.zeros((u.shape[0], c.shape[0]))
    x = np.asarray(x0, np.complex128)
    for t in range(length - 1, -1, -1) if reverse else range(length):
        x = decay * x + b_norm @ u[t]
        if offsets is not None:
            x = x + offsets[t]
        direct = p["D"] * u[t] if p["D"].ndim == 1 else u[t] @ p["D"]
        outputs[t] = (c @ x).real + direct
    return outputs, x


# (B = 3, T, F, H, N): F == H (the paper's square layer, diagonal D) and F != H (full D), N != H
SHAPES = [(3, 9, 4, 4, None), (3, 8, 3, 5, 6)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}T{}F{}H{}N{}".format(*s))
def test_matches_numpy_minimal_lru(shape):
    batch, time, features, hidden, state = shape
    module = lru_layer(hidden, state_size=state)
    n = state or hidden
    rng = np.random.default_rng(list(shape[:4]))
    x = rng.standard_normal((batch, time, features)).astype(np.float32)
    variables = random_variables(module, x, seed=sum(shape[:4]))
    lengths = np.array([time, time // 2, 0])  # a full row, a padded one, an empty one
    carry = tuple(rng.standard_normal((2, batch, n)).astype(np.float32))
    offsets = (0.3 * rng.standard_normal((batch, time, 2 * n))).astype(np.float32)

    def run(variables, x, lengths, carry, offsets):
        results = {"defaults": module.apply(variables, x)}
        for direction in ("forward", "reverse"):
            results[direction] = module.apply(
                variables,
                x,
                lengths,
                direction == "reverse",
                initial_carry=carry,
                hidden_offsets=offsets,
            )
        return results

    full = np.full(batch, time)
    zero_carry, zero_offsets = tuple(np.zeros_like(carry)), np.zeros_like(offsets)
    both = jax.tree.map(
        lambda *a: np.stack(a), (full, zero_carry, zero_offsets), (lengths, carry, offsets)
    )
    # the two cases as one batch of 2B rows: one compilation
    stacked = jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), both)
    results = run_compiled(run, variables, np.concatenate([x, x]), *stacked)
    cases = {
        case: jax.tree.map(lambda a, i=i: np.asarray(a)[i * batch : (i + 1) * batch], results)
        for i, case in enumerate(("plain", "protocol"))
    }
    params = variables["params"]
    padded = np.arange(time)[None, :] >= lengths[:, None]
    for case, results in cases.items():
        for variant, (out, (final_re, final_im)) in results.items():
            extras = case == "protocol" and variant != "defaults"
            assert out.shape == (batch, time, hidden)
            assert final_re.shape == final_im.shape == (batch, n)
            for b in range(batch):
                ref_out, ref_final = numpy_lru(
                    params,
                    x[b],
                    lengths[b] if extras else time,
                    carry[0][b] + 1j * carry[1][b] if extras else np.zeros(n),
                    reverse=variant == "reverse",
                    offsets=offsets[b, :, :n] + 1j * offsets[b, :, n:] if extras else None,
                )
                np.testing.assert_allclose(out[b], ref_out, **TOL)
                np.testing.assert_allclose(final_re[b], ref_final.real, **TOL)
                np.testing.assert_allclose(final_im[b], ref_final.imag, **TOL)
            if extras:
                assert (np.asarray(out)[padded] == 0.0).all()


def test_matches_memax_lru():
    """memax's flax.linen LRU (memax.linen.semigroups.lru, square: F = H = N): same parameter
    names and shapes; with the same parameter values, the same outputs and final state from a
    non-zero initial state."""
    pytest.importorskip("memax")
    from memax.linen.semigroups.lru import LRU as MemaxLRU

    batch, time, width = 2, 7, 4
    reference = MemaxLRU(
        algebra=MemaxLRU.default_algebra(recurrent_size=width),
        scan=MemaxLRU.default_scan(),
        hidden_size=width,
        recurrent_size=width,
        r_min=0.5,
        r_max=0.99,
        max_phase=3.14,
    )
    rng = np.random.default_rng(7)
    x = rng.standard_normal((batch, time, width)).astype(np.float32)
    x0 = (rng.standard_normal((batch, width)) + 1j * rng.standard_normal((batch, width))).astype(
        np.complex64
    )
    starts = jnp.zeros((time,), bool)
    module = lru_layer(width)
    reference_shapes = jax.eval_shape(
        reference.init, jax.random.key(0), reference.zero_carry(), (x[0], starts)
    )
    ours = jax.eval_shape(module.init, jax.random.key(0), x)
    assert jax.tree.map(jnp.shape, reference_shapes) == jax.tree.map(jnp.shape, ours)
    variables = random_variables(module, x, seed=3)

    def reference_row(x0_row, x_row):
        carry = ((jnp.ones((width,), jnp.complex64), x0_row), jnp.zeros((), bool))
        ((_, states), _), outputs = reference.apply(variables, carry, (x_row, starts))
        return outputs, states[-1]

    def run(x0, x):
        carry = (jnp.real(x0), jnp.imag(x0))
        return jax.vmap(reference_row)(x0, x), module.apply(variables, x, initial_carry=carry)

    (ref_out, ref_final), (out, (final_re, final_im)) = run_compiled(run, x0, x)
    np.testing.assert_allclose(out, ref_out, **TOL)
    np.testing.assert_allclose(final_re, np.real(ref_final), **TOL)
    np.testing.assert_allclose(final_im, np.imag(ref_final), **TOL)


def scan_results(time, lengths, chunk_size=3):
    """{(scan, reverse): `differentiate` result}: outputs, final carry and gradients (w.r.t. params,
    the initial carry and offsets) of every scan and direction, with padding, a non-zero initial
    carry and non-zero hidden offsets (remat: tests/test_architecture_contract.py); the initial
    carry."""
    batch, features, hidden, state = len(lengths), 3, 4, 5
    rng = np.random.default_rng(11)
    x = jnp.asarray(rng.standard_normal((batch, time, features)), jnp.float32)
    carry = tuple(jnp.asarray(rng.standard_normal((2, batch, state)), jnp.float32))
    offsets = jnp.asarray(0.3 * rng.standard_normal((batch, time, 2 * state)), jnp.float32)
    out_weights = jnp.asarray(rng.standard_normal((batch, time, hidden)), jnp.float32)
    final_weights = jnp.asarray(rng.standard_normal((2, batch, state)), jnp.float32)
    modules = {
        scan: lru_layer(hidden, state_size=state, scan=scan, chunk_size=chunk_size)
        for scan in SCANS
    }
    variables = random_variables(modules["sequential"], x, seed=5, r_min=0.6, r_max=0.95)
    layers = {(scan,): (module, (False, True)) for scan, module in modules.items()}

    def loss(out, final):
        final_re, final_im = final
        value = jnp.sum(out * out_weights) + jnp.sum(final_re * final_weights[0])
        return value + jnp.sum(final_im * final_weights[1])

    run = functools.partial(every_scan, layers, loss)
    return run_compiled(run, variables["params"], x, jnp.asarray(lengths), carry, offsets), carry


def test_every_scan_equals_sequential():
    """Outputs, final carry, loss and gradients within TOL of the sequential scan's; padded steps
    output zeros and pass no gradient to their offsets, the empty row keeps its carry."""
    lengths = [10, 6, 0]
    results, carry = scan_results(10, lengths)
    for (scan, reverse), result in results.items():
        case = f"scan={scan} reverse={reverse}"
        assert_like_sequential(result, results["sequential", reverse], case)
        assert_padding_respected(result, carry, lengths, case)


def test_initialisation():
    """The ring of Orvieto et al. (r_min = 0.4, r_max = 0.9, max_phase = π/2, N = 4096, F != H)
    through the layer's init, and the default ring through the initialisers; one compilation."""
    r_min, r_max, max_phase, state, features, hidden = 0.4, 0.9, math.pi / 2, 4096, 16, 64
    ring = lru_layer(
        hidden, scan="sequential", state_size=state, r_min=r_min, r_max=r_max, max_phase=max_phase
    )

    def init(key):
        ring_key, nu_key, theta_key = jax.random.split(key, 3)
        default = LRUOptions()
        return ring.init(ring_key, jnp.zeros((1, 1, features)))["params"], {
            "nu_log": nu_log_init(default.r_min, default.r_max)(nu_key, (state,)),
            "theta_log": theta_log_init(default.max_phase)(theta_key, (state,)),
        }

    params, default = jax.tree.map(
        lambda v: np.asarray(v, np.float64), run_compiled(init, jax.random.key(0))
    )
    modulus = np.exp(-np.exp(params["nu_log"]))
    phase = np.exp(params["theta_log"])
    assert r_min - 1e-6 <= modulus.min() and modulus.max() <= r_max + 1e-6
    assert 0.0 <= phase.min() and phase.max() <= max_phase + 1e-6
    np.testing.assert_allclose(params["gamma_log"], np.log(np.sqrt(1.0 - modulus**2)), rtol=1e-5)
    # uniform on the ring: |λ|² ~ U[r_min², r_max²]; phase ~ U[0, max_phase] (5 standard errors)
    low, high = r_min**2, r_max**2
    assert abs(np.mean(modulus**2) - (low + high) / 2) < 5 * (high - low) / math.sqrt(12 * state)
    assert abs(np.std(modulus**2) - (high - low) / math.sqrt(12)) < 0.02
    assert abs(np.mean(phase) - max_phase / 2) < 5 * max_phase / math.sqrt(12 * state)
    # B ~ N(0, 1/(2F)), C ~ N(0, 1/N), full D ~ N(0, 1/F)
    for name, std in [("B_re", 1 / math.sqrt(2 * features)), ("C_im", 1 / math.sqrt(state))]:
        assert abs(np.std(params[name]) / std - 1.0) < 0.03, name
    assert params["D"].shape == (features, hidden)
    assert abs(np.std(params["D"]) * math.sqrt(features) - 1.0) < 0.1
    # the default ring (r_min = 0, r_max = 1, max_phase = 6.28): |λ|² ~ U[0, 1), all finite
    assert all(np.isfinite(v).all() for v in default.values())
    modulus = np.exp(-np.exp(default["nu_log"]))
    assert modulus.max() < 1.0 and abs(np.mean(modulus**2) - 0.5) < 5 / math.sqrt(12 * state)
    assert np.exp(default["theta_log"]).max() <= 6.28 + 1e-5


def test_gamma_is_precise_near_the_unit_circle():
    """|λ| = exp(-exp(-20)) rounds to 1 in float32; γ_log from ν_log keeps 1 - |λ|² ≈ 2e-9."""
    nu_log = np.array([-20.0, -5.0, 0.0, 2.0])
    expected = 0.5 * np.log(-np.expm1(-2.0 * np.exp(nu_log)))
    np.testing.assert_allclose(gamma_log_of(jnp.asarray(nu_log, jnp.float32)), expected, **TOL)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"r_min": -0.1}, "model.cell.r_min"),
        ({"r_min": 1.0}, "model.cell.r_min"),
        ({"r_min": 0.5, "r_max": 0.5}, "model.cell.r_max"),
        ({"r_min": 0.6, "r_max": 0.5}, "model.cell.r_max"),
        ({"r_max": 1.5}, "model.cell.r_max"),
        ({"max_phase": 0.0}, "model.cell.max_phase"),
        ({"max_phase": float("nan")}, "model.cell.max_phase"),
        ({"scan": "parallel"}, "model.cell.scan"),
        ({"chunk_size": 0}, "model.cell.chunk_size"),
        ({"state_size": 0}, "model.cell.state_size"),
        ({"state_size": 2.5}, "model.cell.state_size"),
    ],
)
def test_bad_options_name_their_key(options, key):
    with pytest.raises(ConfigError, match=key):
        LRUOptions(**options)


def test_spec_and_yaml():
    assert get("lru") is SPEC
    assert SPEC.block == "residual" and SPEC.scans[0] == "associative" == LRUOptions().scan
    assert SPEC.receptive_field is None
    options = LRUOptions(state_size=6)
    assert SPEC.state_size(options, 3, 4) == SPEC.probe_width(options, 3, 4) == 12
    assert SPEC.state_size(LRUOptions(), 3, 4) == 8
    carry = SPEC.initial_carry(options, 2, 3, 4)
    assert [(c.shape, c.dtype) for c in carry] == [((2, 6), jnp.float32)] * 2
    # per step: 2 N F (B u) + 2 H N (Re C x) + H (diagonal D) or F H multiply-adds, N = H
    assert SPEC.step_flops(LRUOptions(), 2, 5, 4, 4) == 2.0 * 2 * 5 * (2 * 16 + 2 * 16 + 4)
    assert SPEC.step_flops(LRUOptions(), 1, 1, 3, 4) == 2.0 * (2 * 12 + 2 * 16 + 12)
    conf = yaml.safe_load(CONF.read_text())
    assert conf["architecture"] == "lru" and {"cell": "lru_schema"} in conf["defaults"]
    defaults = {f.name: f.default for f in dataclasses.fields(LRUOptions)}
    assert conf["cell"] == defaults
