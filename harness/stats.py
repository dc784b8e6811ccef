"""Confidence intervals for rates measured on a few hundred questions."""

from __future__ import annotations

import math

Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval: well-behaved at 0% and 100%, unlike the normal approximation."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_exact(fixed: int, broken: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test on the discordant pairs only."""
    n = fixed + broken
    if n == 0:
        return 1.0
    k = min(fixed, broken)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_bootstrap(
    fixed: int, broken: int, n: int, *, samples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of accuracy(b) - accuracy(a) from a paired bootstrap.

    Resampling questions with replacement only moves the counts of the three kinds of pair
    (fixed +1, broken -1, unchanged 0), so the bootstrap draws those counts from a multinomial:
    the same distribution as index resampling, at a cost independent of n.
    """
    if n == 0:
        return (0.0, 0.0)
    import numpy as np

    rng = np.random.default_rng(seed)
    probs = [fixed / n, broken / n, (n - fixed - broken) / n]
    draws = rng.multinomial(n, probs, size=samples)
    diffs = (draws[:, 0] - draws[:, 1]) / n
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return (float(lo), float(hi))
