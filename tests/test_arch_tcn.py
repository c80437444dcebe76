"""The TCN layer against a float64 PyTorch transcription of locuslab/TCN's TemporalConvNet
(TCN/tcn.py: TemporalBlock, Chomp1d), with our parameters copied in; streaming with the carry,
length masking, the reverse direction, causality, the receptive field, dropout, the gradient-flow
probe, the initialisation, the options and the presets."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from scan_checks import TOL, assert_trees_close, fast_jit
from torch import nn as tnn
from torch.nn.utils.parametrizations import weight_norm

from seqbench.config import ConfigError
from seqbench.models.architectures import get
from seqbench.models.architectures.tcn import TCNOptions

SPEC = get("tcn")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The reference's convolutions are tiny: PyTorch's thread pool only adds overhead."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- the reference, transcribed: Conv1d padded by (k-1)d on both sides, the right end chomped ----


class Chomp1d(tnn.Module):
    def __init__(self, chomp_size):
        super().__init__()
        self.chomp_size = chomp_size

    def forward(self, x):
        return x[:, :, : -self.chomp_size].contiguous()


class TorchTemporalBlock(tnn.Module):
    def __init__(self, n_inputs, n_outputs, kernel_size, dilation, padding, dropout):
        super().__init__()
        self.conv1 = weight_norm(
            tnn.Conv1d(n_inputs, n_outputs, kernel_size, padding=padding, dilation=dilation)
        )
        self.conv2 = weight_norm(
            tnn.Conv1d(n_outputs, n_outputs, kernel_size, padding=padding, dilation=dilation)
        )
        self.net = tnn.Sequential(
            self.conv1, Chomp1d(padding), tnn.ReLU(), tnn.Dropout(dropout),
            self.conv2, Chomp1d(padding), tnn.ReLU(), tnn.Dropout(dropout),
        )  # fmt: skip
        self.downsample = tnn.Conv1d(n_inputs, n_outputs, 1) if n_inputs != n_outputs else None

    def forward(self, x):
        res = x if self.downsample is None else self.downsample(x)
        return torch.relu(self.net(x) + res)


class TorchTemporalConvNet(tnn.Module):
    def __init__(self, num_inputs, num_channels, kernel_size, dropout=0.0):
        super().__init__()
        blocks = []
        for i, out_channels in enumerate(num_channels):
            in_channels = num_inputs if i == 0 else num_channels[i - 1]
            padding = (kernel_size - 1) * 2**i
            blocks.append(
                TorchTemporalBlock(in_channels, out_channels, kernel_size, 2**i, padding, dropout)
            )
        self.network = tnn.Sequential(*blocks)

    def forward(self, x):
        return self.network(x)


def torch_net(params, features, hidden, kernel_size, levels):
    """The reference in float64 with our Flax parameters copied in."""
    net = TorchTemporalConvNet(features, [hidden] * levels, kernel_size).double().eval()

    def t(a):
        return torch.from_numpy(np.asarray(a, np.float64))

    with torch.no_grad():
        for i, block in enumerate(net.network):
            ours = params[f"block_{i}"]
            for name in ("conv1", "conv2"):
                conv, p = getattr(block, name), ours[name]
                conv.parametrizations.weight.original0.copy_(t(p["g"])[:, None, None])
                conv.parametrizations.weight.original1.copy_(t(p["v"]).permute(2, 1, 0))
                conv.bias.copy_(t(p["bias"]))
            if block.downsample is not None:
                block.downsample.weight.copy_(t(ours["downsample"]["kernel"]).T[:, :, None])
                block.downsample.bias.copy_(t(ours["downsample"]["bias"]))
    return net


def torch_run(net, x, lengths=None, reverse=False):
    """Each row's valid prefix through the reference (flipped in time when reverse): x (B, T, F)
    -> outputs (B, T, H) with zeros at padded steps, and the carry: for every convolution, the
    last P inputs it saw (zeros before the start), (B, P, C) each."""
    batch, time, _ = x.shape
    lengths = np.full(batch, time) if lengths is None else np.asarray(lengths)
    convs = [conv for block in net.network for conv in (block.conv1, block.conv2)]
    seen = {}
    hooks = [
        conv.register_forward_hook(lambda m, inp, out, j=j: seen.__setitem__(j, inp[0][0]))
        for j, conv in enumerate(convs)
    ]
    outputs, carries = [], []
    for row, length in zip(x, lengths, strict=True):
        valid = np.asarray(row[:length], np.float64)
        if reverse:
            valid = valid[::-1].copy()
        seen.clear()
        if length:  # an empty row runs nothing (PyTorch refuses it): zero outputs and carry
            with torch.no_grad():
                out = net(torch.from_numpy(valid).T[None])[0].T.numpy()
        else:
            out = np.zeros((0, convs[-1].out_channels))
        if reverse:
            out = out[::-1]
        outputs.append(np.concatenate([out, np.zeros((time - length, out.shape[1]))]))
        row_carry = []
        for j, conv in enumerate(convs):
            pad = conv.padding[0]
            inputs = seen[j].T.numpy() if j in seen else np.zeros((0, conv.in_channels))
            padded = np.concatenate([np.zeros((pad, inputs.shape[1])), inputs])
            row_carry.append(padded[padded.shape[0] - pad :])
        carries.append(row_carry)
    for hook in hooks:
        hook.remove()
    return np.stack(outputs), tuple(np.stack(c) for c in zip(*carries, strict=True))


def random_params(rng, features, hidden, kernel_size, levels):
    """Flax parameters of a layer, drawn in NumPy (no JAX random-number compilation): v and the
    biases at the reference's scale, g away from ||v|| so that the normalisation is exercised."""
    params = {}
    for level in range(levels):
        width = features if level == 0 else hidden
        block = {}
        for name, channels in (("conv1", width), ("conv2", hidden)):
            bound = 1.0 / math.sqrt(kernel_size * channels)
            block[name] = {
                "v": rng.uniform(-bound, bound, (kernel_size, channels, hidden)),
                "g": rng.uniform(0.5, 1.5, hidden),
                "bias": rng.uniform(-bound, bound, hidden),
            }
        if width != hidden:
            block["downsample"] = {
                "kernel": rng.normal(0.0, 0.3, (width, hidden)),
                "bias": rng.uniform(-0.3, 0.3, hidden),
            }
        params[f"block_{level}"] = block
    return {"params": jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)}


def make(kernel_size=3, levels=2, hidden=4, dropout=0.0, remat=False, **options):
    options = SPEC.options(kernel_size=kernel_size, levels=levels, dropout=dropout, **options)
    return SPEC.layer(options, hidden, remat=remat), options


# One layer for most tests (k = 3, two levels, F = 3 -> H = 4 with a downsample; P = 2 and 4);
# each test compiles its calls as one function (JAX's compilation dominates the file's time).
B, T, F, H, K, LEVELS = 3, 12, 3, 4, 3, 2
LAYER, OPTIONS = make(K, LEVELS, H, dropout=0.3)  # dropout acts only with deterministic=False
RNG = np.random.default_rng(0)
VARIABLES = random_params(RNG, F, H, K, LEVELS)
X = RNG.standard_normal((B, T, F)).astype(np.float32)
LENGTHS = np.array([T, 7, 0])


def dropout_key(seed):
    return jax.random.key(seed, impl="unsafe_rbg")  # compiles much faster than threefry on CPU


# --- the reference ------------------------------------------------------------------------------


def all_variants(module, masks=(False, True)):
    """Compiled once: {(reverse, masked): (outputs, carry)} over the ways to run."""

    @fast_jit
    def run(variables, x, lengths):
        return {
            (reverse, masked): module.apply(variables, x, lengths if masked else None, reverse)
            for reverse in (False, True)
            for masked in masks
        }

    return run


VARIANTS = all_variants(LAYER)
OTHER = make(7, 2, 4)[0]  # F == H: no downsample; P = 6 and 12 > T: the carry reaches the padding


@pytest.mark.parametrize("case", ["downsample", "long_padding"])
def test_layer_matches_the_reference(case):
    if case == "downsample":
        variables, x, lengths, run, (k, levels, hidden) = VARIABLES, X, LENGTHS, VARIANTS, (K, 2, H)
    else:
        rng = np.random.default_rng(1)
        variables = random_params(rng, 4, 4, 7, 2)
        x = rng.standard_normal((2, 10, 4)).astype(np.float32)
        run = all_variants(OTHER, masks=(True,))  # without lengths: as in the other case
        lengths, (k, levels, hidden) = np.array([10, 4]), (7, 2, 4)
    net = torch_net(variables["params"], x.shape[-1], hidden, k, levels)
    results = run(variables, jnp.asarray(x), jnp.asarray(lengths))
    for (reverse, masked), (out, carry) in results.items():
        ref_out, ref_carry = torch_run(net, x, lengths if masked else None, reverse)
        assert out.shape == (*x.shape[:2], hidden)
        np.testing.assert_allclose(out, ref_out, **TOL)
        assert_trees_close(carry, ref_carry)
        if masked:
            padded = np.arange(x.shape[1])[None, :] >= lengths[:, None]
            assert (np.asarray(out)[padded] == 0.0).all()


def test_the_reference_transcription_is_not_vacuous():
    """A wrong dilation order (block 0 at 2, block 1 at 1) must disagree with the reference."""
    out = VARIANTS(VARIABLES, X, LENGTHS)[False, False][0]
    net = torch_net(VARIABLES["params"], F, H, K, LEVELS)
    for block, dilation in zip(net.network, (2, 1), strict=True):
        for conv in (block.conv1, block.conv2):
            conv.dilation, conv.padding = (dilation,), ((K - 1) * dilation,)
        for chomp in (block.net[1], block.net[5]):
            chomp.chomp_size = (K - 1) * dilation
    ref, _ = torch_run(net, X)
    assert np.max(np.abs(np.asarray(out) - ref)) > 1e-3


def test_the_first_carry_holds_the_last_valid_inputs():
    _, carry = VARIANTS(VARIABLES, X, LENGTHS)[False, True]
    assert [c.shape for c in carry] == [(B, 2, F), (B, 2, H), (B, 4, H), (B, 4, H)]
    np.testing.assert_array_equal(carry[0][0], X[0, T - 2 :])
    np.testing.assert_array_equal(carry[0][1], X[1, 5:7])
    assert not np.asarray(carry[0][2]).any()  # length 0: the zero carry it started from


# --- the carry: streaming, lengths, reverse -----------------------------------------------------


def test_two_calls_chained_by_the_carry_equal_one_call():
    zeros = SPEC.initial_carry(OPTIONS, B, F, H)
    half = T // 2

    @fast_jit  # one compilation for the chains of both directions
    def chains(variables, x):
        early, late = x[:, :half], x[:, half:]
        runs = {}
        for reverse in (False, True):
            first, second = (late, early) if reverse else (early, late)  # in the order they run
            out_first, carry = LAYER.apply(variables, first, reverse=reverse, initial_carry=zeros)
            out_second, final = LAYER.apply(variables, second, reverse=reverse, initial_carry=carry)
            joined = (out_second, out_first) if reverse else (out_first, out_second)
            runs["reverse" if reverse else "forward"] = jnp.concatenate(joined, axis=1), final
        runs["zeros"] = LAYER.apply(variables, x, initial_carry=zeros)  # the default: zeros
        return runs

    runs, variants = chains(VARIABLES, X), VARIANTS(VARIABLES, X, LENGTHS)
    for key in ("forward", "reverse", "zeros"):
        out, final = runs[key]
        whole, whole_carry = variants[key == "reverse", False]
        np.testing.assert_allclose(out, whole, **TOL)
        assert_trees_close(final, whole_carry)


def test_lengths_continue_from_a_carry_over_each_rows_valid_steps():
    """A segment continued from a non-zero carry, with lengths, against the reference over each
    row's history and valid steps joined (in reverse, the history is the later segment)."""
    zeros = SPEC.initial_carry(OPTIONS, B, F, H)
    half = T // 2
    history, segment = X[:, half:][:, ::-1] * 0.5 + 0.5, X[:, :half]
    lengths = np.array([half, 3, 0])  # 3 < P of the second level

    @fast_jit
    def continued(variables, history, segment, lengths):
        runs = {}
        for reverse in (False, True):
            _, carry = LAYER.apply(variables, history, reverse=reverse, initial_carry=zeros)
            runs[reverse] = LAYER.apply(variables, segment, lengths, reverse, initial_carry=carry)
        return runs

    runs = continued(VARIABLES, history, segment, lengths)
    net = torch_net(VARIABLES["params"], F, H, K, LEVELS)
    for reverse, (out, final) in runs.items():
        for b, length in enumerate(lengths):
            valid = segment[b, :length]
            row = np.concatenate([valid, history[b]] if reverse else [history[b], valid])[None]
            ref_out, ref_carry = torch_run(net, row, None, reverse)
            ref_out = ref_out[0, :length] if reverse else ref_out[0, half:]
            np.testing.assert_allclose(out[b, :length], ref_out, **TOL)
            assert (np.asarray(out[b, length:]) == 0.0).all()
            assert_trees_close(tuple(c[b] for c in final), tuple(c[0] for c in ref_carry))


# --- causality and the receptive field ----------------------------------------------------------


def test_outputs_do_not_depend_on_later_inputs():
    """Causal forwards; anti-causal in reverse (no dependence on earlier inputs)."""
    changed = X.copy()
    changed[:, 6:] = np.random.default_rng(5).standard_normal(changed[:, 6:].shape)
    out, changed_out = VARIANTS(VARIABLES, X, LENGTHS), VARIANTS(VARIABLES, changed, LENGTHS)
    np.testing.assert_array_equal(out[False, False][0][:, :6], changed_out[False, False][0][:, :6])
    assert np.max(np.abs(np.asarray(out[False, False][0] - changed_out[False, False][0]))) > 1e-3
    changed = X.copy()
    changed[:, :6] += 1.0
    out, changed_out = VARIANTS(VARIABLES, X, LENGTHS), VARIANTS(VARIABLES, changed, LENGTHS)
    np.testing.assert_array_equal(out[True, False][0][:, 6:], changed_out[True, False][0][:, 6:])


def test_the_receptive_field_is_the_gradient_support():
    """With every ReLU active (positive weights, biases and inputs), the last output's gradient
    reaches exactly the last 1 + 2(k-1)(2^n - 1) inputs (k = 3, n = 3: 29)."""
    module, options = make(3, 3, 3)
    field = SPEC.receptive_field(options)
    assert field == 29
    rng = np.random.default_rng(3)
    positive = jax.tree.map(lambda p: jnp.abs(p) + 0.05, random_params(rng, 2, 3, 3, 3))
    x = np.abs(rng.standard_normal((1, field + 4, 2))).astype(np.float32) + 0.1
    grad = fast_jit(jax.grad(lambda x: module.apply(positive, x)[0][:, -1].sum()))(x)
    support = np.flatnonzero(np.abs(np.asarray(grad[0])).sum(axis=-1) > 0)
    np.testing.assert_array_equal(support, np.arange(x.shape[1] - field, x.shape[1]))


# --- dropout, the probe, remat ------------------------------------------------------------------


def test_dropout_acts_only_when_not_deterministic_and_remat_changes_nothing():
    """Dropout acts in training only, its masks drawn from the "dropout" key; the rematerialised
    layer (dropout included) has the same outputs and gradients."""
    rematted, _ = make(K, LEVELS, H, dropout=0.3, remat=True)

    @fast_jit
    def runs(params, key, other_key):
        def loss(params, layer, key):
            rngs = {"dropout": key}
            out, carry = layer.apply({"params": params}, X, LENGTHS, deterministic=False, rngs=rngs)
            return jnp.sum(out**2) + sum(jnp.sum(c) for c in carry), out

        grads = [
            jax.value_and_grad(loss, has_aux=True)(params, layer, key)
            for layer in (LAYER, rematted)
        ]
        other = loss(params, LAYER, other_key)[1]
        ignored = LAYER.apply({"params": params}, X, LENGTHS, rngs={"dropout": key})[0]
        return grads, other, ignored

    grads, other, ignored = runs(VARIABLES["params"], dropout_key(1), dropout_key(2))
    ((value, out), grad), ((value_r, out_r), grad_r) = grads
    plain = VARIANTS(VARIABLES, X, LENGTHS)[False, True][0]
    np.testing.assert_allclose(ignored, plain, **TOL)  # deterministic: no dropout, rng or not
    assert np.max(np.abs(np.asarray(out - plain))) > 1e-3
    assert np.max(np.abs(np.asarray(out - other))) > 1e-3
    assert not np.asarray(out[2]).any()  # padded steps stay zero

    np.testing.assert_allclose(out_r, out, **TOL)  # the same masks when recomputed
    np.testing.assert_allclose(value_r, value, **TOL)

    def close(actual, expected):  # float32 sums in another order: relative to the largest entry
        scale = np.abs(np.asarray(expected)).max()
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * scale)

    jax.tree.map(close, grad_r, grad)


def test_hidden_offsets_are_added_to_the_inputs():
    assert SPEC.probe_width(OPTIONS, F, H) == F
    weights = np.random.default_rng(2).standard_normal((B, T, H)).astype(np.float32)

    @fast_jit
    def loss_and_grads(x, offsets):
        def loss(x, offsets):
            out, _ = LAYER.apply(VARIABLES, x, LENGTHS, hidden_offsets=offsets)
            return jnp.sum(out * weights)

        return jax.value_and_grad(loss, argnums=(0, 1))(x, offsets)

    zeros = np.zeros_like(X)
    value, (d_x, d_offsets) = loss_and_grads(X, zeros)
    plain = VARIANTS(VARIABLES, X, LENGTHS)[False, True][0]
    np.testing.assert_allclose(value, jnp.sum(plain * weights), **TOL)
    np.testing.assert_allclose(d_offsets, d_x, **TOL)
    assert np.abs(np.asarray(d_offsets)).max() > 0.0
    assert not np.asarray(d_offsets[1, 7:]).any() and not np.asarray(d_offsets[2]).any()
    shifted, _ = loss_and_grads(X, zeros + 0.5)
    np.testing.assert_allclose(shifted, loss_and_grads(X + 0.5, zeros)[0], **TOL)


# --- initialisation -----------------------------------------------------------------------------


def test_initialisation_is_the_references():
    """PyTorch's Conv1d default for v and the biases, g = ||v|| (so W = v at first), the 1x1
    downsample ~ N(0, 0.01); conv_init="normal" draws v ~ N(0, 0.01)."""
    shapes = jax.eval_shape(LAYER.init, jax.random.key(0), X)  # the tests' NumPy parameters
    assert jax.tree.map(jnp.shape, shapes) == jax.tree.map(jnp.shape, VARIABLES)
    features, hidden, k = 40, 64, 3
    modules = {init: make(k, 2, hidden, conv_init=init)[0] for init in ("pytorch", "normal")}
    inits = fast_jit(
        lambda key: {name: m.init(key, jnp.zeros((1, 4, features))) for name, m in modules.items()}
    )(dropout_key(0))
    for conv_init, variables in inits.items():
        params = variables["params"]
        for level, name, fan_in in ((0, "conv1", k * features), (1, "conv2", k * hidden)):
            conv = params[f"block_{level}"][name]
            bound = 1.0 / math.sqrt(fan_in)
            v = np.asarray(conv["v"])
            if conv_init == "pytorch":
                assert np.abs(v).max() <= bound
                assert np.std(v) == pytest.approx(bound / math.sqrt(3.0), rel=0.05)
            else:
                assert np.std(v) == pytest.approx(0.01, rel=0.05)
            np.testing.assert_allclose(conv["g"], np.sqrt((v**2).sum(axis=(0, 1))), rtol=1e-6)
            assert np.abs(np.asarray(conv["bias"])).max() <= bound
            assert np.std(np.asarray(conv["bias"])) > bound / 3.0
        downsample = params["block_0"]["downsample"]
        assert np.std(np.asarray(downsample["kernel"])) == pytest.approx(0.01, rel=0.05)
        assert np.abs(np.asarray(downsample["bias"])).max() <= 1.0 / math.sqrt(features)
        assert "downsample" not in params["block_1"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("kernel_size", 1), ("levels", 0), ("dropout", 1.0), ("dropout", -0.1), ("conv_init", "he")],
)
def test_bad_options_name_their_key(field, value):
    with pytest.raises(ConfigError, match=rf"^model\.cell\.{field}: "):
        TCNOptions(**{field: value})


def test_the_spec_describes_the_layer():
    assert SPEC.scans == () and SPEC.block == "plain" and SPEC.torch_module is None
    carry = SPEC.initial_carry(OPTIONS, B, F, H)
    _, final = VARIANTS(VARIABLES, X, LENGTHS)[False, True]
    assert jax.tree.structure(final) == jax.tree.structure(carry)
    assert [c.shape for c in final] == [c.shape for c in carry]
    assert all(c.dtype == jnp.float32 and not c.any() for c in carry)
    # P_i (C_i + H) summed over the levels: 2 (3 + 4) + 4 (4 + 4)
    assert SPEC.state_size(OPTIONS, F, H) == sum(c.size for c in carry) // B == 46
    assert SPEC.receptive_field(OPTIONS) == 1 + 2 * 2 * 3 == 13
    assert SPEC.receptive_field(TCNOptions(kernel_size=7, levels=8)) == 3061
    defaults = TCNOptions()  # step_flops: the default options (k = 2, 8 levels)
    assert (defaults.kernel_size, defaults.levels) == (2, 8)
    per_level = 2 * 2 * (5 + 5) * 5  # 2 k (C + H) H per step and example
    expected = 2 * 7 * (per_level * 8 + 2 * 2 * (3 - 5) * 5 + 2 * 3 * 5)
    assert SPEC.step_flops(SPEC.options(), 2, 7, 3, 5) == expected


PRESETS = {  # the locuslab/TCN scripts' --ksize, --levels, --dropout defaults
    "paper_adding_600": (7, 8, 0.0),
    "paper_copy_1000": (8, 8, 0.0),
    "paper_smnist": (7, 8, 0.05),
    "paper_pmnist": (7, 8, 0.05),
    "paper_jsb": (5, 4, 0.25),
    "paper_char_ptb": (3, 3, 0.1),
}


def test_the_model_config_composes(compose_config):
    from seqbench.store import validate

    cfg = validate(compose_config(["model=tcn"]))
    assert cfg.model.architecture == "tcn" and cfg.model.cell == TCNOptions()
    for preset, (k, levels, dropout) in PRESETS.items():
        cfg = validate(compose_config([f"experiment={preset}", "model=tcn"]))
        assert cfg.model.cell == TCNOptions(kernel_size=k, levels=levels, dropout=dropout)
