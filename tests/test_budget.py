"""Parameter counting and hidden-size search for a parameter budget."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqbench.models import (
    SequenceModel,
    count_params,
    get,
    hidden_size_for_budget,
    model_param_count,
)
from seqbench.models.budget import _smallest_reaching

CELLS = ("simple_rnn", "lstm", "gru")
GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}

ADDING = ({}, jnp.zeros((1, 1, 2)), 1)  # (model fields, example inputs, output_dim)
COPY = ({"encoder": "one_hot", "vocab_size": 10}, jnp.zeros((1, 1), jnp.int32), 10)


def hand_count(gates, features, hidden, out_dim, n_layers=1, bidirectional=False):
    """PyTorch-style count: per direction G*H*(in + H) weights + 2*G*H biases, then Dense."""
    directions = 1 + bidirectional
    total = 0
    for k in range(n_layers):
        in_dim = features if k == 0 else directions * hidden
        total += directions * (gates * hidden * (in_dim + hidden) + 2 * gates * hidden)
    return total + directions * hidden * out_dim + out_dim


def test_count_params_on_pytrees():
    tree = {"a": np.zeros((2, 3)), "b": [jnp.ones(4), {"c": jax.ShapeDtypeStruct((5, 2), int)}]}
    assert count_params(tree) == 6 + 4 + 10
    assert count_params({}) == 0


@pytest.mark.parametrize("cell", list(CELLS))
def test_count_matches_hand_formula(cell):
    model = SequenceModel(architecture=get(cell), hidden_size=7, output_dim=2)
    x = jnp.zeros((1, 1, 3))
    assert model_param_count(model, x) == hand_count(GATES[cell], 3, 7, 2)
    stacked = model.clone(n_layers=2, bidirectional=True)
    assert model_param_count(stacked, x) == hand_count(GATES[cell], 3, 7, 2, 2, True)


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("budget", [16_000, 70_000])
@pytest.mark.parametrize("task", [ADDING, COPY], ids=["adding", "copy"])
def test_budget_within_two_percent(cell, budget, task):
    fields, example, out_dim = task

    def make(hidden):
        return SequenceModel(
            architecture=get(cell), hidden_size=hidden, output_dim=out_dim, **fields
        )

    hidden = hidden_size_for_budget(make, example, budget)
    counts = {h: model_param_count(make(h), example) for h in (hidden - 1, hidden, hidden + 1)}
    assert abs(counts[hidden] - budget) <= 0.02 * budget
    assert abs(counts[hidden] - budget) <= min(abs(counts[h] - budget) for h in counts)
    in_dim = 10 if fields else 2
    assert counts[hidden] == hand_count(GATES[cell], in_dim, hidden, out_dim)


def test_too_small_budget_raises():
    def make(hidden):
        return SequenceModel(architecture=get("lstm"), hidden_size=hidden, output_dim=1)

    with pytest.raises(ValueError, match="budget"):
        hidden_size_for_budget(make, ADDING[1], 10)  # smallest LSTM has 4*1*3 + 8 + 2 = 22
    with pytest.raises(ValueError, match="budget"):
        hidden_size_for_budget(make, ADDING[1], 0)
    # count(H) = 4H^2 + 17H + 1: H = 61 gives 15_922, 0.49% under 16_001.
    with pytest.raises(ValueError, match=r"within 0\.1%.*hidden_size=61 with 15922"):
        hidden_size_for_budget(make, ADDING[1], 16_001, tolerance=0.001)
    assert hidden_size_for_budget(make, ADDING[1], 16_001, tolerance=0.005) == 61
    assert hidden_size_for_budget(make, ADDING[1], 22, tolerance=0.0) == 1


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 50), min_size=1, max_size=300),
    st.integers(1, 20_000),
    st.integers(-5, 400),
)
def test_the_search_finds_the_smallest_size_that_reaches_the_budget_from_any_guess(
    steps, budget, guess
):
    """Any increasing count (here cumulative sums of arbitrary steps, plateaus included) and any
    guess: the answer is the brute-force one, or high + 1 when nothing reaches."""
    counts = np.cumsum([1, *steps]).tolist()  # counts[h - 1] = count(h)
    high = len(counts)
    expected = next((h for h in range(1, high + 1) if counts[h - 1] >= budget), high + 1)
    assert _smallest_reaching(lambda h: counts[h - 1], budget, guess, high) == expected


@pytest.mark.parametrize("cell", list(CELLS))
def test_the_quadratic_guess_is_the_answer_for_a_recurrent_stack(cell):
    """count(H) is exactly quadratic for these models, so the search counts 5 sizes, not ~20."""
    counted = []

    def make(hidden):
        counted.append(hidden)
        return SequenceModel(architecture=get(cell), hidden_size=hidden, output_dim=1, n_layers=2)

    hidden = hidden_size_for_budget(make, ADDING[1], 70_000)
    assert len(counted) == 5
    assert abs(model_param_count(make(hidden), ADDING[1]) - 70_000) <= 0.02 * 70_000
