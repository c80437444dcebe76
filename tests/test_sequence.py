"""SequenceModel: length masking, reverse direction, stacking, readouts, encoders, dropout."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import random_variables, torch_direction

from seqbench.models import SequenceModel
from seqbench.models.architectures import get
from seqbench.models.architectures.lstm import LSTMOptions

B, T, F, H, OUT = 3, 6, 3, 4, 2
CELLS = ("simple_rnn", "lstm", "gru")  # the architectures the NumPy reference covers
GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}


def make_model(cell="gru", **fields):
    """SequenceModel of architecture `cell`; the fields its options have go to them."""
    spec = get(cell)
    names = {f.name for f in dataclasses.fields(spec.options)}
    options = spec.options(**{k: fields.pop(k) for k in list(fields) if k in names})
    return SequenceModel(architecture=spec, cell=options, **fields)


@functools.cache
def jitted_apply(**fields):
    model = make_model(**fields)
    return model, jax.jit(model.apply, static_argnames="deterministic")


def torch_weights(p):
    """A flax cell's params (x @ w_ih layout) -> PyTorch-layout (w_ih, w_hh, b_ih, b_hh)."""
    return np.asarray(p["w_ih"]).T, np.asarray(p["w_hh"]).T, p["b_ih"], p["b_hh"]


def with_garbage(x, lengths, seed=1):
    """Copy of x (B, T, ...) with large random values at padded steps."""
    x = np.array(x, dtype=np.float32)
    pad = np.arange(x.shape[1])[None, :] >= np.asarray(lengths)[:, None]
    x[pad] = 1e3 * np.random.default_rng(seed).standard_normal(x[pad].shape)
    return x


@pytest.mark.parametrize("cell", list(CELLS))
def test_padding_does_not_change_last_readout(cell):
    model, apply = jitted_apply(
        cell=cell, hidden_size=H, output_dim=OUT, n_layers=2, bidirectional=True
    )
    lengths = np.array([T, 2])
    x = np.random.default_rng(0).standard_normal((2, T, F)).astype(np.float32)
    x[1, 2:] = 0.0
    variables = random_variables(model, x)
    y = apply(variables, x, jnp.asarray(lengths))
    y_garbage = apply(variables, with_garbage(x, lengths), jnp.asarray(lengths))
    np.testing.assert_allclose(y_garbage, y, rtol=1e-6, atol=1e-6)
    for b, n in enumerate(lengths):
        alone = apply(variables, x[b : b + 1, :n])
        np.testing.assert_allclose(y[b : b + 1], alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", list(CELLS))
def test_padding_does_not_change_final_carry(cell):
    spec = get(cell)
    module = spec.layer(spec.options(), H)

    @jax.jit
    def both_directions(variables, x, lengths=None):
        return [module.apply(variables, x, lengths, reverse=r)[1] for r in (False, True)]

    lengths = np.array([T, 1])
    x = np.random.default_rng(2).standard_normal((2, T, F)).astype(np.float32)
    variables = random_variables(module, x)
    carries = both_directions(variables, with_garbage(x, lengths), jnp.asarray(lengths))
    for b, n in enumerate(lengths):
        alone = both_directions(variables, x[b : b + 1, :n])
        for got, want in zip(jax.tree.leaves(carries), jax.tree.leaves(alone), strict=True):
            np.testing.assert_allclose(got[b : b + 1], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", list(CELLS))
@settings(max_examples=15, deadline=None)
@given(lengths=st.lists(st.integers(0, T), min_size=B, max_size=B))
def test_bidirectional_last_matches_numpy(cell, lengths):
    """[fwd h after step len-1, bwd h after steps len-1..0] -> Dense, against NumPy loops."""
    model, apply = jitted_apply(cell=cell, hidden_size=H, output_dim=OUT, bidirectional=True)
    x = np.random.default_rng(3).standard_normal((B, T, F))
    variables = random_variables(model, x.astype(np.float32), seed=4)
    y = apply(variables, with_garbage(x, lengths), jnp.asarray(lengths))

    p = variables["params"]
    for b, n in enumerate(lengths):
        last = np.concatenate(
            [
                torch_direction(cell, x[b], n, *torch_weights(p["layer_0_fwd"]))[1],
                torch_direction(cell, x[b], n, *torch_weights(p["layer_0_bwd"]), reverse=True)[1],
            ]
        )
        want = last @ np.asarray(p["readout"]["kernel"]) + np.asarray(p["readout"]["bias"])
        np.testing.assert_allclose(y[b], want, rtol=1e-4, atol=2e-5)


def test_every_step_readout_masks_padding_and_matches_last():
    lengths = jnp.array([T, 3, 0])
    x = np.random.default_rng(5).standard_normal((B, T, F)).astype(np.float32)
    every, apply_every = jitted_apply(
        cell="gru", hidden_size=H, output_dim=OUT, readout="every_step"
    )
    _, apply_last = jitted_apply(cell="gru", hidden_size=H, output_dim=OUT)
    variables = random_variables(every, x)
    y = np.asarray(apply_every(variables, x, lengths))
    assert y.shape == (B, T, OUT)
    pad = np.arange(T)[None, :] >= np.asarray(lengths)[:, None]
    assert (y[pad] == 0.0).all()
    assert (y[~pad] != 0.0).all()
    last = apply_last(variables, x, lengths)
    np.testing.assert_allclose(last[:2], y[[0, 1], [T - 1, 2]], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cell", list(CELLS))
def test_stacked_bidirectional_shapes(cell):
    model = make_model(cell, hidden_size=H, output_dim=OUT, n_layers=3, bidirectional=True)
    x = jnp.zeros((B, T, F))
    params = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
    names = {f"layer_{k}_{d}" for k in range(3) for d in ("fwd", "bwd")} | {"readout"}
    assert set(params) == names
    gh = GATES[cell] * H
    for k in range(3):
        for d in ("fwd", "bwd"):
            layer = params[f"layer_{k}_{d}"]
            assert layer["w_ih"].shape == ((F if k == 0 else 2 * H), gh)
            assert layer["w_hh"].shape == (H, gh)
    assert params["readout"]["kernel"].shape == (2 * H, OUT)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    assert jax.eval_shape(model.apply, variables, x, jnp.ones(B, int)).shape == (B, OUT)
    every = model.clone(readout="every_step")
    assert jax.eval_shape(every.apply, variables, x, jnp.ones(B, int)).shape == (B, T, OUT)


def test_one_hot_encoder_equals_one_hot_floats():
    vocab = 5
    tokens = np.random.default_rng(6).integers(0, vocab, size=(B, T))
    lengths = jnp.array([T, 4, 1])
    model, apply = jitted_apply(
        cell="lstm", hidden_size=H, output_dim=OUT, encoder="one_hot", vocab_size=vocab
    )
    _, apply_plain = jitted_apply(cell="lstm", hidden_size=H, output_dim=OUT)
    variables = random_variables(model, jnp.asarray(tokens))
    assert "encoder" not in variables["params"]
    y = apply(variables, jnp.asarray(tokens), lengths)
    y_plain = apply_plain(variables, jax.nn.one_hot(tokens, vocab), lengths)
    np.testing.assert_allclose(y, y_plain, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("encoder", ["embedding", "linear"])
def test_learned_encoders(encoder):
    """embedding = table lookup, linear = x @ kernel + bias, then the plain model."""
    rng = np.random.default_rng(7)
    lengths = jnp.array([T, 2, 5])
    if encoder == "embedding":
        inputs = jnp.asarray(rng.integers(0, 9, size=(B, T)))
        extra = {"vocab_size": 9}
    else:
        inputs = jnp.asarray(rng.standard_normal((B, T, F)), jnp.float32)
        extra = {}
    model, apply = jitted_apply(
        cell="simple_rnn", hidden_size=H, output_dim=OUT, encoder=encoder, **extra
    )
    variables = random_variables(model, inputs)
    enc = variables["params"]["encoder"]
    if encoder == "embedding":
        assert enc["embedding"].shape == (9, H)  # embed_dim defaults to hidden_size
        encoded = enc["embedding"][inputs]
    else:
        assert enc["kernel"].shape == (F, H)
        encoded = inputs @ enc["kernel"] + enc["bias"]
    _, apply_plain = jitted_apply(cell="simple_rnn", hidden_size=H, output_dim=OUT)
    plain_vars = {"params": {k: v for k, v in variables["params"].items() if k != "encoder"}}
    np.testing.assert_allclose(
        apply(variables, inputs, lengths),
        apply_plain(plain_vars, encoded, lengths),
        rtol=1e-5,
        atol=1e-6,
    )


def test_embed_dim_and_bad_inputs():
    model = make_model(
        "gru", hidden_size=H, output_dim=OUT, encoder="embedding", vocab_size=7, embed_dim=3
    )
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 2), int))["params"]
    assert params["encoder"]["embedding"].shape == (7, 3)
    assert params["layer_0_fwd"]["w_ih"].shape == (3, 3 * H)
    with pytest.raises(ValueError, match="int tokens"):
        jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 2, 7)))
    plain = make_model("gru", hidden_size=H, output_dim=OUT)
    with pytest.raises(ValueError, match=r"\(B, T, F\)"):
        jax.eval_shape(plain.init, jax.random.key(0), jnp.zeros((1, 2)))


def test_dropout_only_when_not_deterministic():
    stack = {"cell": "simple_rnn", "hidden_size": H, "output_dim": OUT, "n_layers": 2}
    model, apply = jitted_apply(**stack, dropout=0.5, readout="every_step")
    _, apply_no_dropout = jitted_apply(**stack, readout="every_step")
    x = np.random.default_rng(8).standard_normal((B, T, F)).astype(np.float32)
    lengths = jnp.array([T, 3, 1])
    variables = random_variables(model, x)
    key1, key2 = jax.random.split(jax.random.key(0, impl="rbg"))  # rbg: cheaper to compile
    y_det = apply(variables, x, lengths, rngs={"dropout": key1})
    np.testing.assert_array_equal(y_det, apply_no_dropout(variables, x, lengths))
    y1 = apply(variables, x, lengths, deterministic=False, rngs={"dropout": key1})
    y1_again = apply(variables, x, lengths, deterministic=False, rngs={"dropout": key1})
    y2 = apply(variables, x, lengths, deterministic=False, rngs={"dropout": key2})
    np.testing.assert_array_equal(y1, y1_again)
    assert not np.allclose(y1, y_det)
    assert not np.allclose(y1, y2)
    pad = np.arange(T)[None, :] >= np.asarray(lengths)[:, None]
    assert (np.asarray(y1)[pad] == 0.0).all()


def test_dropout_is_between_layers_only():
    x = np.random.default_rng(9).standard_normal((B, T, F)).astype(np.float32)
    model = make_model("gru", hidden_size=H, output_dim=OUT, dropout=0.5)
    variables = random_variables(model, x)
    y = model.apply(variables, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
    np.testing.assert_array_equal(y, model.apply(variables, x))


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"cell": "transformer"}, "architecture"),
        ({"encoder": "conv"}, "encoder"),
        ({"readout": "mean"}, "readout"),
        ({"n_layers": 0}, "n_layers"),
        ({"hidden_size": 0}, "hidden_size"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"recurrent_init": "xavier", "cell": "simple_rnn"}, "recurrent_init"),
        ({"activation": "gelu", "cell": "simple_rnn"}, "activation"),
        ({"encoder": "one_hot"}, "vocab_size"),
    ],
)
def test_bad_fields_raise(fields, bad):
    kwargs = {"cell": "gru", "hidden_size": H, "output_dim": OUT, **fields}
    with pytest.raises(ValueError, match=bad):
        make_model(**kwargs)


def test_architecture_and_options_must_match():
    with pytest.raises(ValueError, match="architecture"):
        SequenceModel(architecture="gru", hidden_size=H, output_dim=OUT)
    with pytest.raises(ValueError, match="cell"):
        SequenceModel(architecture=get("gru"), cell=LSTMOptions(), hidden_size=H, output_dim=OUT)


@pytest.mark.parametrize(
    ("cell", "options"),
    [
        ("simple_rnn", {"activation": "relu", "recurrent_init": "identity"}),
        ("lstm", {"forget_bias": 3.0}),
        ("gru", {}),
    ],
)
def test_cell_options_are_passed_through(cell, options):
    """Every layer is built by the architecture's factory with the model's options and its input
    projection (checked on shapes only)."""
    spec = get(cell)
    built = []

    def layer(options, hidden_size, *, remat=False, hoist_projection=False, name=None):
        module = spec.layer(
            options, hidden_size, remat=remat, hoist_projection=hoist_projection, name=name
        )
        built.append((options, module))
        return module

    recording = dataclasses.replace(spec, layer=layer)
    model = SequenceModel(
        architecture=recording,
        cell=spec.options(**options),
        hidden_size=H,
        output_dim=OUT,
        n_layers=2,
        hoist_projection=True,
    )
    jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 1, F)))
    assert sorted({m.name for _, m in built}) == ["layer_0_fwd", "layer_1_fwd"]
    for passed, module in built:
        assert module.hidden_size == H and module.hoist_projection
        assert passed == spec.options(**options)


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
def test_remat_changes_memory_not_values_or_gradients(cell):
    lengths = jnp.array([6, 3])
    x = jax.random.normal(jax.random.key(0), (2, 6, 3))
    plain = make_model(cell, hidden_size=5, output_dim=2, bidirectional=True)
    remat = plain.clone(remat=True)
    variables = plain.init(jax.random.key(1), x, lengths)

    def loss(model):
        return jax.jit(jax.value_and_grad(lambda v: jnp.sum(model.apply(v, x, lengths) ** 2)))

    (value_a, grads_a), (value_b, grads_b) = loss(plain)(variables), loss(remat)(variables)
    np.testing.assert_allclose(value_a, value_b, rtol=1e-6)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), grads_a, grads_b
    )
