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


def hidden_size_for_budget(
    make_model: Callable[[int], SequenceModel],
    example_inputs: Any,
    budget: int,
    tolerance: float = 0.02,
) -> int:
    """Hidden size H whose model has the parameter count closest to ``budget``.

    ``make_model(H)`` builds the model; its parameter count must be increasing in H. Searches
    by doubling then bisection. Raises ValueError when the closest count is not within
    ``tolerance`` (relative to ``budget``), e.g. when even H = 1 is far over budget.
    """
    if budget < 1:
        raise ValueError(f"budget must be a positive parameter count, got {budget}")
    cache: dict[int, int] = {}

    def count(h: int) -> int:
        if h not in cache:
            cache[h] = model_param_count(make_model(h), example_inputs)
        return cache[h]

    # Find the smallest H with count(H) >= budget, bracketed in (lo, hi].
    lo, hi = 0, 1
    while count(hi) < budget:
        lo, hi = hi, 2 * hi
        if hi > _MAX_HIDDEN:
            raise ValueError(
                f"budget {budget} not reached with hidden_size <= {_MAX_HIDDEN} "
                f"(count({lo}) = {count(lo)}); does make_model use its hidden-size argument?"
            )
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count(mid) >= budget:
            hi = mid
        else:
            lo = mid
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

    lo, hi = 1, max(2, 4 * default_width(hidden))
    if count(lo) >= budget:
        hi = lo
    elif count(hi) >= budget:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if count(mid) >= budget:
                hi = mid
            else:
                lo = mid
    best = min({lo, hi}, key=lambda w: abs(count(w) - budget))
    error = abs(count(best) - budget) / budget
    if error > tolerance:
        raise ValueError(
            f"no hidden size gets within {tolerance:.1%} of the budget of {budget} parameters: "
            f"closest is hidden_size={hidden} (MLP width {best}) with {count(best)} parameters "
            f"({error:.1%} off)"
        )
    return hidden, best
