"""PyTorch state-dict conversion: names, shapes, round trip, and a torch-layout NumPy forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import random_variables, torch_batch

from seqbench.models import SequenceModel
from seqbench.models.architectures import get
from seqbench.models.torch_compat import from_torch_state_dict, to_torch_state_dict

CELLS = ("simple_rnn", "lstm", "gru")  # the architectures with a torch.nn counterpart
GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}


def torch_reference(cell, sd, x, lengths, n_layers, bidirectional):
    """nn.RNN/LSTM/GRU(batch_first=True) on a packed batch, from a state dict, in float64.

    x (B, T, F), lengths (B,) -> top-layer outputs (B, T, D*H), zeros at padded steps.
    """
    for k in range(n_layers):
        outs = []
        for suffix in ("", "_reverse")[: 1 + bidirectional]:
            names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            weights = (sd[f"{name}_l{k}{suffix}"] for name in names)
            outs.append(torch_batch(cell, x, lengths, *weights, reverse=bool(suffix))[0])
        x = np.concatenate(outs, axis=-1)
    return x


def expected_shapes(gates, features, hidden, n_layers, bidirectional):
    shapes = {}
    for k in range(n_layers):
        in_dim = features if k == 0 else hidden * (1 + bidirectional)
        for suffix in ("", "_reverse")[: 1 + bidirectional]:
            shapes[f"weight_ih_l{k}{suffix}"] = (gates * hidden, in_dim)
            shapes[f"weight_hh_l{k}{suffix}"] = (gates * hidden, hidden)
            shapes[f"bias_ih_l{k}{suffix}"] = (gates * hidden,)
            shapes[f"bias_hh_l{k}{suffix}"] = (gates * hidden,)
    return shapes


def test_lstm_names_and_shapes_follow_pytorch():
    model = SequenceModel(
        architecture=get("lstm"), hidden_size=5, output_dim=1, n_layers=2, bidirectional=True
    )
    sd = to_torch_state_dict(random_variables(model, jnp.zeros((1, 1, 3)), scale=1.0))
    assert sd["weight_ih_l0"].shape == (20, 3)
    assert sd["weight_ih_l1"].shape == (20, 10)
    assert sd["weight_hh_l1_reverse"].shape == (20, 5)
    assert "weight_ih_l0_reverse" in sd
    assert list(sd)[:8] == [  # PyTorch's own ordering
        *("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"),
        *("weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse"),
        "bias_hh_l0_reverse",
    ]
    assert all(isinstance(v, np.ndarray) for v in sd.values())


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_round_trip_is_identity(cell, bidirectional):
    model = SequenceModel(
        architecture=get(cell),
        hidden_size=4,
        output_dim=2,
        n_layers=2,
        bidirectional=bidirectional,
        encoder="linear",
        embed_dim=3,
    )
    variables = random_variables(model, jnp.zeros((1, 1, 2)), scale=1.0)
    sd = to_torch_state_dict(variables)
    assert {k: v.shape for k, v in sd.items()} == expected_shapes(
        GATES[cell], 3, 4, 2, bidirectional
    )
    for given in (variables, variables["params"]):  # full variables or the params tree
        back = from_torch_state_dict(sd, given)
        assert jax.tree.structure(back) == jax.tree.structure(given)
        for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(given), strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell", list(CELLS))
def test_loaded_state_dict_matches_numpy_torch_forward(cell):
    """A state dict made in PyTorch layout drives the flax model like nn.RNN/LSTM/GRU would."""
    features, hidden, out_dim, batch, time = 3, 4, 2, 3, 5
    model = SequenceModel(
        architecture=get(cell),
        hidden_size=hidden,
        output_dim=out_dim,
        n_layers=2,
        bidirectional=True,
        readout="every_step",
    )
    rng = np.random.default_rng(1)
    shapes = expected_shapes(GATES[cell], features, hidden, 2, True)
    sd = {name: 0.5 * rng.standard_normal(shape) for name, shape in shapes.items()}
    x = rng.standard_normal((batch, time, features))
    lengths = np.array([time, 2, 4])

    variables = from_torch_state_dict(
        sd, random_variables(model, jnp.zeros((1, 1, features)), scale=1.0)
    )
    y = model.apply(variables, jnp.asarray(x, jnp.float32), jnp.asarray(lengths))

    top = torch_reference(cell, sd, x, lengths, n_layers=2, bidirectional=True)
    readout = variables["params"]["readout"]
    want = top @ np.asarray(readout["kernel"]) + np.asarray(readout["bias"])
    want[np.arange(time)[None, :] >= lengths[:, None]] = 0.0
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=2e-5)
    for name, value in to_torch_state_dict(variables).items():
        np.testing.assert_allclose(value, sd[name], rtol=1e-6)


def test_bad_state_dicts_raise():
    model = SequenceModel(architecture=get("gru"), hidden_size=4, output_dim=1, n_layers=2)
    variables = random_variables(model, jnp.zeros((1, 1, 3)), scale=1.0)
    sd = to_torch_state_dict(variables)

    missing = {k: v for k, v in sd.items() if k != "bias_hh_l1"}
    with pytest.raises(ValueError, match=r"missing keys \['bias_hh_l1'\]"):
        from_torch_state_dict(missing, variables)

    extra = {**sd, "weight_ih_l0_reverse": sd["weight_ih_l0"]}
    with pytest.raises(ValueError, match=r"unexpected keys \['weight_ih_l0_reverse'\]"):
        from_torch_state_dict(extra, variables)

    not_transposed = {**sd, "weight_ih_l0": sd["weight_ih_l0"].T}
    with pytest.raises(ValueError, match=r"shape mismatch for 'weight_ih_l0'.*\(12, 3\)"):
        from_torch_state_dict(not_transposed, variables)

    wrong_gates = {**sd, "bias_ih_l1": np.zeros(16)}
    with pytest.raises(ValueError, match="bias_ih_l1"):
        from_torch_state_dict(wrong_gates, variables)

    with pytest.raises(ValueError, match="no recurrent layers"):
        to_torch_state_dict({"readout": variables["params"]["readout"]})
