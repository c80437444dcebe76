"""minGRU (seqbench/models/architectures/mingru.py) against a float64 NumPy transcription of the
sequential form of BorealisAI/minRNNs `models/minRNNs.py` (class minGRU) and against the packaged
lucidrains minGRU-pytorch; every scan against the sequential one, values and gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqbench.config import ConfigError
from seqbench.models.architectures import get
from seqbench.models.architectures.mingru import SCANS, MinGRUOptions

SPEC = get("mingru")
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


def numpy_mingru(x, kernel, bias, h0=None, lengths=None, offsets=None, reverse=False):
    """The reference's sequential step over each row's valid prefix, in float64.

    x (B, T, F), kernel (F, 2H) (the transposed weight of to_hidden_and_gate), bias (2H,),
    h0 (B, H), lengths (B,), offsets (B, T, H) added to h_t after step t -> outputs (B, T, H)
    (zeros at padded steps), final h (B, H).
    """
    x, kernel, bias = (np.asarray(a, np.float64) for a in (x, kernel, bias))
    batch, time, hidden = x.shape[0], x.shape[1], kernel.shape[1] // 2
    lengths = np.full(batch, time) if lengths is None else lengths
    outputs, finals = np.zeros((batch, time, hidden)), np.zeros((batch, hidden))
    for row in range(batch):
        h = np.zeros(hidden) if h0 is None else np.asarray(h0[row], np.float64)
        steps = range(lengths[row])
        for t in reversed(steps) if reverse else steps:
            hidden_pre, gate = np.split(x[row, t] @ kernel + bias, 2)
            z = sigmoid(gate)
            h = (1.0 - z) * h + z * g(hidden_pre)
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
        "kernel": 0.8 * rng.standard_normal((features, 2 * hidden)).astype(np.float32),
        "bias": 0.5 * rng.standard_normal(2 * hidden).astype(np.float32),
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
    """{(scan, remat, reverse): (outputs, final, loss, gradients)} of every scan in both
    directions (and the sequential one under remat), with an initial carry, padding (an empty row
    too) and hidden offsets; the gradients of loss = <outputs, R> + <final, R'> with respect to
    the parameters, the initial carry and the offsets. One compilation for both tests below."""
    x, params, h0, offsets = random_case(0)
    rng = np.random.default_rng(1)
    out_weights = rng.standard_normal((B, T, H)).astype(np.float32)
    final_weights = rng.standard_normal((B, H)).astype(np.float32)
    layers = {(scan, False): make_layer(scan=scan, chunk_size=CHUNK) for scan in SCANS}
    layers["sequential", True] = make_layer(scan="sequential", remat=True)

    def run(params, h0, offsets, x, lengths):
        results = {}
        for (scan, remat), module in layers.items():
            for reverse in (False, True) if not remat else (True,):

                def forward(params, h0, offsets, module=module, reverse=reverse):
                    return module.apply({"params": params}, x, lengths, reverse, h0, offsets)

                (out, final), pullback = jax.vjp(forward, params, h0, offsets)
                loss = jnp.sum(out * out_weights) + jnp.sum(final * final_weights)
                grads = pullback((jnp.asarray(out_weights), jnp.asarray(final_weights)))
                results[scan, remat, reverse] = (out, final, loss, grads)
        return results

    return (x, params, h0, offsets), run_compiled(run, params, h0, offsets, x, LENGTHS)


def test_every_scan_matches_the_numpy_reference():
    """With an initial carry, padding (an empty row too), hidden offsets, both directions."""
    (x, params, h0, offsets), results = scan_results()
    for (scan, remat, reverse), (out, final, _, _) in results.items():
        ref_out, ref_final = numpy_mingru(
            x, **params, h0=h0, lengths=LENGTHS, offsets=offsets, reverse=reverse
        )
        case = f"scan={scan} remat={remat} reverse={reverse}"
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
    for (scan, remat, reverse), (_, _, loss, grads) in results.items():
        _, _, expected_loss, expected = results["sequential", False, reverse]
        case = f"scan={scan} remat={remat} reverse={reverse}"
        assert_close(loss, expected_loss, case)
        for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(expected), strict=True):
            assert_close(got, want, case, scale=True)
        d_offsets = np.asarray(grads[2])
        assert np.all(d_offsets[padded] == 0.0) and np.all(d_offsets[~padded] != 0.0), case


def test_matches_the_packaged_mingru_pytorch():
    """minGRU-pytorch's minGRU(dim, expansion_factor=1): no biases, no output projection, F == H.
    Its parallel (log) form from zeros and from prev_hidden (> 0: it takes its log), and its
    one-step branch from prev_hidden."""
    torch = pytest.importorskip("torch")
    min_gru_pytorch = pytest.importorskip("minGRU_pytorch")
    hidden = 4
    x, params, _, _ = random_case(1, features=hidden, hidden=hidden)
    params["bias"] = np.zeros_like(params["bias"])
    prev = np.random.default_rng(2).uniform(0.1, 2.0, (B, hidden)).astype(np.float32)
    reference = min_gru_pytorch.minGRU(hidden, expansion_factor=1.0).double()
    with torch.no_grad():
        reference.to_hidden_and_gate.weight.copy_(torch.from_numpy(params["kernel"].T))
    cases = {"parallel": (x, None), "parallel from prev": (x, prev), "one step": (x[:, :1], prev)}
    module = make_layer(hidden)  # scan="log", the default

    def run(params, cases):
        return {
            name: module.apply({"params": params}, inputs, initial_carry=start)
            for name, (inputs, start) in cases.items()
        }

    results = run_compiled(run, params, cases)
    for name, (inputs, start) in cases.items():
        prev_hidden = None if start is None else torch.from_numpy(start[:, None]).double()
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
    grows ~0.7 a step at z ~ 0.5) in the difference of two such numbers, ~1e-7 per step: 1e-5
    relative holds for 64 steps, 1e-4 for 256; the sequential scan holds 1e-5 throughout."""
    time = 256
    x = np.random.default_rng(6).standard_normal((2, time, 4)).astype(np.float32)
    log, sequential = make_layer(16), make_layer(16, scan="sequential")
    variables = jax.jit(log.init)(jax.random.key(0), x[:, :1])  # the paper's initialisation

    def run(variables, x):
        return log.apply(variables, x), sequential.apply(variables, x)

    (out, final), (out_sequential, final_sequential) = run_compiled(run, variables, x)
    ref_out, ref_final = numpy_mingru(x, **variables["params"])
    assert_close(out[:, :64], ref_out[:, :64], "log, 64 steps")
    np.testing.assert_allclose(out, ref_out, rtol=1e-4, atol=1e-6, err_msg="log, 256 steps")
    np.testing.assert_allclose(final, ref_final, rtol=1e-4, atol=1e-6, err_msg="log, final")
    assert_close(out_sequential, ref_out, "sequential")
    assert_close(final_sequential, ref_final, "sequential")


def test_initialisation_is_pytorch_linear():
    """kernel (F, 2H) and bias (2H,) both U(-1/sqrt(F), 1/sqrt(F)), as nn.Linear."""
    features, hidden = 16, 64
    variables = jax.jit(make_layer(hidden).init)(jax.random.key(0), jnp.zeros((1, 1, features)))
    params = variables["params"]
    assert set(params) == {"kernel", "bias"}
    bound = 1.0 / np.sqrt(features)
    for name, shape in (("kernel", (features, 2 * hidden)), ("bias", (2 * hidden,))):
        values = np.asarray(params[name])
        assert values.shape == shape and values.dtype == np.float32
        assert np.abs(values).max() <= bound
        assert np.abs(values).max() > 0.9 * bound
    kernel = np.asarray(params["kernel"])
    assert abs(kernel.mean()) < 0.05 * bound
    assert abs(kernel.std() - bound / np.sqrt(3.0)) < 0.05 * bound


def test_spec():
    assert SPEC.scans == SCANS == ("log", "sequential", "associative", "chunked")
    assert MinGRUOptions().scan == SPEC.scans[0] and MinGRUOptions().chunk_size == 64
    assert SPEC.block == "residual" and SPEC.receptive_field is None
    options = MinGRUOptions()
    assert SPEC.state_size(options, F, H) == H
    assert SPEC.probe_width(options, F, H) == H
    assert SPEC.step_flops(SPEC.options(), 2, 10, F, H) == 2 * 2 * 10 * F * 2 * H
    carry = SPEC.initial_carry(options, 2, F, H)
    assert carry.shape == (2, H) and carry.dtype == jnp.float32 and not np.any(carry)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"scan": "parallel"}, "model.cell.scan"),
        ({"chunk_size": 0}, "model.cell.chunk_size"),
        ({"chunk_size": 2.5}, "model.cell.chunk_size"),
    ],
)
def test_bad_options_raise_a_config_error_naming_the_key(options, key):
    with pytest.raises(ConfigError, match=key):
        MinGRUOptions(**options)
