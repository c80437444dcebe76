"""Every registered architecture keeps the `SequenceLayer` contract (base.py), whatever its form.

For each architecture, and each of its scans: a sequence split in two and continued from the carry
equals the whole sequence (truncated backpropagation through time); padded steps leave the carry
unchanged and output zeros; the reverse direction equals the forward one over each row's reversed
valid prefix; zero hidden offsets change nothing and their gradient has the probe's width;
rematerialisation changes neither outputs nor gradients. In both blocks, `param_budget` lands
within 2% for every architecture, and `Spec.state_size` counts the carry's floats.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqbench.config import ModelConfig
from seqbench.models.architectures import ARCHITECTURES
from seqbench.models.build import build_model
from seqbench.models.sequence import SequenceModel
from seqbench.tasks.base import TaskSpec

B, T, F, H = 3, 11, 5, 6
LENGTHS = jnp.array([T, 7, 1])


def variants():
    """(architecture, options) pairs: every architecture, once per scan."""
    cases = []
    for name, spec in ARCHITECTURES.items():
        for scan in spec.scans or (None,):
            options = spec.options() if scan is None else spec.options(scan=scan)
            cases.append(pytest.param(spec, options, id=name if scan is None else f"{name}-{scan}"))
    return cases


def inputs(seed=0, features=F):
    return jax.random.normal(jax.random.key(seed), (B, T, features))


def setup(spec, options, remat=False, features=F):
    layer = spec.layer(options, H, remat=remat)
    x = inputs(features=features)
    variables = layer.init(jax.random.key(1), x)
    # a non-zero starting carry: the state after a random prefix
    prefix = jax.random.normal(jax.random.key(2), (B, 4, features))
    _, carry = layer.apply(variables, prefix)
    return layer, variables, x, carry


def close(a, b, rtol=1e-5, atol=1e-5):
    for left, right in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(left), np.asarray(right), rtol=rtol, atol=atol)


@pytest.mark.parametrize(("spec", "options"), variants())
def test_continuing_from_the_carry_equals_one_call(spec, options):
    layer, variables, x, carry = setup(spec, options)
    whole, final = layer.apply(variables, x, initial_carry=carry)
    first, middle = layer.apply(variables, x[:, :5], initial_carry=carry)
    second, final_split = layer.apply(variables, x[:, 5:], initial_carry=middle)
    close(jnp.concatenate([first, second], axis=1), whole)
    close(final_split, final)
    assert jax.tree.structure(carry) == jax.tree.structure(spec.initial_carry(options, B, F, H))
    assert sum(leaf.size for leaf in jax.tree.leaves(carry)) == B * spec.state_size(options, F, H)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(carry))


@pytest.mark.parametrize(("spec", "options"), variants())
def test_padded_steps_hold_the_carry_and_output_zeros(spec, options):
    layer, variables, x, carry = setup(spec, options)
    outputs, final = layer.apply(variables, x, LENGTHS, initial_carry=carry)
    for row, length in enumerate(np.asarray(LENGTHS)):
        alone_carry = jax.tree.map(lambda c, r=row: c[r : r + 1], carry)
        alone, alone_final = layer.apply(
            variables, x[row : row + 1, :length], initial_carry=alone_carry
        )
        close(outputs[row, :length], alone[0])
        np.testing.assert_array_equal(np.asarray(outputs[row, length:]), 0.0)
        close(jax.tree.map(lambda c, r=row: c[r], final), jax.tree.map(lambda c: c[0], alone_final))


@pytest.mark.parametrize(("spec", "options"), variants())
def test_reverse_runs_each_valid_prefix_backwards(spec, options):
    layer, variables, x, carry = setup(spec, options)
    outputs, final = layer.apply(variables, x, LENGTHS, reverse=True, initial_carry=carry)
    for row, length in enumerate(np.asarray(LENGTHS)):
        flipped = x[row : row + 1, :length][:, ::-1]
        alone_carry = jax.tree.map(lambda c, r=row: c[r : r + 1], carry)
        alone, alone_final = layer.apply(variables, flipped, initial_carry=alone_carry)
        close(outputs[row, :length], alone[0, ::-1])
        np.testing.assert_array_equal(np.asarray(outputs[row, length:]), 0.0)
        close(jax.tree.map(lambda c, r=row: c[r], final), jax.tree.map(lambda c: c[0], alone_final))


@pytest.mark.parametrize(("spec", "options"), variants())
def test_zero_offsets_change_nothing_and_probe_every_step(spec, options):
    layer, variables, x, carry = setup(spec, options)
    width = spec.probe_width(options, F, H) if spec.probe_width else H
    zeros = jnp.zeros((B, T, width))
    plain, _ = layer.apply(variables, x, LENGTHS, initial_carry=carry)
    probed, _ = layer.apply(variables, x, LENGTHS, initial_carry=carry, hidden_offsets=zeros)
    close(probed, plain)

    def loss(offsets):
        out, _ = layer.apply(variables, x, initial_carry=carry, hidden_offsets=offsets)
        return jnp.sum(out[:, -1] ** 2)

    grads = jax.grad(loss)(zeros)
    assert grads.shape == (B, T, width)
    assert np.all(np.isfinite(np.asarray(grads)))
    assert float(jnp.abs(grads[:, -1]).sum()) > 0.0  # the last step always reaches the loss


@pytest.mark.parametrize(("spec", "options"), variants())
def test_remat_changes_neither_outputs_nor_gradients(spec, options):
    layer, variables, x, carry = setup(spec, options)
    remat_layer = spec.layer(options, H, remat=True)

    def loss(params, module):
        out, _ = module.apply({**variables, "params": params}, x, LENGTHS, initial_carry=carry)
        return jnp.sum(jnp.sin(out))

    params = variables["params"]
    close(loss(params, remat_layer), loss(params, layer))
    close(jax.grad(loss)(params, remat_layer), jax.grad(loss)(params, layer), rtol=1e-4)


@pytest.mark.parametrize("block", ["plain", "residual"])
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_param_budget_lands_within_two_percent_in_both_blocks(name, block):
    spec = ARCHITECTURES[name]
    task = TaskSpec("real", 2, 1, 100, "last")
    for budget, layers in ((5_000, 1), (70_000, 2)):
        config = ModelConfig(
            architecture=name,
            cell=spec.options(),
            block=block,
            param_budget=budget,
            n_layers=layers,
        )
        built = build_model(config, task)
        assert abs(built.param_count - budget) <= 0.02 * budget, (name, block, budget, built)
        assert built.model.block == block


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_residual_model_carries_state_and_probes_every_layer(name):
    spec = ARCHITECTURES[name]
    model = SequenceModel(
        architecture=spec,
        hidden_size=8,
        output_dim=2,
        n_layers=2,
        block="residual",
        encoder="linear",
        readout="every_step",
    )
    x = jax.random.normal(jax.random.key(0), (B, T, 3))
    variables = model.init(jax.random.key(1), x)
    whole, carries = model.apply(variables, x, return_carry=True)
    first, middle = model.apply(variables, x[:, :4], return_carry=True)
    second, _ = model.apply(variables, x[:, 4:], initial_carry=middle, return_carry=True)
    close(jnp.concatenate([first, second], axis=1), whole)
    assert jax.tree.structure(carries) == jax.tree.structure(model.initial_carry(B, 3))
    offsets = tuple(jnp.zeros((B, T, w)) for w in model.probe_widths(3))
    close(model.apply(variables, x, hidden_offsets=offsets), whole)
