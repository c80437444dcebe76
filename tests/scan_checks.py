"""Shared scaffolding of the architecture tests (tests/test_arch_*.py): fast compilation, the
tolerances, and the scan-equivalence harness (a layer run and differentiated, every scan and
direction in one program, then checked against the sequential scan, a float64 reference and the
padding rules); last, the checks minGRU and minLSTM share.

Compilation dominates these tests on a CPU: each test runs its layers in one jitted program
compiled at XLA's backend optimisation level 0 (about half the compile time), and takes its
results back as NumPy arrays (indexing a jax.Array dispatches, and compiles, a program).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from reference import sigmoid

#: tolerance against float64 references and between scans
TOL = {"rtol": 1e-5, "atol": 1e-6}

#: XLA's backend at optimisation level 0: small programs of scans and their gradients compile in
#: about half the time
FAST_COMPILE = {"xla_backend_optimization_level": 0}

#: jax.jit compiling with FAST_COMPILE
fast_jit = functools.partial(jax.jit, compiler_options=FAST_COMPILE)


def as_numpy(tree):
    """Every leaf as a NumPy array."""
    return jax.tree.map(np.asarray, tree)


def run_compiled(function, *args):
    """function(*args) as one program compiled with FAST_COMPILE; its results as NumPy arrays."""
    return as_numpy(fast_jit(function)(*args))


def spec_layer(spec, hidden, remat=False, **options):
    """The layer of architecture `spec` with `options` (the keyword arguments of spec.options)."""
    return spec.layer(spec.options(**options), hidden, remat=remat)


# --- tolerances ---------------------------------------------------------------------------------


def assert_close(got, want, case="", scale=False):
    """Within TOL; scale=True (gradients): the absolute tolerance is rtol times the array's largest
    entry (atol at least), since sums of many terms of either sign lose relative precision near
    zero."""
    want = np.asarray(want)
    atol = max(TOL["atol"], TOL["rtol"] * np.abs(want).max()) if scale else TOL["atol"]
    np.testing.assert_allclose(got, want, rtol=TOL["rtol"], atol=atol, err_msg=case)


def assert_trees_close(got, want, case="", scale=False):
    """assert_close on each pair of leaves of two trees of the same structure."""
    jax.tree.map(lambda g, w: assert_close(g, w, case, scale), got, want)


# --- the scan-equivalence harness ---------------------------------------------------------------


def differentiate(module, loss, params, x, lengths, reverse, initial_carry, hidden_offsets):
    """module.apply({"params": params}, x, lengths, reverse, initial_carry, hidden_offsets), to be
    traced inside a compiled program -> {"outputs", "carry" (the final one), "loss":
    loss(outputs, carry), "grads": the loss's gradients {"params", "initial_carry",
    "hidden_offsets"}}."""

    def value(params, initial_carry, hidden_offsets):
        outputs, carry = module.apply(
            {"params": params}, x, lengths, reverse, initial_carry, hidden_offsets
        )
        return loss(outputs, carry), (outputs, carry)

    value_and_grad = jax.value_and_grad(value, argnums=(0, 1, 2), has_aux=True)
    (loss_value, (outputs, carry)), grads = value_and_grad(params, initial_carry, hidden_offsets)
    names = ("params", "initial_carry", "hidden_offsets")
    return {
        "outputs": outputs,
        "carry": carry,
        "loss": loss_value,
        "grads": dict(zip(names, grads, strict=True)),
    }


def every_scan(layers, loss, params, x, lengths, initial_carry, hidden_offsets):
    """`differentiate` for each layer and direction, to be traced inside one compiled program:
    layers {key (a tuple): (module, the values of reverse to run)} -> {(*key, reverse): result}."""
    return {
        (*key, reverse): differentiate(
            module, loss, params, x, lengths, reverse, initial_carry, hidden_offsets
        )
        for key, (module, directions) in layers.items()
        for reverse in directions
    }


def linear_loss(seed, outputs_shape, carry_shape):
    """loss(outputs, carry) = <outputs, R> + <carry, R'>, R and R' standard normal (float32, drawn
    in that order from NumPy's generator at `seed`)."""
    rng = np.random.default_rng(seed)
    out_weights = rng.standard_normal(outputs_shape).astype(np.float32)
    carry_weights = rng.standard_normal(carry_shape).astype(np.float32)

    def loss(outputs, carry):
        return jnp.sum(outputs * out_weights) + jnp.sum(carry * carry_weights)

    return loss


def assert_like_sequential(got, want, case, scale=False):
    """Two `differentiate` results (a scan, the sequential scan): outputs, final carry and loss
    within TOL, every gradient too (scale: assert_close's scaled tolerance for the gradients)."""
    assert_trees_close((got["outputs"], got["carry"]), (want["outputs"], want["carry"]), case)
    assert_close(got["loss"], want["loss"], case)
    assert_trees_close(got["grads"], want["grads"], case, scale)


def assert_matches_reference(result, reference, case):
    """A `differentiate` result against a float64 reference's (outputs, final carry): float32,
    the reference's shapes, within TOL."""
    for got, want in zip((result["outputs"], result["carry"]), reference, strict=True):
        assert got.shape == want.shape and got.dtype == np.float32, case
        assert_close(got, want, case)


def assert_padding_respected(result, initial_carry, lengths, case=""):
    """A `differentiate` result over rows of `lengths`: zero outputs at padded steps, rows of
    length 0 keep `initial_carry` exactly, and the hidden offsets' gradient is zero at padded steps
    and non-zero at valid ones."""
    lengths = np.asarray(lengths)
    out = np.asarray(result["outputs"])
    padded = np.arange(out.shape[1])[None, :] >= lengths[:, None]
    assert np.all(out[padded] == 0.0), case
    for row in np.flatnonzero(lengths == 0):
        for got, start in zip(
            jax.tree.leaves(result["carry"]), jax.tree.leaves(initial_carry), strict=True
        ):
            np.testing.assert_array_equal(got[row], np.asarray(start)[row], err_msg=case)
    d_offsets = np.asarray(result["grads"]["hidden_offsets"])
    assert np.all(d_offsets[padded] == 0.0) and np.all(d_offsets[~padded] != 0.0), case


# --- minGRU and minLSTM (Feng et al. 2024, BorealisAI/minRNNs) ----------------------------------


def g(x):
    """The minRNNs' positive activation: x + 0.5 for x >= 0, σ(x) below."""
    return np.where(x >= 0, x + 0.5, sigmoid(x))


def sequential_reference(step, x, hidden, h0=None, lengths=None, offsets=None, reverse=False):
    """h_t = step(x_t, h_{t-1}) over each row's valid prefix, in float64 (backwards if reverse):
    x (B, T, F), h0 (B, H) (None: zeros), lengths (B,) (None: T), offsets (B, T, H) added to h_t
    after step t -> outputs h_t (B, T, H) (zeros at padded steps), final h (B, H)."""
    x = np.asarray(x, np.float64)
    batch, time = x.shape[:2]
    lengths = np.full(batch, time) if lengths is None else lengths
    outputs, finals = np.zeros((batch, time, hidden)), np.zeros((batch, hidden))
    for row in range(batch):
        h = np.zeros(hidden) if h0 is None else np.asarray(h0[row], np.float64)
        steps = range(lengths[row])
        for t in reversed(steps) if reverse else steps:
            h = step(x[row, t], h)
            if offsets is not None:
                h = h + offsets[row, t]
            outputs[row, t] = h
        finals[row] = h
    return outputs, finals


def random_min_rnn_case(seed, gates, batch, time, features, hidden):
    """Inputs, parameters (kernel (F, gates H), bias (gates H,)) wide enough for both branches of
    g, an initial carry (B, H), hidden offsets (B, T, H); float32."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, time, features)).astype(np.float32)
    params = {
        "kernel": 0.8 * rng.standard_normal((features, gates * hidden)).astype(np.float32),
        "bias": 0.5 * rng.standard_normal(gates * hidden).astype(np.float32),
    }
    h0 = rng.standard_normal((batch, hidden)).astype(np.float32)
    offsets = 0.3 * rng.standard_normal((batch, time, hidden)).astype(np.float32)
    return x, params, h0, offsets


def check_against_packaged(module, params, reference, cases):
    """`module` against a packaged lucidrains minGRU-pytorch layer (float64, our kernel copied
    in): cases {name: (inputs (B, T, F), its prev_hidden (B, H) or None, our initial carry or
    None)}; outputs and final hidden state (return_next_prev_hidden) within TOL."""
    import torch  # only where the packaged layers are (the callers importorskip it)

    def run(params, cases):
        return {
            name: module.apply({"params": params}, inputs, initial_carry=start)
            for name, (inputs, _, start) in cases.items()
        }

    results = run_compiled(run, params, cases)
    for name, (inputs, prev_hidden, _) in cases.items():
        if prev_hidden is not None:
            prev_hidden = torch.from_numpy(prev_hidden[:, None]).double()
        with torch.no_grad():
            ref_out, ref_last = reference(
                torch.from_numpy(inputs).double(),
                prev_hidden=prev_hidden,
                return_next_prev_hidden=True,
            )
        out, final = results[name]
        assert_close(out, ref_out.numpy(), name)
        assert_close(final, ref_last[:, 0].numpy(), name)


def check_zero_offsets_and_a_split_sequence(module, params, x, cut=4):
    """Zero hidden offsets change nothing (exactly); x split at `cut` and continued from the
    carry equals x in one call (TOL)."""

    def run(params, x):
        variables = {"params": params}
        head, carry = module.apply(variables, x[:, :cut])
        zeros = jnp.zeros((*x.shape[:2], head.shape[-1]))  # (B, T, H)
        return {
            "whole": module.apply(variables, x),
            "zero offsets": module.apply(variables, x, hidden_offsets=zeros),
            "split": (*module.apply(variables, x[:, cut:], initial_carry=carry), head),
        }

    results = run_compiled(run, params, x)
    out, final = results["whole"]
    np.testing.assert_array_equal(results["zero offsets"][0], out)
    np.testing.assert_array_equal(results["zero offsets"][1], final)
    tail, final_split, head = results["split"]
    assert_close(np.concatenate([head, tail], axis=1), out, "split")
    assert_close(final_split, final, "split")


def check_the_log_form_at_moderate_length(make_layer, numpy_reference):
    """The log form's error grows linearly along the sequence (float32 rounding of log A_t, which
    grows ~0.7 a step at a gate ~ 0.5, in the difference of two such numbers, ~1e-7 per step):
    TOL's 1e-5 relative holds for 64 steps, 1e-4 for 256; the sequential scan holds TOL
    throughout. make_layer(hidden, **options); numpy_reference(x, **params) -> (outputs, h)."""
    time = 256
    x = np.random.default_rng(6).standard_normal((2, time, 4)).astype(np.float32)
    log, sequential = make_layer(16), make_layer(16, scan="sequential")
    variables = jax.jit(log.init)(jax.random.key(0), x[:, :1])  # the paper's initialisation

    def run(variables, x):
        return log.apply(variables, x), sequential.apply(variables, x)

    (out, final), (out_sequential, final_sequential) = run_compiled(run, variables, x)
    ref_out, ref_final = numpy_reference(x, **variables["params"])
    assert_close(out[:, :64], ref_out[:, :64], "log, 64 steps")
    np.testing.assert_allclose(out, ref_out, rtol=1e-4, atol=1e-6, err_msg="log, 256 steps")
    np.testing.assert_allclose(final, ref_final, rtol=1e-4, atol=1e-6, err_msg="log, final")
    assert_close(out_sequential, ref_out, "sequential")
    assert_close(final_sequential, ref_final, "sequential")
