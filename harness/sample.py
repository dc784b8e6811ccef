"""One scored sample, typed: what samples.jsonl holds a line of, and what every later stage reads.

The run folder stores plain JSON lines; summarize, compare, baseline, gate and the report read
them through `Sample`, so that a derived fact (did it stop? did it repeat?) is defined once here.
Records from older runs, or hand-written ones in tests, may lack later fields: they default.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Sample:
    model: str
    suite: str
    id: str
    question: str = ""
    system: str | None = None
    history: tuple[tuple[str, str], ...] = ()  # earlier turns of a multi-turn question
    prompt: str = ""  # as rendered through the chat template
    answer: Any = None
    tags: tuple[str, ...] = ()
    output: str = ""
    finish_reason: str = "eos"  # eos | stop | length | error
    new_tokens: int = 0
    prompt_tokens: int = 0
    correct: bool = False
    score: float = 0.0
    scorer: tuple[dict[str, Any], ...] = ()
    detail: Any = None  # what the scorer extracted
    repetition: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    min_margin: float | None = None  # smallest best-minus-runner-up logit gap on the path

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.model, self.suite, self.id)

    @property
    def generated(self) -> bool:
        """An output was produced (an error sample, e.g. a prompt over the context, has none)."""
        return self.error is None

    @property
    def no_stop(self) -> bool:
        """Ran into its token limit without ending its turn."""
        return self.finish_reason == "length"

    @property
    def repeated(self) -> bool:
        """A tail loop, or seq-rep-4 of 0.5 or more (scoring/repetition.py)."""
        return bool(self.repetition.get("repeated", False))

    @property
    def judgement(self) -> dict[str, Any] | None:
        """What a judge said about this answer (`detail["judge"]`: its output, the verdict it
        gave, whether the verdict could be read), or None where no judge read it."""
        found = self.detail.get("judge") if isinstance(self.detail, dict) else None
        return found if isinstance(found, dict) and "parsed" in found else None

    @property
    def judge_unparsed(self) -> bool:
        """A judge read the answer but its verdict could not be read (scored wrong)."""
        j = self.judgement
        return j is not None and not j["parsed"] and "skipped" not in j

    def outcome(self) -> dict[str, bool]:
        """What a baseline keeps per question, and what the gate compares."""
        return {"correct": self.correct, "repeated": self.repeated, "no_stop": self.no_stop}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Sample:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in record.items() if k in known}
        values["tags"] = tuple(values.get("tags") or ())
        values["scorer"] = tuple(values.get("scorer") or ())
        values["history"] = tuple(tuple(turn) for turn in values.get("history") or ())
        values["correct"] = bool(values.get("correct", False))
        for name in ("system", "answer", "detail", "error", "min_margin"):  # a DataFrame's NaN
            if isinstance(values.get(name), float) and values[name] != values[name]:
                values[name] = None
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The samples.jsonl line (lists where JSON has lists)."""
        out = asdict(self)
        out["tags"], out["scorer"] = list(self.tags), list(self.scorer)
        out["history"] = [list(turn) for turn in self.history]
        return out


def as_samples(records: Iterable[Sample | dict[str, Any]]) -> list[Sample]:
    return [r if isinstance(r, Sample) else Sample.from_dict(r) for r in records]
