"""Repetition metrics, measured on every sample whatever its suite.

Units: the output is split into words and single punctuation marks (regex ``\\w+|[^\\w\\s]``), so
the metrics are the same for every model whatever its tokenizer, and "1+1=2" is five units.

- seq-rep-n (Welleck et al. 2019, "Neural text degeneration with unlikelihood training"):
  1 - unique n-grams / n-grams of the output; 0 for no repetition, near 1 for a loop. n = 4.
- distinct-n (Li et al. 2016): unique n-grams / n-grams; 1 for no repetition. n = 2.
- tail loop (after Holtzman et al. 2019's degeneration examples): the output *ends* in a span of
  p units repeated back to back r times (a cut-off last copy counts as the fraction it has).
  It is a loop when p >= 3 and r >= 2, or p < 3 and r >= 10 (a word or pair said ten times in a
  row). A threshold like r > 50 for short spans never triggers within 64-token budgets, so
  harness uses 10.
- repeated (the per-sample flag behind "repetition rate"): a tail loop, or seq-rep-4 >= 0.5.
Outputs too short to hold an n-gram count as not repeating (seq-rep 0, distinct 1).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

UNIT = re.compile(r"\w+|[^\w\s]")

SEQ_REP_N = 4
DISTINCT_N = 2
LOOP_MIN_SPAN = 3
LOOP_MIN_REPEATS = 2.0
LOOP_SHORT_SPAN_REPEATS = 10.0
SEQ_REP_THRESHOLD = 0.5


@dataclass(frozen=True)
class TailLoop:
    period: int  # units in the repeated span
    repeats: float  # back-to-back copies at the end, a cut-off copy counted fractionally
    start_char: int  # where the looping tail starts in the output, for highlighting
    span: str  # one copy of the repeated text


@dataclass(frozen=True)
class Repetition:
    seq_rep_4: float
    distinct_2: float
    tail_loop: TailLoop | None
    repeated: bool

    def to_dict(self) -> dict:
        return asdict(self)


def units(text: str) -> list[str]:
    return UNIT.findall(text)


def _ngrams(seq: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]


def seq_rep_n(seq: list[str], n: int = SEQ_REP_N) -> float:
    grams = _ngrams(seq, n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def distinct_n(seq: list[str], n: int = DISTINCT_N) -> float:
    grams = _ngrams(seq, n)
    return len(set(grams)) / len(grams) if grams else 1.0


def _is_loop(period: int, repeats: float) -> bool:
    if period >= LOOP_MIN_SPAN:
        return repeats >= LOOP_MIN_REPEATS
    return repeats >= LOOP_SHORT_SPAN_REPEATS


def tail_loop(text: str) -> TailLoop | None:
    """The longest looping tail of `text` (ties go to the shortest period), or None."""
    matches = list(UNIT.finditer(text))
    seq = [m.group() for m in matches]
    n = len(seq)
    best: tuple[int, int] | None = None  # (suffix length, period)
    for period in range(1, n // 2 + 1):
        i = n - 1 - period
        while i >= 0 and seq[i] == seq[i + period]:
            i -= 1
        length = (n - 1 - period - i) + period
        if _is_loop(period, length / period) and (best is None or length > best[0]):
            best = (length, period)
    if best is None:
        return None
    length, period = best
    start = n - length
    span_end = matches[start + period - 1].end()
    return TailLoop(
        period=period,
        repeats=round(length / period, 2),
        start_char=matches[start].start(),
        span=text[matches[start].start() : span_end],
    )


def measure(text: str) -> Repetition:
    seq = units(text)
    loop = tail_loop(text)
    rep4 = seq_rep_n(seq, SEQ_REP_N)
    return Repetition(
        seq_rep_4=round(rep4, 4),
        distinct_2=round(distinct_n(seq, DISTINCT_N), 4),
        tail_loop=loop,
        repeated=loop is not None or rep4 >= SEQ_REP_THRESHOLD,
    )
