"""Parameter counting and hidden-size selection for a fixed parameter budget."""

import math
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from seqbench.models.sequence import SequenceModel

_MAX_HIDDEN = 1 << 20


def count_params(params: Any) -> int:
    """Total number of scalars in a pytree of arrays (or ``jax.ShapeDtypeStruct``s)."""
    return sum(math.prod(np.shape(leaf)) for leaf in jax.tree_util.tree_leaves(params))


def model_param_count(model: SequenceModel, example_inputs: Any) -> int:
    """Number of parameters ``model.init`` creates for ``example_inputs`` (shapes only, no compute).

    ``example_inputs`` may be an array or a ``jax.ShapeDtypeStruct``; only its shape and dtype
    matter, so a (1, 1, F) or (1, 1) example is enough.
    """
    variables = jax.eval_shape(model.init, jax.random.key(0), example_inputs)
    return count_params(variables["params"])


def _smallest_reaching(count: Callable[[int], int], budget: int, guess: int, high: int) -> int:
    """Smallest h in [1, high] with ``count(h) >= budget``, for ``count`` increasing in h, or
    ``high + 1`` when even ``count(high)`` falls short.

    Gallops from ``guess`` (doubling steps until the answer is bracketed), then bisects: a good
    guess costs two counts, a wrong one about 2 log2 |guess - answer| more. The answer does not
    depend on the guess.
    """
    guess = min(max(guess, 1), high)
    step = 1
    if count(guess) >= budget:
        hi = guess  # reaches; walk down until a size falls short (or 0, which always does)
        lo = max(0, hi - step)
        while lo > 0 and count(lo) >= budget:
            hi, step = lo, 2 * step
            lo = max(0, hi - step)
    else:
        lo = guess  # falls short; walk up until a size reaches
        hi = min(high, lo + step)
        while count(hi) < budget:
            if hi == high:
                return high + 1
            lo, step = hi, 2 * step
            hi = min(high, lo + step)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count(mid) >= budget:
            hi = mid
        else:
            lo = mid
    return hi


def _quadratic_guess(count: Callable[[int], int], budget: int) -> int:
    """Where the parabola through the counts at H = 1, 2, 4 reaches ``budget``: the parameter count
    of a stack of dense, recurrent and convolution layers is quadratic in H (exactly, unless a
    width is rounded from H), so the guess is usually the answer. Only a starting point."""
    c1, c2, c4 = count(1), count(2), count(4)
    # c(h) = a h^2 + b h + c through the three points
    a = (c4 - 3 * c2 + 2 * c1) / 6
    b = c2 - c1 - 3 * a
    c = c1 - a - b
    if a > 0:
        root = (-b + math.sqrt(max(b * b - 4 * a * (c - budget), 0.0))) / (2 * a)
    elif b > 0:
        root = (budget - c) / b
    else:
        return 1
    return math.ceil(root) if math.isfinite(root) else 1


def hidden_size_for_budget(
    make_model: Callable[[int], SequenceModel],
    example_inputs: Any,
    budget: int,
    tolerance: float = 0.02,
) -> int:
    """Hidden size H whose model has the parameter count closest to ``budget``.

    ``make_model(H)`` builds the model; its parameter count must be increasing in H. The smallest
    H that reaches the budget is found from a quadratic guess (`_quadratic_guess`), checked by
    counting and corrected by galloping and bisection (`_smallest_reaching`); the answer is that H
    or the one below, whichever is closer. Raises ValueError when the closest count is not within
    ``tolerance`` (relative to ``budget``), e.g. when even H = 1 is far over budget.
    """
    if budget < 1:
        raise ValueError(f"budget must be a positive parameter count, got {budget}")
    cache: dict[int, int] = {}

    def count(h: int) -> int:
        if h not in cache:
            cache[h] = model_param_count(make_model(h), example_inputs)
        return cache[h]

    hi = _smallest_reaching(count, budget, _quadratic_guess(count, budget), _MAX_HIDDEN)
    if hi > _MAX_HIDDEN:
        raise ValueError(
            f"budget {budget} not reached with hidden_size <= {_MAX_HIDDEN} "
            f"(count({_MAX_HIDDEN}) = {count(_MAX_HIDDEN)}); does make_model use its hidden-size "
            "argument?"
        )
    candidates = [h for h in (hi - 1, hi) if h >= 1]
    best = min(candidates, key=lambda h: abs(count(h) - budget))
    error = abs(count(best) - budget) / budget
    if error > tolerance:
        raise ValueError(
            f"no hidden size gets within {tolerance:.1%} of the budget of {budget} parameters: "
            f"closest is hidden_size={best} with {count(best)} parameters ({error:.1%} off)"
            + (" -- the budget is smaller than the smallest model" if best == 1 else "")
        )
    return best


def sizes_for_budget(
    make_model: Callable[[int, int], SequenceModel],
    example_inputs: Any,
    budget: int,
    default_width: Callable[[int], int],
    tolerance: float = 0.02,
) -> tuple[int, int]:
    """(H, W) for a model with a second, finer size W (the residual blocks' MLP width), whose
    parameter count is closest to ``budget``.

    H is chosen as by `hidden_size_for_budget` with W = ``default_width(H)``; W is then moved
    from its default so that the count lands closest to ``budget`` (the count must increase in
    W). Residual blocks grow by about 10 H^2 per step of H, coarser than 2% of small budgets; a
    step of W adds about 3 H per block. ValueError as `hidden_size_for_budget`.
    """
    hidden = hidden_size_for_budget(
        lambda h: make_model(h, default_width(h)), example_inputs, budget, tolerance=math.inf
    )
    cache: dict[int, int] = {}

    def count(w: int) -> int:
        if w not in cache:
            cache[w] = model_param_count(make_model(hidden, w), example_inputs)
        return cache[w]

    high = max(2, 4 * default_width(hidden))
    # the count is linear in W: the line through W = 1 and W = high says where it reaches the budget
    slope = (count(high) - count(1)) / (high - 1)
    guess = 1 + math.ceil((budget - count(1)) / slope) if slope > 0 else 1
    hi = min(_smallest_reaching(count, budget, guess, high), high)
    lo = max(hi - 1, 1)
    best = min({lo, hi}, key=lambda w: abs(count(w) - budget))
    error = abs(count(best) - budget) / budget
    if error > tolerance:
        raise ValueError(
            f"no hidden size gets within {tolerance:.1%} of the budget of {budget} parameters: "
            f"closest is hidden_size={hidden} (MLP width {best}) with {count(best)} parameters "
            f"({error:.1%} off)"
        )
    return hidden, best
