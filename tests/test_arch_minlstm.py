"""minLSTM (seqbench/models/architectures/minlstm.py) against a float64 NumPy transcription of the
sequential form of BorealisAI/minRNNs `models/minRNNs.py` (class minLSTM) and against the minLSTM
of the packaged lucidrains minGRU-pytorch; every scan against the sequential one, values and
gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqbench.config import ConfigError
from seqbench.models.architectures import get
from seqbench.models.architectures.minlstm import SCANS, MinLSTMOptions

SPEC = get("minlstm")
TOL = {"rtol": 1e-5, "atol": 1e-6}
B, T, F, H = 3, 7, 4, 5
LENGTHS = np.array([T, 4, 0])  # a full row, a padded one, an empty one
CHUNK = 3  # the chunked scan's chunk: does not divide T


def run_compiled(function, *args):
    """function(*args) compiled at XLA's backend optimisation level 0: these small graphs of
    associative scans and their gradients then compile in about half the time (the time of this
    file is mostly compilation)."""
    compiled = jax.jit(function).lower(*args).compile({"xla_backend_optimization_level": 0})
    return compiled(*args)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def g(x):
    return np.where(x >= 0, x + 0.5, sigmoid(x))


def numpy_minlstm(
    x, kernel, bias, h0=None, lengths=None, offsets=None, reverse=False, normalize_gates=True
):
    """The reference's sequential step over each row's valid prefix, in float64.

    x (B, T, F), kernel (F, 3H) (the transposed weight of to_hidden_and_gate: blocks h~, f, i),
    bias (3H,), h0 (B, H), lengths (B,), offsets (B, T, H) added to h_t after step t ->
    outputs (B, T, H) (zeros at padded steps), final h (B, H).
    """
    x, kernel, bias = (np.asarray(a, np.float64) for a in (x, kernel, bias))
    batch, time, hidden = x.shape[0], x.shape[1], kernel.shape[1] // 3
    lengths = np.full(batch, time) if lengths is None else lengths
    outputs, finals = np.zeros((batch, time, hidden)), np.zeros((batch, hidden))
    for row in range(batch):
        h = np.zeros(hidden) if h0 is None else np.asarray(h0[row], np.float64)
        steps = range(lengths[row])
        for t in reversed(steps) if reverse else steps:
            hidden_pre, forget_pre, input_pre = np.split(x[row, t] @ kernel + bias, 3)
            forget, input_ = sigmoid(forget_pre), sigmoid(input_pre)
            if normalize_gates:
                forget, input_ = forget / (forget + input_), input_ / (forget + input_)
            h = forget * h + input_ * g(hidden_pre)
            if offsets is not None:
                h = h + offsets[row, t]
            outputs[row, t] = h
        finals[row] = h
    return outputs, finals


def make_layer(hidden=H, remat=False, **options):
    return SPEC.layer(SPEC.options(**options), hidden, remat=remat)


def random_case(seed, batch=B, time=T, features=F, hidden=H):
    """Inputs, parameters wide enough for both branches of g, an initial carry, offsets."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, time, features)).astype(np.float32)
    params = {
        "kernel": 0.8 * rng.standard_normal((features, 3 * hidden)).astype(np.float32),
        "bias": 0.5 * rng.standard_normal(3 * hidden).astype(np.float32),
    }
    h0 = rng.standard_normal((batch, hidden)).astype(np.float32)
    offsets = 0.3 * rng.standard_normal((batch, time, hidden)).astype(np.float32)
    return x, params, h0, offsets


def assert_close(got, want, case, scale=False):
    """1e-5 relative; scale=True (gradients): the absolute tolerance is 1e-5 of the array's
    largest entry, since sums of many terms of either sign lose relative precision near zero."""
    want = np.asarray(want)
    atol = max(TOL["atol"], TOL["rtol"] * np.abs(want).max()) if scale else TOL["atol"]
    np.testing.assert_allclose(got, want, rtol=TOL["rtol"], atol=atol, err_msg=case)


@functools.cache
def scan_results():
    """{(scan, variant, reverse): (outputs, final, loss, gradients)} of every scan in both
    directions (variant "": the defaults; "remat": the sequential one under remat, reverse;
    "unnormalised": the log form without the gate normalisation, forward), with an initial carry,
    padding (an empty row too) and hidden offsets; the gradients of loss = <outputs, R> + <final, R'> with respect to
    the parameters, the initial carry and the offsets. One compilation for both tests below."""
    x, params, h0, offsets = random_case(0)
    rng = np.random.default_rng(1)
    out_weights = rng.standard_normal((B, T, H)).astype(np.float32)
    final_weights = rng.standard_normal((B, H)).astype(np.float32)
    layers = {(scan, ""): make_layer(scan=scan, chunk_size=CHUNK) for scan in SCANS}
    layers["sequential", "remat"] = make_layer(scan="sequential", remat=True)
    layers["log", "unnormalised"] = make_layer(normalize_gates=False)

    def run(params, h0, offsets, x, lengths):
        results = {}
        for (scan, variant), module in layers.items():
            for reverse in {"": (False, True), "remat": (True,), "unnormalised": (False,)}[variant]:

                def forward(params, h0, offsets, module=module, reverse=reverse):
                    return module.apply({"params": params}, x, lengths, reverse, h0, offsets)

                (out, final), pullback = jax.vjp(forward, params, h0, offsets)
                loss = jnp.sum(out * out_weights) + jnp.sum(final * final_weights)
                grads = pullback((jnp.asarray(out_weights), jnp.asarray(final_weights)))
                results[scan, variant, reverse] = (out, final, loss, grads)
        return results

    return (x, params, h0, offsets), run_compiled(run, params, h0, offsets, x, LENGTHS)


def test_every_scan_matches_the_numpy_reference():
    """With an initial carry, padding (an empty row too), hidden offsets, both directions."""
    (x, params, h0, offsets), results = scan_results()
    for (scan, variant, reverse), (out, final, _, _) in results.items():
        normalize_gates = variant != "unnormalised"
        ref_out, ref_final = numpy_minlstm(
            x,
            **params,
            h0=h0,
            lengths=LENGTHS,
            offsets=offsets,
            reverse=reverse,
            normalize_gates=normalize_gates,
        )
        case = f"scan={scan} {variant} reverse={reverse}"
        assert out.shape == (B, T, H) and out.dtype == jnp.float32, case
        assert final.shape == (B, H) and final.dtype == jnp.float32, case
        assert_close(out, ref_out, case)
        assert_close(final, ref_final, case)
        np.testing.assert_array_equal(final[2], h0[2], err_msg=case)  # the empty row
        np.testing.assert_array_equal(out[2], 0.0, err_msg=case)


def test_every_scan_has_the_gradients_of_the_sequential_one():
    """Gradients with respect to the parameters, the initial carry and the hidden offsets."""
    _, results = scan_results()
    padded = np.arange(T)[None, :] >= LENGTHS[:, None]
    for (scan, variant, reverse), (_, _, loss, grads) in results.items():
        if variant == "unnormalised":
            continue  # another function: checked against the NumPy reference only
        _, _, expected_loss, expected = results["sequential", "", reverse]
        case = f"scan={scan} {variant} reverse={reverse}"
        assert_close(loss, expected_loss, case)
        for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(expected), strict=True):
            assert_close(got, want, case, scale=True)
        d_offsets = np.asarray(grads[2])
        assert np.all(d_offsets[padded] == 0.0) and np.all(d_offsets[~padded] != 0.0), case


def test_matches_the_packaged_minlstm_of_mingru_pytorch():
    """minGRU-pytorch's minLSTM(dim, expansion_factor=1): no biases, no output projection,
    F == H, normalised gates. Its parallel (log) form from zeros and from prev_hidden, and its
    one-step branch from prev_hidden. Its two branches read prev_hidden differently: the one-step
    branch as the state h_0, the parallel one as a pre-activation (h_0 = g(prev_hidden), from
    log_h_0 = log_g(prev_hidden)); our initial carry is h_0 in both."""
    torch = pytest.importorskip("torch")
    min_gru_pytorch = pytest.importorskip("minGRU_pytorch.minLSTM")
    hidden = 4
    x, params, _, _ = random_case(1, features=hidden, hidden=hidden)
    params["bias"] = np.zeros_like(params["bias"])
    prev = np.random.default_rng(2).standard_normal((B, hidden)).astype(np.float32)
    reference = min_gru_pytorch.minLSTM(hidden, expansion_factor=1.0).double()
    with torch.no_grad():
        reference.to_hidden_and_f_i_gate.weight.copy_(torch.from_numpy(params["kernel"].T))
    cases = {  # name: (inputs, prev_hidden, our initial carry)
        "parallel": (x, None, None),
        "parallel from prev": (x, prev, g(prev.astype(np.float64)).astype(np.float32)),
        "one step": (x[:, :1], prev, prev),
    }
    module = make_layer(hidden)  # scan="log", the default

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


def test_zero_offsets_change_nothing_and_a_split_sequence_continues_from_its_carry():
    x, params, _, _ = random_case(5)
    module = make_layer()

    def run(params, x):
        variables = {"params": params}
        head, carry = module.apply(variables, x[:, :4])
        return {
            "whole": module.apply(variables, x),
            "zero offsets": module.apply(variables, x, hidden_offsets=jnp.zeros((B, T, H))),
            "split": (*module.apply(variables, x[:, 4:], initial_carry=carry), head),
        }

    results = run_compiled(run, params, x)
    out, final = results["whole"]
    np.testing.assert_array_equal(results["zero offsets"][0], out)
    np.testing.assert_array_equal(results["zero offsets"][1], final)
    tail, final_split, head = results["split"]
    assert_close(jnp.concatenate([head, tail], axis=1), out, "split")
    assert_close(final_split, final, "split")


def test_the_log_form_stays_accurate_at_moderate_length():
    """The log form's error grows linearly along the sequence: float32 rounding of log A_t (which
    grows ~0.7 a step at f' ~ 0.5) in the difference of two such numbers, ~1e-7 per step: 1e-5
    relative holds for 64 steps, 1e-4 for 256; the sequential scan holds 1e-5 throughout."""
    time = 256
    x = np.random.default_rng(6).standard_normal((2, time, 4)).astype(np.float32)
    log, sequential = make_layer(16), make_layer(16, scan="sequential")
    variables = jax.jit(log.init)(jax.random.key(0), x[:, :1])  # the paper's initialisation

    def run(variables, x):
        return log.apply(variables, x), sequential.apply(variables, x)

    (out, final), (out_sequential, final_sequential) = run_compiled(run, variables, x)
    ref_out, ref_final = numpy_minlstm(x, **variables["params"])
    assert_close(out[:, :64], ref_out[:, :64], "log, 64 steps")
    np.testing.assert_allclose(out, ref_out, rtol=1e-4, atol=1e-6, err_msg="log, 256 steps")
    np.testing.assert_allclose(final, ref_final, rtol=1e-4, atol=1e-6, err_msg="log, final")
    assert_close(out_sequential, ref_out, "sequential")
    assert_close(final_sequential, ref_final, "sequential")


def test_initialisation_is_pytorch_linear_with_the_forget_bias():
    """kernel (F, 3H) and bias (3H,) both U(-1/sqrt(F), 1/sqrt(F)), as nn.Linear, with
    forget_bias added to the f block (the middle H entries) of the bias."""
    features, hidden, forget_bias = 16, 64, 3.0
    module = make_layer(hidden, forget_bias=forget_bias)
    variables = jax.jit(module.init)(jax.random.key(0), jnp.zeros((1, 1, features)))
    params = variables["params"]
    assert set(params) == {"kernel", "bias"}
    bound = 1.0 / np.sqrt(features)
    bias = np.asarray(params["bias"])
    assert bias.dtype == np.float32
    bias_draw = bias - np.repeat(np.float32([0.0, forget_bias, 0.0]), hidden)
    for name, values, shape in (
        ("kernel", np.asarray(params["kernel"]), (features, 3 * hidden)),
        ("bias", bias_draw, (3 * hidden,)),
    ):
        assert values.shape == shape and values.dtype == np.float32, name
        assert np.abs(values).max() <= bound + 1e-6, name  # float32 rounding of bias - 3
        assert np.abs(values).max() > 0.9 * bound, name
    kernel = np.asarray(params["kernel"])
    assert abs(kernel.mean()) < 0.05 * bound
    assert abs(kernel.std() - bound / np.sqrt(3.0)) < 0.05 * bound
    assert abs(bias[hidden : 2 * hidden].mean() - forget_bias) < 0.3 * bound


def test_spec():
    assert SPEC.scans == SCANS == ("log", "sequential", "associative", "chunked")
    defaults = MinLSTMOptions()
    assert defaults.scan == SPEC.scans[0] and defaults.chunk_size == 64
    assert defaults.normalize_gates is True and defaults.forget_bias == 0.0
    assert SPEC.label({}) == "minlstm"
    assert SPEC.label({"normalize_gates": False}) == "minlstm (unnormalised)"
    assert SPEC.block == "residual" and SPEC.receptive_field is None
    options = MinLSTMOptions()
    assert SPEC.state_size(options, F, H) == H
    assert SPEC.probe_width(options, F, H) == H
    assert SPEC.step_flops(SPEC.options(), 2, 10, F, H) == 2 * 2 * 10 * F * 3 * H
    carry = SPEC.initial_carry(options, 2, F, H)
    assert carry.shape == (2, H) and carry.dtype == jnp.float32 and not np.any(carry)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"scan": "parallel"}, "model.cell.scan"),
        ({"chunk_size": 0}, "model.cell.chunk_size"),
        ({"chunk_size": 2.5}, "model.cell.chunk_size"),
        ({"forget_bias": float("nan")}, "model.cell.forget_bias"),
        ({"normalize_gates": "yes"}, "model.cell.normalize_gates"),
    ],
)
def test_bad_options_raise_a_config_error_naming_the_key(options, key):
    with pytest.raises(ConfigError, match=key):
        MinLSTMOptions(**options)
