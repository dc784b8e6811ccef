"""How large a change a suite can detect: the power of the paired test the gate decides on.

The gate calls a drop a regression when McNemar's exact test on the questions that flipped gives
p < alpha (two-sided) and more broke than were fixed. Model: each question flips independently,
breaking with probability p_b and getting fixed with p_f, so the drop is p_b - p_f and the
discordant rate d = p_b + p_f. The number of flips K is Binomial(n, d); given K = k the broken
count is Binomial(k, p_b / d), and the test rejects when it reaches the critical count of the
exact test for k. Power sums that over k exactly (no normal approximation). The minimum detectable
drop is the smallest drop found with 80% power, assuming at least that share of questions flips
(d = max(discordant rate, drop)); tests/test_power.py checks it against a simulation.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

POWER = 0.8


@lru_cache(maxsize=4096)
def _log_comb(k: int) -> np.ndarray:
    """log C(k, j) for j = 0..k (cumulative, so cheap for large k)."""
    steps = np.log(np.arange(k, 0, -1, dtype=float)) - np.log(np.arange(1, k + 1, dtype=float))
    return np.concatenate([[0.0], np.cumsum(steps)])


@lru_cache(maxsize=100_000)
def _critical(k: int, alpha: float) -> int:
    """The smallest broken count b (b > k/2) with two-sided exact p < alpha; k + 1 if none."""
    if k == 0:
        return 1
    pmf = np.exp(_log_comb(k) - k * math.log(2))
    tail = np.cumsum(pmf[::-1])[::-1]  # P(X >= b)
    for b in range(k // 2 + 1, k + 1):
        if 2 * tail[b] < alpha:
            return b
    return k + 1


def power(n: int, drop: float, discordant: float, alpha: float = 0.05) -> float:
    """P(the gate's test flags a drop) for a true drop `drop` with `discordant` share flipping."""
    d = min(1.0, max(discordant, drop))
    if n <= 0 or d <= 0 or drop <= 0:
        return 0.0
    q = min(1.0, (d + drop) / (2 * d))  # P(a flip is a break)
    sd = math.sqrt(n * d * (1 - d))
    lo, hi = max(0, int(n * d - 9 * sd) - 1), min(n, int(n * d + 9 * sd) + 1)
    if d >= 1:  # every question flips
        lo = hi = n
    ks = np.arange(lo, hi + 1)
    log_pk = _log_comb(n)[lo : hi + 1] + ks * math.log(d) + (n - ks) * (_log1m(d) if d < 1 else 0)
    total = 0.0
    for k, lp in zip(ks.tolist(), log_pk.tolist(), strict=True):
        b = _critical(k, alpha)
        if b > k:
            continue
        if q >= 1:
            tail = 1.0
        else:
            j = np.arange(b, k + 1, dtype=float)
            log_tail = _log_comb(k)[b:] + j * math.log(q) + (k - j) * math.log1p(-q)
            tail = float(np.exp(log_tail).sum())
        total += math.exp(lp) * tail
    return min(1.0, total)


def _log1m(x: float) -> float:
    return math.log1p(-x) if x < 1 else -math.inf


def min_detectable_drop(
    n: int, discordant: float, alpha: float = 0.05, target: float = POWER
) -> float | None:
    """The smallest accuracy drop (a fraction) detected with `target` power; None when even a
    drop of 100% would not be (too few questions)."""
    if n <= 0 or power(n, 1.0, 1.0, alpha) < target:
        return None
    lo, hi = 0.0, 1.0
    for _ in range(30):
        mid = (lo + hi) / 2
        if power(n, mid, discordant, alpha) >= target:
            hi = mid
        else:
            lo = mid
    return hi


def questions_needed(
    drop: float, discordant: float, alpha: float = 0.05, target: float = POWER
) -> int:
    """The fewest questions that detect `drop` with `target` power (planning a suite)."""
    lo, hi = 1, 2
    while power(hi, drop, discordant, alpha) < target:
        lo, hi = hi, hi * 2
        if hi > 1_000_000:
            raise ValueError("more than a million questions")
    while lo < hi:
        mid = (lo + hi) // 2
        if power(mid, drop, discordant, alpha) >= target:
            hi = mid
        else:
            lo = mid + 1
    return hi


def describe(n: int, discordant: float, alpha: float = 0.05) -> str:
    """'n=28: detects a drop of 21 points or more' (80% power, exact McNemar)."""
    mdd = min_detectable_drop(n, discordant, alpha)
    if mdd is None:
        return f"n={n}: too few questions to detect any drop"
    return f"n={n}: detects a drop of {100 * mdd:.0f} points or more"
