"""Correctness scorers. Each is one function; its keyword-only arguments are its suite options."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from .registry import Candidate, Range, Score, scorer

# A number, with thousands separators and decimals; a leading minus counts only where it cannot
# be a subtraction sign ("23-5" is 23 and 5, "= -5" is minus five).
NUMBER = re.compile(r"(?:(?<![\w)\]])-)?\d+(?:,\d{3})*(?:\.\d+)?")
_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")


def normalise(text: str, case_sensitive: bool = False) -> str:
    """Collapse whitespace, drop surrounding quotes and trailing punctuation, fold case."""
    text = " ".join(text.split()).strip().strip("\"'`").rstrip(".!?;:,").strip()
    return text if case_sensitive else text.casefold()


def numbers(text: str) -> list[float]:
    return [float(m.group().replace(",", "")) for m in NUMBER.finditer(text)]


def _fold(text: str, case_sensitive: bool) -> str:
    return text if case_sensitive else text.casefold()


@scorer("exact", needs_answer=True, answer_type=str | int | float)
def exact(c: Candidate, *, case_sensitive: bool = False) -> Score:
    """The whole answer equals the expected one after normalising whitespace, case, punctuation."""
    got, want = normalise(c.output, case_sensitive), normalise(str(c.answer), case_sensitive)
    return Score(got == want, float(got == want), {"normalised": got})


@scorer("numeric", needs_answer=True, answer_type=int | float)
def numeric(
    c: Candidate,
    *,
    tolerance: Annotated[float, Range(0)] = 0.0,
    take: Literal["last", "first"] = "last",
    require_stop: bool = False,
) -> Score:
    """The final number in the answer (or the first, with take: first) equals the expected one.

    With require_stop, an answer cut off at the token limit is wrong whatever its last number:
    a model that rambles through many numbers can otherwise end on the right one by chance.
    """
    if require_stop and c.finish_reason == "length":
        return Score(False, 0.0, {"extracted": None, "stopped": False})
    found = numbers(c.output)
    if not found:
        return Score(False, 0.0, {"extracted": None})
    value = found[-1] if take == "last" else found[0]
    ok = abs(value - float(c.answer)) <= tolerance
    shown = int(value) if value.is_integer() else value
    return Score(ok, float(ok), {"extracted": shown})


@scorer("contains")
def contains(c: Candidate, *, text: str, case_sensitive: bool = False) -> Score:
    """The answer contains the text."""
    ok = _fold(text, case_sensitive) in _fold(c.output, case_sensitive)
    return Score(ok, float(ok))


@scorer("contains_all")
def contains_all(c: Candidate, *, values: list[str], case_sensitive: bool = False) -> Score:
    """The answer contains every one of the values; the score is the fraction found."""
    out = _fold(c.output, case_sensitive)
    missing = [v for v in values if _fold(v, case_sensitive) not in out]
    frac = 1 - len(missing) / len(values) if values else 1.0
    return Score(not missing, frac, {"missing": missing})


@scorer("contains_any")
def contains_any(c: Candidate, *, values: list[str], case_sensitive: bool = False) -> Score:
    """The answer contains at least one of the values."""
    out = _fold(c.output, case_sensitive)
    found = [v for v in values if _fold(v, case_sensitive) in out]
    return Score(bool(found), float(bool(found)), {"found": found})


@scorer("not_contains")
def not_contains(c: Candidate, *, values: list[str], case_sensitive: bool = False) -> Score:
    """The answer contains none of the values."""
    out = _fold(c.output, case_sensitive)
    found = [v for v in values if _fold(v, case_sensitive) in out]
    return Score(not found, float(not found), {"found": found})


@scorer("regex")
def regex(c: Candidate, *, pattern: str, case_sensitive: bool = False, full: bool = False) -> Score:
    """The answer matches the regular expression (anywhere, or whole with full: true)."""
    flags = 0 if case_sensitive else re.IGNORECASE
    text = c.output.strip()
    m = re.fullmatch(pattern, text, flags) if full else re.search(pattern, text, flags)
    return Score(m is not None, float(m is not None), {"match": m.group() if m else None})


@scorer("choice", needs_answer=True, answer_type=str)
def choice(c: Candidate, *, choices: list[str], case_sensitive: bool = False) -> Score:
    """The first of the choices the answer names (as a whole word) is the expected one."""
    out = _fold(c.output, case_sensitive)
    first: tuple[int, str] | None = None
    for option in choices:
        m = re.search(rf"(?<!\w){re.escape(_fold(option, case_sensitive))}(?!\w)", out)
        if m and (first is None or m.start() < first[0]):
            first = (m.start(), option)
    picked = first[1] if first else None
    ok = picked is not None and _fold(picked, case_sensitive) == _fold(
        str(c.answer), case_sensitive
    )
    return Score(ok, float(ok), {"picked": picked})


@scorer("max_words")
def max_words(c: Candidate, *, limit: Annotated[int, Range(1)]) -> Score:
    """The answer has at most `limit` words."""
    n = len(c.output.split())
    return Score(n <= limit, float(n <= limit), {"words": n})


@scorer("max_sentences")
def max_sentences(c: Candidate, *, limit: Annotated[int, Range(1)]) -> Score:
    """The answer has at most `limit` sentences (ends of . ! ?; an unfinished tail counts)."""
    text = c.output.strip()
    n = len(_SENTENCE_END.findall(text))
    if text and not _SENTENCE_END.search(text[-1] + " "):
        n += 1
    return Score(0 < n <= limit, float(0 < n <= limit), {"sentences": n})


@scorer("stops")
def stops(c: Candidate) -> Score:
    """The model ended its answer itself (an end-of-turn token or a stop string)."""
    ok = c.finish_reason in ("eos", "stop")
    return Score(ok, float(ok), {"finish_reason": c.finish_reason})


@scorer("no_repetition")
def no_repetition(c: Candidate, *, max_seq_rep: Annotated[float, Range(0, 1)] = 0.5) -> Score:
    """No tail loop, and seq-rep-4 below `max_seq_rep`."""
    rep = c.repetition
    ok = rep.tail_loop is None and rep.seq_rep_4 < max_seq_rep
    return Score(
        ok, float(ok), {"seq_rep_4": rep.seq_rep_4, "tail_loop": rep.tail_loop is not None}
    )
