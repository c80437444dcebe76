"""Statistics over the seeds of one run, as the tables and figures report them.

Each seed gives one value of a metric; over the seeds with a finite value a report shows:

- the mean and the sample standard deviation (ddof = 1, the unbiased variance's square root; none
  with a single seed), the median and the range (min–max);
- a bootstrap 95% confidence interval of the mean (`scipy.stats.bootstrap`, percentile method,
  `N_RESAMPLES` resamples from the fixed seed `BOOTSTRAP_SEED`, so a table is the same on every
  run); none below `MIN_SEEDS_FOR_CI` seeds, where resampling says nothing. With 3 seeds the
  interval is close to the seeds' range: a reminder of how little three seeds pin down;
- whether two entries differ: Welch's two-sided t-test (`scipy.stats.ttest_ind`, unequal
  variances) between two sets of seeds, or a one-sample t-test against a published number, at
  level `ALPHA`.

Numbers are rounded to the precision their uncertainty supports (`uncertainty_decimals`): the
decimal place of the second significant digit of the confidence interval's half-width (of the
standard deviation where there is no interval), every number of an entry to the same place.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: the confidence level of the bootstrap intervals
CONFIDENCE = 0.95
#: bootstrap resamples per interval
N_RESAMPLES = 9999
#: the seed of the bootstrap's random generator (fixed: a table is reproducible)
BOOTSTRAP_SEED = 0
#: the fewest seeds an interval is computed from
MIN_SEEDS_FOR_CI = 3
#: the significance level of the best-versus-runner-up test
ALPHA = 0.05
#: significant figures of the uncertainty that set the precision of an entry's numbers
UNCERTAINTY_FIGURES = 2


@dataclass(frozen=True)
class SeedStatistics:
    """Statistics of `values`, (n,) the finite per-seed values in seed order; every field None
    when n = 0, `std` None when n < 2, `ci` (low, high) None when n < MIN_SEEDS_FOR_CI."""

    values: tuple[float, ...]
    mean: float | None
    std: float | None
    median: float | None
    minimum: float | None
    maximum: float | None
    ci: tuple[float, float] | None

    @property
    def n(self) -> int:
        return len(self.values)

    def uncertainty(self) -> float | None:
        """The half-width of the confidence interval, else the std (None: neither, or zero)."""
        if self.ci is not None:
            width = (self.ci[1] - self.ci[0]) / 2
        else:
            width = self.std
        return width if width is not None and width > 0 and math.isfinite(width) else None


def seed_statistics(values: Sequence[float]) -> SeedStatistics:
    """Mean, sample std (ddof 1), median, min, max and bootstrap CI of the finite `values`."""
    finite = tuple(float(v) for v in values if v is not None and math.isfinite(v))
    if not finite:
        return SeedStatistics((), None, None, None, None, None, None)
    array = np.asarray(finite)
    return SeedStatistics(
        finite,
        float(array.mean()),
        float(array.std(ddof=1)) if array.size > 1 else None,
        float(np.median(array)),
        float(array.min()),
        float(array.max()),
        bootstrap_ci(finite),
    )


def bootstrap_ci(
    values: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float] | None:
    """(low, high), the percentile bootstrap interval of the mean of `values` (n,) at
    `confidence`, from `n_resamples` resamples drawn with `seed`; None when n < MIN_SEEDS_FOR_CI.
    Values all equal give (value, value)."""
    from scipy.stats import bootstrap

    array = np.asarray(values, dtype=float)
    if array.size < MIN_SEEDS_FOR_CI:
        return None
    if np.all(array == array[0]):
        return float(array[0]), float(array[0])
    result = bootstrap(
        (array,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """The two-sided p-value of Welch's t-test that `a` and `b` (seed values) have equal means;
    None when either has fewer than 2 values or the test is undefined (no variance in either)."""
    from scipy.stats import ttest_ind

    if len(a) < 2 or len(b) < 2:
        return None
    with warnings.catch_warnings():  # nearly identical seeds (accuracy 1.0): p is still defined
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(ttest_ind(a, b, equal_var=False).pvalue)
    return p if math.isfinite(p) else None


def one_sample_p(a: Sequence[float], reference: float) -> float | None:
    """The two-sided p-value of the one-sample t-test that the mean of `a` equals `reference` (a
    published number without seeds); None with fewer than 2 values or no variance."""
    from scipy.stats import ttest_1samp

    if len(a) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(ttest_1samp(a, reference).pvalue)
    return p if math.isfinite(p) else None


def uncertainty_decimals(uncertainty: float | None) -> int | None:
    """The decimal place (digits after the point; negative: tens, hundreds) of the
    UNCERTAINTY_FIGURES-th significant digit of `uncertainty`: 0.0123 -> 3, 4.6 -> 1, 130 -> -1.
    None for no, zero or non-finite uncertainty."""
    if uncertainty is None or not math.isfinite(uncertainty) or uncertainty <= 0:
        return None
    return UNCERTAINTY_FIGURES - 1 - math.floor(math.log10(uncertainty))


#: the most digits after the point written in fixed notation; finer precision switches to x.ye-z
MAX_FIXED_DECIMALS = 6


def format_rounded(value: float, decimals: int) -> str:
    """`value` rounded to `decimals` places (see `uncertainty_decimals`): fixed notation (0.1264,
    0.00026, 360, 0.0203968), but scientific for a value under 1e-3 that needs more than
    MAX_FIXED_DECIMALS places, its last digit at the same place (3.50e-07 at decimals 9)."""
    if decimals > MAX_FIXED_DECIMALS and abs(value) < 1e-3:
        exponent = math.floor(math.log10(abs(value))) if value else -decimals
        return f"{value:.{max(exponent + decimals, 0)}e}"
    rounded = round(value, decimals)
    return f"{rounded:.{max(decimals, 0)}f}"
