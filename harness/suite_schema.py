"""A suite file's shape, for `schema.check`: its top level, its defaults and its questions, and
the parsers of the two values no type hint describes, scorer specs and conversations."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from .errors import hint
from .schema import At, Expect, NonEmpty, Positive, Required, Via, matches_type, type_name
from .scoring import SCORERS, ScorerSpec
from .scoring.registry import REQUIRED, OptionError
from .yamlio import MarkedDict, MarkedList

DEFAULT_MAX_NEW_TOKENS = 64
ROLES = ("user", "assistant")
Turns = tuple[tuple[str, str], ...]  # (role, content)
# earlier turns, the final user question, a leading system message (or None)
Conversation = tuple[Turns, str, str | None]


def scorer_specs(raw: Any, at: At) -> tuple[ScorerSpec, ...] | None:
    """A scorer: a name, a mapping {type: name, option: ...}, or a list of them (all must pass)."""
    report, line, where = at.report, at.line, at.field
    items = list(raw) if isinstance(raw, list) else [raw]
    if not items:
        at.add("an empty scorer list; give at least one scorer")
        return None
    specs = []
    for i, item in enumerate(items):
        here = f"{where}[{i}]" if isinstance(raw, list) else where
        item_line = raw.line_of(i) if isinstance(raw, MarkedList) else line
        if isinstance(item, str):
            name, params, pline = item, {}, item_line
        elif isinstance(item, dict):
            if "type" not in item:
                report.add(item_line, here, "a scorer mapping needs 'type' (e.g. {type: numeric})")
                continue
            name, params = item["type"], {k: v for k, v in item.items() if k != "type"}
            pline = item.line_of("type") if isinstance(item, MarkedDict) else item_line
        else:
            report.add(item_line, here, f"expected a scorer name or mapping, got {item!r}")
            continue
        info = SCORERS.get(name) if isinstance(name, str) else None
        if info is None:
            report.add(
                pline, f"{here}.type", f"unknown scorer '{name}'; {hint(name, SCORERS, 'known')}"
            )
            continue
        ok = True
        for key, value in params.items():
            kline = item.line_of(key) if isinstance(item, MarkedDict) else pline
            if key not in info.params:
                known = ", ".join(info.params) or "none"
                report.add(
                    kline, f"{here}.{key}", f"unknown option for scorer '{name}' (options: {known})"
                )
                ok = False
            elif not matches_type(value, info.params[key][0]):
                want = type_name(info.params[key][0])
                report.add(kline, f"{here}.{key}", f"expected {want}, got {value!r}")
                ok = False
            elif key in info.ranges and (problem := info.ranges[key].problem(value)):
                report.add(kline, f"{here}.{key}", problem)
                ok = False
        for key, (_, default) in info.params.items():
            if default is REQUIRED and key not in params:
                report.add(pline, f"{here}.{key}", f"scorer '{name}' needs option '{key}'")
                ok = False
        if ok and info.prepare is not None:
            try:
                params = info.prepare(dict(params), Path(report.file).parent)
            except OptionError as exc:
                kline = item.line_of(exc.option) if isinstance(item, MarkedDict) else pline
                report.add(kline or pline, f"{here}.{exc.option}", str(exc))
                ok = False
        if ok:
            specs.append(ScorerSpec(name, dict(params)))
    graded = [s.type for s in specs if SCORERS[s.type].model_graded]
    if len(graded) > 1:
        at.add(f"at most one model-graded scorer per question, got {len(graded)}")
        return None
    return tuple(specs) if len(specs) == len(items) else None


def conversation(raw: Any, at: At) -> Conversation | None:
    """A conversation ending with the user's question, given instead of a prompt; its system
    message, if any, stands in for the question's `system`."""
    question = at.mapping
    if "prompt" in question:
        at.add("give prompt or messages, not both")
    if not isinstance(raw, list) or not raw:
        at.add("expected a non-empty list of {role, content} turns")
        return None
    turns: list[tuple[str, str]] = []
    system = None
    for i, turn in enumerate(raw):
        line = raw.line_of(i) if isinstance(raw, MarkedList) else at.line
        ok = isinstance(turn, dict) and isinstance(turn.get("content"), str) and turn["content"]
        role = turn.get("role") if isinstance(turn, dict) else None
        if not ok or (role not in ROLES and not (role == "system" and i == 0)):
            at.add(
                "expected {role: user|assistant, content: text} (system only first), "
                f"got {turn!r}",
                line,
                f"{at.field}[{i}]",
            )
            return None
        if role == "system":
            system = turn["content"]
        else:
            turns.append((role, turn["content"]))
    if not turns or turns[-1][0] != "user":
        at.add("the last turn must be the user's question")
        return None
    if system is not None and "system" in question:
        line = question.line_of("system") if isinstance(question, MarkedDict) else None
        at.add("also given in messages", line, f"{at.where}.system")
    return tuple(turns[:-1]), turns[-1][1], system


@dataclass(frozen=True, kw_only=True)
class SuiteFields:
    """The top level. `name` (the file's stem) and `system` (none) are optional: parse_suite
    supplies their defaults. `questions` and `source` are read by parse_suite itself."""

    name: Annotated[str, NonEmpty()]
    description: str = ""
    system: str
    defaults: dict[Any, Any] = field(default_factory=dict)
    questions: Any = None
    source: Any = None


@dataclass(frozen=True, kw_only=True)
class DefaultFields:
    """`defaults:`, what each question has unless it says otherwise (tags are added to)."""

    max_new_tokens: Annotated[int, Positive()] = DEFAULT_MAX_NEW_TOKENS
    scorer: Annotated[tuple[ScorerSpec, ...] | None, Via(scorer_specs)] = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class QuestionFields:
    """One question. Its scorer is required where the suite has no defaults.scorer; the
    defaults of max_new_tokens and system are the suite's (parse_suite passes them)."""

    id: Annotated[
        str | int,
        NonEmpty(),
        Expect("a non-empty string"),
        Required("missing; every question needs a unique id"),
    ]
    prompt: Annotated[
        str,
        NonEmpty(),
        Required("missing; the question the model is asked", unless=("messages",)),
    ]
    messages: Annotated[Conversation | None, Via(conversation)] = None
    system: str | None = None
    max_new_tokens: Annotated[int, Positive()] = DEFAULT_MAX_NEW_TOKENS
    tags: tuple[str, ...] = ()
    scorer: Annotated[
        tuple[ScorerSpec, ...],
        Via(scorer_specs),
        Required("missing, and the suite has no defaults.scorer"),
    ]
    answer: Annotated[str | int | float | list | None, Expect("a string, number or list")] = None
    notes: Any = None
