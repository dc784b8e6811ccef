"""The built-in gate rules, in the order the gate reports them.

An accuracy drop counts only when McNemar's exact test on the flipped questions is significant
and larger than allowed; floors and the rise of the repetition and no-stop rates are plain rates.
"""

from __future__ import annotations

from ..stats import mcnemar_exact
from .registry import Fraction, SuitePair, Verdict, rule


def _shown(detectable: float | None) -> str:
    return "none" if detectable is None else f"{100 * detectable:.0f}+ pts"


def _underpowered(pair: SuitePair, drop: float) -> bool:
    return pair.detectable is None or pair.detectable > drop


@rule("max_accuracy_drop")
def max_accuracy_drop(pair: SuitePair, *, drop: Fraction = 0.0) -> Verdict:
    """A larger drop fails, when significant: one question going wrong is noise."""
    p = pair.paired
    shown = _shown(pair.detectable)
    evidence = (
        f"{100 * p.difference:+.1f} pts [{100 * p.ci95[0]:+.1f}, {100 * p.ci95[1]:+.1f}], "
        f"fixed {p.fixed}, broken {p.broken}, McNemar p={p.p_value:.3g}; detects drops of {shown}"
    )
    warning = None
    if _underpowered(pair, drop):
        flipping = 100 * (p.fixed + p.broken) / p.n if p.n else 0.0
        warning = (
            f"{pair.model}/{pair.suite}: n={p.n}, {flipping:.0f}% of questions flipping: the "
            f"paired test detects only drops of {shown} (80% power, exact McNemar, alpha "
            f"{pair.alpha}), more than the rule's max_accuracy_drop of {100 * drop:.0f} pts; "
            "smaller regressions pass unseen (add questions: harness power)"
        )
    significant = p.p_value < pair.alpha and p.difference < 0
    return Verdict(
        p.accuracy_a,
        p.accuracy_b,
        f"fails if drop > {100 * drop:.1f} pts and p < {pair.alpha}",
        not (significant and -p.difference > drop),
        evidence,
        broken=tuple(
            k for k in pair.keys if pair.baseline[k]["correct"] and not pair.current[k]["correct"]
        ),
        detectable=pair.detectable,
        message=(
            f"accuracy {100 * p.accuracy_a:.1f}% -> {100 * p.accuracy_b:.1f}% "
            f"({100 * (p.accuracy_a - p.accuracy_b):.1f} pts drop; {evidence})"
        ),
        warning=warning,
    )


@rule("power")
def power(pair: SuitePair) -> Verdict | None:
    """With strict_power, a suite too small to detect its max_accuracy_drop fails."""
    if not pair.strict_power:
        return None
    drop = pair.options.max_accuracy_drop
    return Verdict(
        None,
        pair.paired.accuracy_b,
        f"detects drops of {100 * drop:.0f} pts (strict power)",
        not _underpowered(pair, drop),
        f"detects drops of {_shown(pair.detectable)} with n={pair.paired.n}",
        detectable=pair.detectable,
    )


@rule("min_accuracy")
def min_accuracy(pair: SuitePair, *, floor: Fraction | None = None) -> Verdict | None:
    """A floor on the candidate's accuracy, on all its questions."""
    if floor is None:
        return None
    right = sum(v["correct"] for v in pair.current.values())
    accuracy = right / len(pair.current)
    return Verdict(
        None,
        accuracy,
        f">= {100 * floor:.1f}%",
        accuracy >= floor,
        f"{right}/{len(pair.current)} right",
    )


def _rise(pair: SuitePair, flag: str, limit: float) -> Verdict:
    """The rate of a flag on the common questions before and now, with McNemar's p on its flips."""
    before = [pair.baseline[k][flag] for k in pair.keys]
    now = [pair.current[k][flag] for k in pair.keys]
    rose = sum(1 for x, y in zip(before, now, strict=True) if not x and y)
    fell = sum(1 for x, y in zip(before, now, strict=True) if x and not y)
    n = len(pair.keys) or 1
    rate_before, rate_now = sum(before) / n, sum(now) / n
    rise = rate_now - rate_before
    return Verdict(
        rate_before,
        rate_now,
        f"rise <= {100 * limit:.1f} pts",
        rise <= limit + 1e-12,
        f"{100 * rise:+.1f} pts, McNemar p={mcnemar_exact(rose, fell):.3g}",
    )


@rule("max_repetition_rise")
def max_repetition_rise(pair: SuitePair, *, limit: Fraction = 0.05) -> Verdict:
    """Repeating answers (a tail loop, or seq-rep-4 of 0.5 or more) may rise this much."""
    return _rise(pair, "repeated", limit)


@rule("max_no_stop_rise")
def max_no_stop_rise(pair: SuitePair, *, limit: Fraction = 0.05) -> Verdict:
    """Answers that ran into max_new_tokens may rise this much."""
    return _rise(pair, "no_stop", limit)
