"""minLSTM (seqbench/models/architectures/minlstm.py) against a float64 NumPy transcription of the
sequential form of BorealisAI/minRNNs `models/minRNNs.py` (class minLSTM) and against the minLSTM
of the packaged lucidrains minGRU-pytorch; every scan against the sequential one, values and
gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scan_checks import (
    assert_like_sequential,
    assert_matches_reference,
    assert_padding_respected,
    check_against_packaged,
    check_the_log_form_at_moderate_length,
    check_zero_offsets_and_a_split_sequence,
    every_scan,
    g,
    linear_loss,
    random_min_rnn_case,
    run_compiled,
    sequential_reference,
    sigmoid,
    spec_layer,
)

from seqbench.config import ConfigError
from seqbench.models.architectures import get
from seqbench.models.architectures.minlstm import SCANS, MinLSTMOptions

SPEC = get("minlstm")
B, T, F, H = 3, 7, 4, 5
LENGTHS = np.array([T, 4, 0])  # a full row, a padded one, an empty one
CHUNK = 3  # the chunked scan's chunk: does not divide T
make_layer = functools.partial(spec_layer, SPEC)


def numpy_minlstm(x, kernel, bias, normalize_gates=True, **protocol):
    """The reference's sequential step over each row's valid prefix, in float64.

    x (B, T, F), kernel (F, 3H) (the transposed weight of to_hidden_and_gate: blocks h~, f, i),
    bias (3H,); protocol: h0, lengths, offsets, reverse of `sequential_reference` ->
    outputs (B, T, H) (zeros at padded steps), final h (B, H).
    """
    kernel, bias = np.asarray(kernel, np.float64), np.asarray(bias, np.float64)

    def step(x_t, h):
        hidden_pre, forget_pre, input_pre = np.split(x_t @ kernel + bias, 3)
        forget, input_ = sigmoid(forget_pre), sigmoid(input_pre)
        if normalize_gates:
            forget, input_ = forget / (forget + input_), input_ / (forget + input_)
        return forget * h + input_ * g(hidden_pre)

    return sequential_reference(step, x, kernel.shape[1] // 3, **protocol)


def random_case(seed, batch=B, time=T, features=F, hidden=H):
    """Inputs, parameters wide enough for both branches of g, an initial carry, offsets."""
    return random_min_rnn_case(seed, 3, batch, time, features, hidden)


@functools.cache
def scan_results():
    """{(scan, variant, reverse): `differentiate` result} of every scan in both directions
    (variant "": the defaults; "remat": the sequential one under remat, reverse; "unnormalised":
    the log form without the gate normalisation, forward), with an initial carry, padding (an
    empty row too) and hidden offsets; the gradients of loss = <outputs, R> + <final, R'> with
    respect to the parameters, the initial carry and the offsets. One compilation for both tests
    below."""
    x, params, h0, offsets = random_case(0)
    layers = {
        (scan, ""): (make_layer(H, scan=scan, chunk_size=CHUNK), (False, True)) for scan in SCANS
    }
    layers["sequential", "remat"] = (make_layer(H, remat=True, scan="sequential"), (True,))
    layers["log", "unnormalised"] = (make_layer(H, normalize_gates=False), (False,))
    run = functools.partial(every_scan, layers, linear_loss(1, (B, T, H), (B, H)))
    return (x, params, h0, offsets), run_compiled(run, params, x, LENGTHS, h0, offsets)


def test_every_scan_matches_the_numpy_reference():
    """With an initial carry, padding (an empty row too), hidden offsets, both directions."""
    (x, params, h0, offsets), results = scan_results()
    for (scan, variant, reverse), result in results.items():
        reference = numpy_minlstm(
            x,
            **params,
            h0=h0,
            lengths=LENGTHS,
            offsets=offsets,
            reverse=reverse,
            normalize_gates=variant != "unnormalised",
        )
        case = f"scan={scan} {variant} reverse={reverse}"
        assert_matches_reference(result, reference, case)
        assert_padding_respected(result, h0, LENGTHS, case)


def test_every_scan_has_the_gradients_of_the_sequential_one():
    """Gradients with respect to the parameters, the initial carry and the hidden offsets."""
    _, results = scan_results()
    for (scan, variant, reverse), result in results.items():
        if variant == "unnormalised":
            continue  # another function: checked against the NumPy reference only
        case = f"scan={scan} {variant} reverse={reverse}"
        assert_like_sequential(result, results["sequential", "", reverse], case, scale=True)


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
    check_against_packaged(make_layer(hidden), params, reference, cases)  # scan="log", the default


def test_zero_offsets_change_nothing_and_a_split_sequence_continues_from_its_carry():
    x, params, _, _ = random_case(5)
    check_zero_offsets_and_a_split_sequence(make_layer(H), params, x)


def test_the_log_form_stays_accurate_at_moderate_length():
    """1e-5 relative for 64 steps, 1e-4 for 256 (f' ~ 0.5): see
    `check_the_log_form_at_moderate_length`."""
    check_the_log_form_at_moderate_length(make_layer, numpy_minlstm)


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
