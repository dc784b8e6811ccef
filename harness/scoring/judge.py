"""The `judge` scorer: a model grades the answer against a rubric.

Its options are validated like any scorer's, but no verdict is reached per sample: a judge must
read every answer in a batched greedy pass of its own after generation (harness/judging.py), so
the per-sample function marks the sample as waiting, and `verdict` turns the judge's output into
a Score there.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from .registry import Candidate, OptionError, Range, Score, scorer

PLACEHOLDERS = ("{question}", "{answer}", "{output}")
_PLACEHOLDER = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS))
DEFAULT_GRADE_PATTERN = r"GRADE:\s*(C|I)"
DEFAULT_SCALE = {"C": 1.0, "I": 0.0}


def _prepare(options: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Read a rubric file into the options (so the suite hash covers its text) and check that
    the grade pattern compiles with a group and that the scale can pass an answer."""
    out = dict(options)
    rubric = out["rubric"]
    if "{output}" not in rubric:
        path = folder / rubric
        if "\n" in rubric or not path.is_file():
            raise OptionError(
                "rubric",
                f"neither inline text with an {{output}} placeholder nor a file "
                f"({path} does not exist)",
            )
        text = path.read_text(encoding="utf-8")
        if "{output}" not in text:
            raise OptionError("rubric", f"{path} has no {{output}} placeholder for the answer")
        out["rubric"], out["rubric_file"] = text, rubric
    pattern = out.get("grade_pattern", DEFAULT_GRADE_PATTERN)
    try:
        groups = re.compile(pattern).groups
    except re.error as exc:
        raise OptionError("grade_pattern", f"not a regular expression: {exc}") from None
    if groups < 1:
        raise OptionError("grade_pattern", "needs a group that captures the grade, e.g. (C|I)")
    scale = out.get("scale")
    if scale is not None:
        if not scale:
            raise OptionError("scale", "an empty scale; map each grade to a credit from 0 to 1")
        for grade, credit in scale.items():
            if not 0 <= credit <= 1:
                raise OptionError("scale", f"grade {grade!r}: credit {credit!r} is not 0 to 1")
        if not any(credit == 1 for credit in scale.values()):
            raise OptionError("scale", "no grade earns full credit (1), so no answer can pass")
    return out


@scorer("judge", prepare=_prepare, model_graded=True)
def judge(
    c: Candidate,
    *,
    model: str,
    rubric: str,
    grade_pattern: str = DEFAULT_GRADE_PATTERN,
    scale: dict[str, float] | None = None,
    max_new_tokens: Annotated[int, Range(1)] = 256,
    rubric_file: str | None = None,
) -> Score:
    """A model (`model`) grades the answer with `rubric`; `grade_pattern` reads its verdict."""
    return Score(False, 0.0, {"pending": True})


@dataclass(frozen=True)
class Judge:
    """One judge scorer's settings, as the judging pass uses them."""

    model: str
    rubric: str
    grade_pattern: str = DEFAULT_GRADE_PATTERN
    scale: dict[str, float] | None = None
    max_new_tokens: int = 256
    rubric_file: str | None = None

    @property
    def rubric_hash(self) -> str:
        return "sha256:" + hashlib.sha256(self.rubric.encode()).hexdigest()

    def prompt(self, question: str, answer: Any, output: str) -> str:
        """The rubric with the question, the reference answer (empty if none) and the model's
        answer filled in (plain replacement: braces elsewhere in the rubric stay as written)."""
        values = {
            "{question}": question,
            "{answer}": "" if answer is None else str(answer),
            "{output}": output,
        }
        return _PLACEHOLDER.sub(lambda m: values[m.group()], self.rubric)

    def verdict(self, output: str, finish_reason: str = "eos", error: str | None = None) -> Score:
        """The last match of grade_pattern in the judge's output, through the scale; anything
        unreadable is wrong with parsed: false (counted as judge_unparsed)."""
        scale = self.scale if self.scale is not None else DEFAULT_SCALE
        detail: dict[str, Any] = {"output": output, "verdict": None, "parsed": False}
        if finish_reason == "length":
            detail["finish_reason"] = "length"
        if error:
            return Score(False, 0.0, {**detail, "error": error})
        matches = list(re.finditer(self.grade_pattern, output))
        if not matches:
            return Score(False, 0.0, {**detail, "problem": "no match for grade_pattern"})
        grade = next((g for g in matches[-1].groups() if g is not None), "")
        if grade not in scale:
            problem = f"grade {grade!r} is not in the scale ({', '.join(scale)})"
            return Score(False, 0.0, {**detail, "verdict": grade, "problem": problem})
        credit = float(scale[grade])
        return Score(credit == 1, credit, {**detail, "verdict": grade, "parsed": True})


def judge_of(params: dict[str, Any]) -> Judge:
    return Judge(**params)
