"""How sure a benchmark comparison is: intervals for medians of per-case ratios and for paired differences between
two methods on the same cases. Pure functions over lists of numbers; no model.

* ``median_interval``: the distribution-free interval for a median from order statistics (the binomial one: the
  median lies between the j-th smallest and the j-th largest of n values with probability 1 - 2 P(Bin(n, 1/2) < j)).
  It takes the narrowest such interval that reaches ``level``; with too few cases for that it gives [min, max] and
  says what it covers (4 cases: 87.5%; 6 cases: 96.9%).
* ``paired_difference``: mean of a - b over the cases both have, a percentile-bootstrap interval over cases
  (seeded), how many cases each method wins, and the exact two-sided sign test on the cases that differ.

    from paired_stats import median_interval, paired_difference
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

LEVEL = 0.95
RESAMPLES = 10_000
SEED = 0


def _below(n: int, j: int) -> float:
    """P(Bin(n, 1/2) < j)."""
    return sum(math.comb(n, i) for i in range(j)) / 2**n


def median_interval(values: Sequence[float], level: float = LEVEL) -> dict | None:
    """{median, low, high, coverage, cases}: [x_(j), x_(n-j+1)] with the largest j whose coverage is >= level (j = 1,
    [min, max], when none is: its coverage is then below ``level`` and says so). None for no values."""
    xs = sorted(float(v) for v in values)
    n = len(xs)
    if not n:
        return None
    j = 1
    while j + 1 <= (n + 1) // 2 and 1 - 2 * _below(n, j + 1) >= level:
        j += 1
    return {
        "median": float(np.median(xs)),
        "low": xs[j - 1],
        "high": xs[n - j],
        "coverage": round(1 - 2 * _below(n, j), 4),
        "cases": n,
    }


def sign_test_p(wins: int, losses: int) -> float:
    """Exact two-sided sign test: 2 P(Bin(m, 1/2) <= min(wins, losses)), at most 1 (1 when m = 0)."""
    m = wins + losses
    if m == 0:
        return 1.0
    return min(1.0, 2 * _below(m, min(wins, losses) + 1))


def paired_difference(
    a: Sequence[float | None],
    b: Sequence[float | None],
    *,
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> dict | None:
    """Method a against method b on the same cases (a case where either is None or not finite is left out):
    {mean_a, mean_b, difference (mean of a - b), low, high (percentile bootstrap over cases), level, resamples,
    seed, cases, a_higher, b_higher, ties, sign_test_p}. None when no case has both."""
    pairs = [(float(x), float(y)) for x, y in zip(a, b, strict=True) if _finite(x) and _finite(y)]
    if not pairs:
        return None
    xs, ys = (np.array(v) for v in zip(*pairs, strict=True))
    diff = xs - ys
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(len(diff), size=(resamples, len(diff)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    higher, lower = int(np.sum(diff > 0)), int(np.sum(diff < 0))
    return {
        "mean_a": round(float(xs.mean()), 4),
        "mean_b": round(float(ys.mean()), 4),
        "difference": round(float(diff.mean()), 4),
        "low": round(float(low), 4),
        "high": round(float(high), 4),
        "level": level,
        "resamples": resamples,
        "seed": seed,
        "cases": len(diff),
        "a_higher": higher,
        "b_higher": lower,
        "ties": len(diff) - higher - lower,
        "sign_test_p": round(sign_test_p(higher, lower), 4),
    }


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)
