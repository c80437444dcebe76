"""Every registered architecture keeps the `SequenceLayer` contract (base.py), whatever its form.

For each architecture: a sequence split in two and continued from the carry equals the whole
sequence (truncated backpropagation through time; with each of its scans); padded steps leave the carry
unchanged and output zeros; the reverse direction equals the forward one over each row's reversed
valid prefix; zero hidden offsets change nothing and their gradient has the probe's width;
rematerialisation changes neither outputs nor gradients. In both blocks, `param_budget` lands
within 2% for every architecture, and `Spec.state_size` counts the carry's floats.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scan_checks import fast_jit, run_compiled

from seqbench.config import ModelConfig
from seqbench.models.architectures import ARCHITECTURES
from seqbench.models.build import build_model
from seqbench.models.sequence import SequenceModel
from seqbench.tasks.base import TaskSpec

B, T, F, H = 3, 11, 5, 6
LENGTHS = jnp.array([T, 7, 1])


#: options that keep an architecture's programs small here (the contract holds for any)
SMALL = {"tcn": {"levels": 3}}

#: the architectures whose residual-block check runs by default: a tuple carry (lstm), a carry
#: of differently shaped arrays (rglru), probes of the input width (tcn); the others under -m slow
#: (each trains end to end in its default block in test_architecture_training.py)
RESIDUAL_BY_DEFAULT = ("lstm", "rglru", "tcn")


def variants(every_scan=False):
    """(architecture, options) pairs: every architecture with its default options (`SMALL`), or
    also once per other scan (`every_scan`), those under -m slow: test_linear_scan.py checks
    every scan from a non-zero initial state and the per-architecture tests compare the scans."""
    cases = []
    for name, spec in ARCHITECTURES.items():
        default = spec.options(**SMALL.get(name, {}))
        cases.append(pytest.param(spec, default, id=name))
        others = [scan for scan in spec.scans if scan != getattr(default, "scan", None)]
        for scan in others if every_scan else ():
            options = spec.options(scan=scan, **SMALL.get(name, {}))
            slow = pytest.mark.slow
            cases.append(pytest.param(spec, options, id=f"{name}-{scan}", marks=slow))
    return cases


def setup(spec, options, remat=False):
    """The layer, its variables, inputs (B, T, F) and a non-zero carry (after a random prefix)."""
    layer = spec.layer(options, H, remat=remat)
    x = jax.random.normal(jax.random.key(0), (B, T, F))
    prefix = jax.random.normal(jax.random.key(2), (B, 4, F))

    def start(x, prefix):
        variables = layer.init(jax.random.key(1), x)
        return variables, layer.apply(variables, prefix)[1]

    variables, carry = fast_jit(start)(x, prefix)
    return layer, variables, x, carry


def close(a, b, rtol=1e-5, atol=1e-5):
    for left, right in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(left), np.asarray(right), rtol=rtol, atol=atol)


def row(tree, index):
    """Row `index` of every leaf, keeping a batch axis of 1."""
    return jax.tree.map(lambda leaf: leaf[index : index + 1], tree)


@pytest.mark.parametrize(("spec", "options"), variants(every_scan=True))
def test_continuing_from_the_carry_equals_one_call(spec, options):
    layer, variables, x, carry = setup(spec, options)

    def run(x, carry):
        whole, final = layer.apply(variables, x, initial_carry=carry)
        first, middle = layer.apply(variables, x[:, :5], initial_carry=carry)
        second, final_split = layer.apply(variables, x[:, 5:], initial_carry=middle)
        return whole, final, jnp.concatenate([first, second], axis=1), final_split

    whole, final, split, final_split = run_compiled(run, x, carry)
    close(split, whole)
    close(final_split, final)
    assert jax.tree.structure(carry) == jax.tree.structure(spec.initial_carry(options, B, F, H))
    assert sum(leaf.size for leaf in jax.tree.leaves(carry)) == B * spec.state_size(options, F, H)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(carry))


@pytest.mark.parametrize(("spec", "options"), variants())
def test_padded_steps_hold_the_carry_and_reverse_runs_each_valid_prefix_backwards(spec, options):
    layer, variables, x, carry = setup(spec, options)
    lengths = [int(n) for n in LENGTHS]

    def run(x, carry):
        results = {}
        for reverse in (False, True):
            results[str(reverse)] = layer.apply(
                variables, x, LENGTHS, reverse=reverse, initial_carry=carry
            )
            for r, n in enumerate(lengths):
                valid = x[r : r + 1, :n]
                results[f"{reverse}-{r}"] = layer.apply(
                    variables, valid[:, ::-1] if reverse else valid, initial_carry=row(carry, r)
                )
        return results

    results = run_compiled(run, x, carry)
    for reverse in (False, True):
        outputs, final = results[str(reverse)]
        for r, n in enumerate(lengths):
            alone, alone_final = results[f"{reverse}-{r}"]
            close(outputs[r, :n], alone[0, ::-1] if reverse else alone[0])
            np.testing.assert_array_equal(outputs[r, n:], 0.0)
            close(row(final, r), alone_final)


@pytest.mark.parametrize(("spec", "options"), variants())
def test_zero_offsets_change_nothing_and_probe_every_step(spec, options):
    layer, variables, x, carry = setup(spec, options)
    width = spec.probe_width(options, F, H) if spec.probe_width else H
    zeros = jnp.zeros((B, T, width))

    def run(x, carry, offsets):
        plain, _ = layer.apply(variables, x, LENGTHS, initial_carry=carry)
        probed, _ = layer.apply(variables, x, LENGTHS, initial_carry=carry, hidden_offsets=offsets)

        def loss(offsets):
            out, _ = layer.apply(variables, x, initial_carry=carry, hidden_offsets=offsets)
            return jnp.sum(out[:, -1] ** 2)

        return plain, probed, jax.grad(loss)(offsets)

    plain, probed, grads = run_compiled(run, x, carry, zeros)
    close(probed, plain)
    assert grads.shape == (B, T, width)
    assert np.all(np.isfinite(grads))
    assert float(np.abs(grads[:, -1]).sum()) > 0.0  # the last step always reaches the loss


@pytest.mark.parametrize(("spec", "options"), variants())
def test_remat_changes_neither_outputs_nor_gradients(spec, options):
    layer, variables, x, carry = setup(spec, options)
    remat_layer = spec.layer(options, H, remat=True)

    def run(params, x, carry):
        def loss(params, module):
            out, _ = module.apply({**variables, "params": params}, x, LENGTHS, initial_carry=carry)
            return jnp.sum(jnp.sin(out))

        return [jax.value_and_grad(loss)(params, module) for module in (layer, remat_layer)]

    plain, remat = run_compiled(run, variables["params"], x, carry)
    close(remat[0], plain[0])
    close(remat[1], plain[1], rtol=1e-4)


@pytest.mark.parametrize("block", ["plain", "residual"])
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_param_budget_lands_within_two_percent_in_both_blocks(name, block):
    spec = ARCHITECTURES[name]
    task = TaskSpec("real", 2, 1, 100, "last")
    budget, layers = (5_000, 1) if block == "plain" else (20_000, 2)
    config = ModelConfig(
        architecture=name,
        cell=spec.options(**SMALL.get(name, {})),
        block=block,
        param_budget=budget,
        n_layers=layers,
    )
    built = build_model(config, task)
    assert abs(built.param_count - budget) <= 0.02 * budget, (name, block, budget, built)
    assert built.model.block == block


@pytest.mark.parametrize(
    "name",
    [
        name if name in RESIDUAL_BY_DEFAULT else pytest.param(name, marks=pytest.mark.slow)
        for name in ARCHITECTURES
    ],
)
def test_residual_model_carries_state_and_probes_every_layer(name):
    spec = ARCHITECTURES[name]
    model = SequenceModel(
        architecture=spec,
        cell=spec.options(**SMALL.get(name, {})),
        hidden_size=8,
        output_dim=2,
        n_layers=2,
        block="residual",
        encoder="linear",
        readout="every_step",
    )
    x = jax.random.normal(jax.random.key(0), (B, T, 3))
    offsets = tuple(jnp.zeros((B, T, w)) for w in model.probe_widths(3))

    def run(x, offsets):
        variables = model.init(jax.random.key(1), x)
        whole, carries = model.apply(variables, x, return_carry=True)
        first, middle = model.apply(variables, x[:, :4], return_carry=True)
        second, _ = model.apply(variables, x[:, 4:], initial_carry=middle, return_carry=True)
        probed = model.apply(variables, x, hidden_offsets=offsets)
        return whole, carries, jnp.concatenate([first, second], axis=1), probed

    whole, carries, split, probed = run_compiled(run, x, offsets)
    close(split, whole)
    close(probed, whole)
    assert jax.tree.structure(carries) == jax.tree.structure(model.initial_carry(B, 3))
