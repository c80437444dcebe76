"""The RG-LRU recurrent block against the packaged reference, google-deepmind/recurrentgemma 1.0.1
(`recurrentgemma.jax.modules.RecurrentBlock`, run with our parameter tree, which is its own), then
every scan against the sequential one, the initialisers and the options.

Compilation dominates on a CPU, so the layer runs in few jitted programs (module-scoped
fixtures) and the parameters are drawn in NumPy."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference
import yaml
from scan_checks import (
    TOL,
    as_numpy,
    assert_like_sequential,
    assert_padding_respected,
    assert_trees_close,
    differentiate,
    fast_jit,
    spec_layer,
)

from seqbench.config import ConfigError
from seqbench.models.architectures import get
from seqbench.models.architectures.rglru import SCANS, RGLRUOptions, a_param_init

pytest.importorskip("recurrentgemma.jax")
from recurrentgemma import common
from recurrentgemma.jax import layers as ref_layers
from recurrentgemma.jax import modules as ref_modules

SPEC = get("rglru")
CONF = Path(__file__).resolve().parents[1] / "conf" / "model" / "rglru.yaml"
make_layer = functools.partial(spec_layer, SPEC)


def random_variables(module, inputs, seed):
    """Parameters for `module` drawn in NumPy (no init compute): every leaf N(0, 0.5²), biases
    included; Λ from the layer's ring initialisation moved by N(0, 0.5²)."""
    variables = reference.random_variables(module, inputs, seed)
    lru = variables["params"]["rg_lru"]
    ring = np.asarray(a_param_init()(jax.random.key(seed), lru["a_param"].shape))
    lru["a_param"] = jnp.asarray(ring + np.asarray(lru["a_param"]), jnp.float32)
    return variables


def random_carry(batch, hidden, conv_width=4, seed=5):
    """A non-zero carry: (conv buffer (B, W-1, H), h (B, H))."""
    rng = np.random.default_rng(seed)
    buffer = rng.standard_normal((batch, conv_width - 1, hidden))
    h = 0.5 * rng.standard_normal((batch, hidden))
    return jnp.asarray(buffer, jnp.float32), jnp.asarray(h, jnp.float32)


# --- equivalence with the packaged reference ---------------------------------------------------

# F = H: the reference block maps width -> width (its typing ties input and output widths)
BATCH, TIME, HIDDEN, HEADS, CUT = 3, 7, 6, 3, 4
LENGTHS = np.array([7, 3, 0])


@pytest.fixture(scope="module")
def against_reference():
    """Ours and the reference on one set of inputs and parameters (one program each)."""
    module = make_layer(HIDDEN, num_heads=HEADS)
    x = jnp.asarray(np.random.default_rng(1).standard_normal((BATCH, TIME, HIDDEN)), jnp.float32)
    variables = random_variables(module, x, seed=2)
    start = random_carry(BATCH, HIDDEN)

    @fast_jit
    def ours(variables):
        first, carry = module.apply(variables, x[:, :CUT])
        return {
            "whole": module.apply(variables, x),
            "padded": module.apply(variables, x, jnp.asarray(LENGTHS)),
            "carry": module.apply(variables, x, initial_carry=start),
            "cut": (first, module.apply(variables, x[:, CUT:], initial_carry=carry)),
        }

    block = ref_modules.RecurrentBlock(
        width=HIDDEN, num_heads=HEADS, lru_width=HIDDEN, scan_type=common.ScanType.LINEAR_NATIVE
    )
    whole = fast_jit(
        lambda v, x: block.apply(v, x, jnp.broadcast_to(jnp.arange(TIME), x.shape[:2]))
    )
    step = fast_jit(lambda v, x_t, position, cache: block.apply(v, x_t, position, cache))

    def decode(cache, first_position):
        """The reference one token at a time from `cache`: outputs (B, T, H), caches per step."""
        outputs, caches = [], []
        for t in range(TIME):
            position = jnp.full((BATCH, 1), first_position + t, jnp.int32)
            out_t, cache = step(variables, x[:, t : t + 1], position, cache)
            outputs.append(out_t)
            caches.append(cache)
        return jnp.concatenate(outputs, axis=1), caches

    zero_cache = ref_modules.RecurrentBlockCache(
        rg_lru_state=jnp.zeros((BATCH, HIDDEN)), conv1d_state=jnp.zeros((BATCH, 3, HIDDEN))
    )
    given_cache = ref_modules.RecurrentBlockCache(rg_lru_state=start[1], conv1d_state=start[0])
    return as_numpy(
        {
            "ours": ours(variables),
            "whole": whole(variables, x),
            "from_start": decode(zero_cache, 0),  # segment_pos 0 first: the reset
            "from_cache": decode(given_cache, 1),  # segment_pos > 0: continues the cache
        }
    )


def test_whole_sequence_matches_the_reference_block(against_reference):
    out, (buffer, h) = against_reference["ours"]["whole"]
    ref_out, cache = against_reference["whole"]
    np.testing.assert_allclose(out, ref_out, **TOL)
    np.testing.assert_allclose(h, cache.rg_lru_state, **TOL)
    np.testing.assert_allclose(buffer, cache.conv1d_state, **TOL)
    # the reference decoding token by token from a zero cache is the same computation
    ref_steps, _ = against_reference["from_start"]
    np.testing.assert_allclose(ref_steps, ref_out, **TOL)


def test_padding_matches_the_reference_state_at_each_row_length(against_reference):
    out, (buffer, h) = against_reference["ours"]["padded"]
    ref_out, caches = against_reference["from_start"]
    for row, length in enumerate(LENGTHS):
        np.testing.assert_allclose(out[row, :length], ref_out[row, :length], **TOL)
        assert not np.asarray(out[row, length:]).any()
        if length == 0:  # nothing ran: the zero carry
            assert not np.asarray(h[row]).any() and not np.asarray(buffer[row]).any()
            continue
        cache = caches[length - 1]
        np.testing.assert_allclose(h[row], cache.rg_lru_state[row], **TOL)
        np.testing.assert_allclose(buffer[row], cache.conv1d_state[row], **TOL)


def test_initial_carry_continues_like_the_reference_cache(against_reference):
    """An initial carry means no reset, as the reference with a cache and segment_pos > 0."""
    out, (buffer, h) = against_reference["ours"]["carry"]
    ref_out, caches = against_reference["from_cache"]
    np.testing.assert_allclose(out, ref_out, **TOL)
    np.testing.assert_allclose(h, caches[-1].rg_lru_state, **TOL)
    np.testing.assert_allclose(buffer, caches[-1].conv1d_state, **TOL)


def test_a_sequence_cut_in_two_continues_from_the_carry(against_reference):
    first, (second, carry) = against_reference["ours"]["cut"]
    whole, whole_carry = against_reference["ours"]["whole"]
    np.testing.assert_allclose(jnp.concatenate([first, second], axis=1), whole, **TOL)
    assert_trees_close(carry, whole_carry)


# --- the scans, reverse, remat and hidden offsets ----------------------------------------------

S_BATCH, S_TIME, S_FEATURES, S_HIDDEN = 3, 7, 3, 4
S_LENGTHS = np.array([7, 4, 0])


def loss(out, carry):
    """A fixed loss of the outputs and the final carry, non-linear in the carry."""
    buffer, h = carry
    weights = jnp.cos(jnp.arange(out.size, dtype=jnp.float32)).reshape(out.shape)
    return jnp.sum(out * weights) + jnp.sum(jnp.sin(h)) + 0.5 * jnp.sum(buffer**2)


def bump_offsets():
    """Hidden offsets (B, T, H): 0.5 at each non-empty row's last valid step, zeros elsewhere."""
    bump = np.zeros((S_BATCH, S_TIME, S_HIDDEN), np.float32)
    for row, length in enumerate(S_LENGTHS):
        if length:
            bump[row, length - 1] = 0.5
    return bump


def reverse_prefixes(x, lengths):
    """x (B, T, D) with each row's valid prefix reversed (padding left in place)."""
    x = np.asarray(x).copy()
    for row, length in enumerate(lengths):
        x[row, :length] = x[row, :length][::-1]
    return x


@pytest.fixture(scope="module")
def scan_results():
    """One program: every scan, and the associative one under remat, with a non-zero initial
    carry, reverse, padding (row lengths 7, 4 and 0), hidden offsets and 7 steps in chunks of 3
    (outputs, final carry, gradients); the sequential scan forward over the reversed prefixes,
    in reverse without a carry, and forward with no, zero and bump hidden offsets."""
    rng = np.random.default_rng(8)
    x = jnp.asarray(rng.standard_normal((S_BATCH, S_TIME, S_FEATURES)), jnp.float32)
    offsets = jnp.asarray(0.1 * rng.standard_normal((S_BATCH, S_TIME, S_HIDDEN)), jnp.float32)
    flipped = jnp.asarray(reverse_prefixes(x, S_LENGTHS))
    flipped_offsets = jnp.asarray(reverse_prefixes(offsets, S_LENGTHS))
    lengths = jnp.asarray(S_LENGTHS)
    start = random_carry(S_BATCH, S_HIDDEN)
    modules = {scan: make_layer(S_HIDDEN, num_heads=2, scan=scan, chunk_size=3) for scan in SCANS}
    modules["remat"] = make_layer(S_HIDDEN, True, num_heads=2, scan="associative", chunk_size=3)
    params = random_variables(modules["sequential"], x, seed=9)["params"]

    @fast_jit
    def run(params):
        results = {
            name: differentiate(module, loss, params, x, lengths, True, start, offsets)
            for name, module in modules.items()
        }
        apply = functools.partial(modules["sequential"].apply, {"params": params})
        results["flipped/carry"] = apply(flipped, lengths, False, start, flipped_offsets)
        results["reverse/reset"] = apply(x, lengths, True)
        results["flipped/reset"] = apply(flipped, lengths, False)
        results["offsets/none"] = apply(x, lengths, False, start)
        results["offsets/zero"] = apply(x, lengths, False, start, jnp.zeros_like(offsets))
        results["offsets/bump"] = apply(x, lengths, False, start, jnp.asarray(bump_offsets()))
        return results

    return as_numpy(run(params))


@pytest.mark.parametrize("scan", [*SCANS[1:], "remat"])
def test_scans_match_sequential(scan_results, scan):
    """Outputs, final carry, loss and gradients (params, initial carry and hidden offsets) equal
    the sequential scan's: non-zero initial carry, reverse, padding, hidden offsets; remat:
    associative. Padded steps output zeros and pass no gradient to their offsets."""
    assert_like_sequential(scan_results[scan], scan_results["sequential"], scan)
    assert_padding_respected(scan_results[scan], random_carry(S_BATCH, S_HIDDEN), S_LENGTHS, scan)


@pytest.mark.parametrize("given", [True, False], ids=["carry", "reset"])
def test_reverse_is_forward_over_each_reversed_prefix(scan_results, given):
    """reverse=True runs each row's valid prefix backwards; without a carry the reset falls on
    its last valid step, the first one processed."""
    if given:
        result = scan_results["sequential"]
        out, carry = result["outputs"], result["carry"]
    else:
        out, carry = scan_results["reverse/reset"]
    fwd_out, fwd_carry = scan_results["flipped/carry" if given else "flipped/reset"]
    np.testing.assert_allclose(out, reverse_prefixes(fwd_out, S_LENGTHS), **TOL)
    assert_trees_close(carry, fwd_carry)


def test_padding_leaves_the_carry_and_zeros_the_outputs(scan_results):
    out, (buffer, h) = scan_results["sequential"]["outputs"], scan_results["sequential"]["carry"]
    start = random_carry(S_BATCH, S_HIDDEN)
    assert not np.asarray(out[2]).any()  # the row of length 0 keeps its initial carry
    assert_trees_close((buffer[2], h[2]), (start[0][2], start[1][2]))
    assert not np.asarray(out[1, S_LENGTHS[1] :]).any()
    out, (buffer, h) = scan_results["reverse/reset"]
    assert not np.asarray(out[2]).any() and not np.asarray(h[2]).any()
    assert not np.asarray(buffer[2]).any()


def test_hidden_offsets_add_to_the_state(scan_results):
    """Zero offsets change nothing; the gates read the inputs only, so an offset at each row's
    last valid step adds to its final h and changes no earlier output."""
    out, (buffer, h) = scan_results["offsets/none"]
    assert_trees_close(scan_results["offsets/zero"], (out, (buffer, h)))
    bumped_out, (bumped_buffer, bumped_h) = scan_results["offsets/bump"]
    np.testing.assert_allclose(bumped_h, h + bump_offsets().sum(axis=1), **TOL)
    np.testing.assert_allclose(bumped_buffer, buffer, **TOL)
    for row, length in enumerate(S_LENGTHS):
        np.testing.assert_allclose(bumped_out[row, : length - 1], out[row, : length - 1], **TOL)
        assert not bumped_out[row, length:].any()
    assert np.abs(bumped_out[0, -1] - out[0, -1]).max() > 1e-3


# --- initialisation ----------------------------------------------------------------------------


def test_initialisation_equals_the_reference_and_its_ranges():
    """Same key, same tree: the reference RecurrentBlock's init draws the same parameters (Λ up to
    the float32 rounding of its formula); then the distributions themselves."""
    width, heads = 64, 4
    x, positions = jnp.zeros((1, 1, width)), jnp.zeros((1, 1), jnp.int32)
    block = ref_modules.RecurrentBlock(width=width, num_heads=heads, lru_width=width)
    ring = ref_layers.rnn_real_param_init(min_rad=0.9, max_rad=0.999)

    @fast_jit
    def draw(key):
        return {
            "ours": make_layer(width, num_heads=heads).init(key, x)["params"],
            "theirs": block.init(key, x, positions)["params"],
            "ours_a": a_param_init()(key, (4096,)),
            "theirs_a": ring(key, (4096,)),
        }

    drawn = as_numpy(draw(jax.random.key(0)))
    ours, theirs = drawn["ours"], drawn["theirs"]
    assert jax.tree_util.tree_structure(ours) == jax.tree_util.tree_structure(theirs)
    ours_lru, theirs_lru = ours.pop("rg_lru"), theirs.pop("rg_lru")
    np.testing.assert_allclose(ours_lru.pop("a_param"), theirs_lru.pop("a_param"), atol=1e-4)
    jax.tree_util.tree_map(np.testing.assert_array_equal, (ours, ours_lru), (theirs, theirs_lru))
    np.testing.assert_allclose(drawn["ours_a"], drawn["theirs_a"], atol=1e-4)

    # kernels: normal with variance scale / fan_in; biases zero
    for name in ("linear_x", "linear_y", "linear_out"):
        assert np.std(ours[name]["kernel"]) == pytest.approx(1 / np.sqrt(width), rel=0.05)
        assert not ours[name]["bias"].any()
    assert np.std(ours["conv_1d"]["w"]) == pytest.approx(np.sqrt(0.01 / 4), rel=0.15)
    assert not ours["conv_1d"]["b"].any()
    for gate in ("a_gate", "input_gate"):  # JAX's fan_in of (n, H/n, H/n) is H
        assert np.std(ours_lru[gate]["w"]) == pytest.approx(1 / np.sqrt(width), rel=0.05)
        assert not ours_lru[gate]["b"].any()

    # σ(-Λ)² uniform on [0.9², 0.999²]: its range and quartiles (4096 draws)
    radius = 1.0 / (1.0 + np.exp(drawn["ours_a"].astype(np.float64)))
    low, high = 0.9**2, 0.999**2
    assert radius.min() ** 2 >= low - 1e-6 and radius.max() ** 2 <= high + 1e-6
    quartiles = np.quantile((radius**2 - low) / (high - low), [0.25, 0.5, 0.75])
    np.testing.assert_allclose(quartiles, [0.25, 0.5, 0.75], atol=0.03)


# --- options and Spec --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field,value",
    [("num_heads", 0), ("conv_width", 0), ("scan", "parallel"), ("chunk_size", 0)],
)
def test_bad_option_names_its_key(field, value):
    with pytest.raises(ConfigError, match=f"model.cell.{field}"):
        RGLRUOptions(**{field: value})


def test_num_heads_must_divide_the_hidden_size():
    with pytest.raises(ConfigError, match=r"model\.cell\.num_heads: must divide the hidden size 6"):
        make_layer(6, num_heads=4)
    make_layer(8, num_heads=4)


def test_spec_carry_state_size_and_flops():
    options = RGLRUOptions(num_heads=2, conv_width=3)
    buffer, h = SPEC.initial_carry(options, 2, 5, 6)
    assert buffer.shape == (2, 2, 6) and h.shape == (2, 6)
    assert buffer.dtype == h.dtype == jnp.float32
    assert SPEC.state_size(options, 5, 6) == buffer[0].size + h[0].size
    module, x = SPEC.layer(options, 6), jnp.ones((2, 4, 5))
    variables = jax.eval_shape(module.init, jax.random.key(0), x)
    out, carry = jax.eval_shape(module.apply, variables, x)
    assert out.shape == (2, 4, 6)
    assert jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), carry) == (
        ((2, 2, 6), jnp.float32),
        ((2, 6), jnp.float32),
    )
    assert SPEC.probe_width(options, 5, 6) == 6
    assert SPEC.block == "residual" and SPEC.scans == SCANS and SCANS[0] == "sequential"
    # default options: linear_x, linear_y 2FH; linear_out H²; dense gates 2H²; conv 4H
    assert SPEC.step_flops(SPEC.options(), 2, 3, 5, 6) == 2.0 * 2 * 3 * (
        2 * 5 * 6 + 36 + 2 * 36 + 4 * 6
    )


def test_yaml_lists_every_option_at_its_default():
    conf = yaml.safe_load(CONF.read_text())
    assert conf["architecture"] == "rglru"
    assert conf["defaults"][1] == {"cell": "rglru_schema"}
    assert conf["cell"] == {f.name: f.default for f in dataclasses.fields(RGLRUOptions)}
