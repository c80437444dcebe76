"""Cells against a float64 NumPy step loop of the PyTorch nn.RNN / nn.LSTM / nn.GRU equations."""

import dataclasses
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import random_torch_weights, torch_batch

from seqbench.config import ConfigError
from seqbench.models.architectures import get
from seqbench.models.architectures.lstm import LSTMOptions

CELLS = ("simple_rnn", "lstm", "gru")  # the architectures the NumPy reference covers
GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}


def layer(cell, hidden_size, remat=False, hoist_projection=False, **options):
    """One direction of `cell`'s layer with these options (the rest at their defaults)."""
    spec = get(cell)
    return spec.build_layer(
        spec.options(**options), hidden_size, remat=remat, hoist_projection=hoist_projection
    )


def as_flax_params(w_ih, w_hh, b_ih, b_hh):
    params = {"w_ih": w_ih.T, "w_hh": w_hh.T, "b_ih": b_ih, "b_hh": b_hh}
    return {"params": {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}}


SHAPES = [(1, 1, 1, 1), (1, 4, 5, 3), (3, 7, 2, 4)]  # (B, T, F, H)
TOL = {"rtol": 1e-4, "atol": 2e-5}


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}T{}F{}H{}".format(*s))
def test_cell_matches_numpy_reference(cell, shape):
    batch, time, features, hidden = shape
    rng = np.random.default_rng([list(CELLS).index(cell), *shape])
    weights = random_torch_weights(rng, GATES[cell], features, hidden)
    x = rng.standard_normal((batch, time, features)).astype(np.float32)
    lengths = rng.integers(0, time + 1, size=batch)
    lengths[0] = time  # always exercise a full-length row
    # the input projection in the step and hoisted out of the loop (trainer.input_projection)
    modules = {hoist: layer(cell, hidden, hoist_projection=hoist) for hoist in (False, True)}

    @jax.jit  # one compilation for all eight variants
    def run(variables, x, lengths):
        return {
            (reverse, masked, hoist): module.apply(
                variables, x, lengths if masked else None, reverse
            )
            for reverse in (False, True)
            for masked in (False, True)
            for hoist, module in modules.items()
        }

    results = run(as_flax_params(*weights), x, jnp.asarray(lengths))
    padded = np.arange(time)[None, :] >= lengths[:, None]
    for (reverse, masked, _), (out, carry) in results.items():
        lens = lengths if masked else np.full(batch, time)
        ref_out, ref_h, ref_c = torch_batch(cell, x, lens, *weights, reverse=reverse)
        assert out.shape == (batch, time, hidden)
        np.testing.assert_allclose(out, ref_out, **TOL)
        h, c = carry if cell == "lstm" else (carry, None)
        np.testing.assert_allclose(h, ref_h, **TOL)
        if cell == "lstm":
            np.testing.assert_allclose(c, ref_c, **TOL)
        if masked:
            assert (np.asarray(out)[padded] == 0.0).all()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gate_order_is_checked(cell):
    """Swapping the first two gate blocks must break agreement with the reference."""
    rng = np.random.default_rng(0)
    weights = random_torch_weights(rng, GATES[cell], 3, 4, scale=1.0)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    perm = np.r_[4:8, 0:4, 8 : GATES[cell] * 4]
    swapped = [w[perm] for w in weights]
    out, _ = layer(cell, 4).apply(as_flax_params(*swapped), x)
    ref, _, _ = torch_batch(cell, x, np.array([5, 5]), *weights)
    assert np.max(np.abs(np.asarray(out) - ref)) > 1e-2


def test_simple_rnn_relu_identity_init():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)
    module = layer("simple_rnn", 4, activation="relu", recurrent_init="identity")
    params = module.init(jax.random.key(0), x[:, :1])["params"]
    np.testing.assert_array_equal(params["w_hh"], np.eye(4))

    weights = random_torch_weights(rng, 1, 3, 4, scale=0.4)
    lengths = np.array([6, 4])
    out, h = module.apply(as_flax_params(*weights), x, jnp.asarray(lengths))
    relu = lambda a: np.maximum(a, 0.0)  # noqa: E731
    ref_out, ref_h, _ = torch_batch("simple_rnn", x, lengths, *weights, act=relu)
    np.testing.assert_allclose(out, ref_out, **TOL)
    np.testing.assert_allclose(h, ref_h, **TOL)
    assert (np.asarray(out) >= 0).all() and (np.asarray(out) == 0).any()


@pytest.mark.parametrize("cell", list(CELLS))
def test_default_init(cell):
    features, hidden, gates = 3, 4, GATES[cell]
    kwargs = {"forget_bias": 2.5} if cell == "lstm" else {}
    module = layer(cell, hidden, **kwargs)
    params = module.init(jax.random.key(3), jnp.zeros((1, 1, features)))
    p = params["params"]
    assert {k: v.shape for k, v in p.items()} == {
        "w_ih": (features, gates * hidden),
        "w_hh": (hidden, gates * hidden),
        "b_ih": (gates * hidden,),
        "b_hh": (gates * hidden,),
    }
    assert all(v.dtype == jnp.float32 for v in p.values())

    blocks = np.split(np.asarray(p["w_hh"], np.float64), gates, axis=1)
    for q in blocks:
        np.testing.assert_allclose(q.T @ q, np.eye(hidden), atol=1e-5)
    for a, b in itertools.pairwise(blocks):
        assert not np.allclose(a, b)

    # Glorot per gate block: bound uses fan_out H, not G*H.
    limit = np.sqrt(6.0 / (features + hidden))
    w_ih = np.abs(np.asarray(p["w_ih"]))
    assert w_ih.max() <= limit
    assert w_ih.max() > (0.9 * limit if gates == 1 else np.sqrt(6.0 / (features + gates * hidden)))

    np.testing.assert_array_equal(p["b_hh"], 0.0)
    if cell == "lstm":  # forget_bias lands in the forget block (i, f, g, o) of b_ih only
        i, f, g, o = np.split(np.asarray(p["b_ih"]), 4)
        np.testing.assert_array_equal(f, 2.5)
        np.testing.assert_array_equal(np.concatenate([i, g, o]), 0.0)
        assert LSTMOptions().forget_bias == 1.0
    else:
        np.testing.assert_array_equal(p["b_ih"], 0.0)


@pytest.mark.parametrize(
    ("cell", "options", "key"),
    [
        ("simple_rnn", {"recurrent_init": "glorot"}, "model.cell.recurrent_init"),
        ("simple_rnn", {"activation": "sigmoid"}, "model.cell.activation"),
        ("lstm", {"forget_bias": math.nan}, "model.cell.forget_bias"),
    ],
)
def test_bad_options_raise_a_config_error_naming_the_key(cell, options, key):
    with pytest.raises(ConfigError, match=rf"^{key}: "):
        get(cell).options(**options)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_identity_init_is_not_an_option_of_the_gated_cells(cell):
    options = get(cell).options
    assert "recurrent_init" not in {f.name for f in dataclasses.fields(options)}
    with pytest.raises(TypeError, match="recurrent_init"):
        options(recurrent_init="identity")


def test_bad_hidden_size_raises():
    with pytest.raises(ValueError, match="hidden_size"):
        layer("lstm", 0).init(jax.random.key(0), jnp.zeros((1, 2, 2)))


def test_length_zero_row_and_jit():
    """A zero-length row keeps the zero carry and outputs zeros; the cell runs under jit."""
    module = layer("gru", 3)
    x = jnp.ones((2, 4, 2))
    variables = as_flax_params(*random_torch_weights(np.random.default_rng(0), 3, 2, 3))
    out, h = jax.jit(module.apply, static_argnames="reverse")(
        variables, x, jnp.array([0, 4]), reverse=True
    )
    np.testing.assert_array_equal(out[0], 0.0)
    np.testing.assert_array_equal(h[0], 0.0)
    assert np.abs(np.asarray(out[1])).min() > 0


def _reference_objective(cell, x, lengths, weights, reverse, probes):
    """Float64 scalar: the NumPy reference's outputs and final carry against fixed probes."""
    out, h, c = torch_batch(cell, x, lengths, *weights, reverse=reverse)
    value = np.sum(out * probes[0]) + np.sum(h * probes[1])
    return value + (np.sum(c * probes[2]) if cell == "lstm" else 0.0)


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_gradients_match_finite_differences_of_reference(cell, reverse):
    """The hand-written backward pass (and the remat autodiff path) against central differences
    of the float64 NumPy step loop, for every weight, the inputs, padded rows included."""
    batch, time, features, hidden = 3, 6, 2, 3
    rng = np.random.default_rng([7, list(CELLS).index(cell), reverse])
    weights = random_torch_weights(rng, GATES[cell], features, hidden)
    x = rng.standard_normal((batch, time, features))
    lengths = np.array([time, 3, 0])
    probes = [
        rng.standard_normal(s) for s in [(batch, time, hidden), (batch, hidden), (batch, hidden)]
    ]

    def numeric_grad(array, objective, eps=1e-6):
        grad = np.zeros_like(array)
        for idx in np.ndindex(array.shape):
            saved = array[idx]
            array[idx] = saved + eps
            up = objective()
            array[idx] = saved - eps
            down = objective()
            array[idx] = saved
            grad[idx] = (up - down) / (2 * eps)
        return grad

    def objective():
        return _reference_objective(cell, x, lengths, weights, reverse, probes)

    expected = [numeric_grad(w, objective) for w in weights] + [numeric_grad(x, objective)]

    for remat, hoist in ((False, False), (False, True), (True, False)):
        module = layer(cell, hidden, remat=remat, hoist_projection=hoist)

        def loss(variables, inputs, module=module):
            out, carry = module.apply(variables, inputs, jnp.asarray(lengths), reverse)
            h, c = carry if cell == "lstm" else (carry, None)
            value = jnp.sum(out * probes[0]) + jnp.sum(h * probes[1])
            return value + (jnp.sum(c * probes[2]) if cell == "lstm" else 0.0)

        grads, grad_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(
            as_flax_params(*weights), jnp.asarray(x, jnp.float32)
        )
        p = grads["params"]
        got = [p["w_ih"].T, p["w_hh"].T, p["b_ih"], p["b_hh"], grad_x]
        for name, g, e in zip(["w_ih", "w_hh", "b_ih", "b_hh", "x"], got, expected, strict=True):
            message = f"{name} remat={remat} hoisted={hoist}"
            np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-4, err_msg=message)
