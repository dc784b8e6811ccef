"""Question suites: YAML files, validated on load, one message per problem (file, line, field)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError, Problem, hint
from .paths import display_path, suites_dirs
from .scoring import SCORERS, ScorerSpec
from .scoring.registry import REQUIRED, OptionError, matches_type, type_name
from .suite_sources import read_source
from .yamlio import MarkedDict, MarkedList, load_yaml, marked

DEFAULT_MAX_NEW_TOKENS = 64
# suites graded by a model live in this subfolder of a suites folder: found by name, not in `all`
JUDGED_DIR = "judged"
SUITE_KEYS = {"name", "description", "system", "defaults", "questions", "source"}
DEFAULT_KEYS = {"max_new_tokens", "scorer", "tags"}
QUESTION_KEYS = {
    "id",
    "prompt",
    "messages",
    "answer",
    "scorer",
    "tags",
    "max_new_tokens",
    "system",
    "notes",
}
ROLES = ("user", "assistant")


@dataclass(frozen=True)
class Question:
    id: str
    prompt: str
    answer: Any
    scorers: tuple[ScorerSpec, ...]
    tags: tuple[str, ...]
    max_new_tokens: int
    system: str | None
    # earlier turns of a multi-turn question, (role, content), before the final user `prompt`
    history: tuple[tuple[str, str], ...] = ()

    def identity(self) -> dict[str, Any]:
        """What decides the question's outcome; tags and notes are left out of the suite hash."""
        out = {
            "id": self.id,
            "prompt": self.prompt,
            "answer": self.answer,
            "scorer": [s.to_dict() for s in self.scorers],
            "max_new_tokens": self.max_new_tokens,
            "system": self.system,
        }
        return {**out, "history": [list(t) for t in self.history]} if self.history else out

    def user_turns(self) -> list[str]:
        """Every user message the model sees (the contamination check compares them all)."""
        return [c for r, c in self.history if r == "user"] + [self.prompt]


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    path: str
    questions: tuple[Question, ...]

    @property
    def hash(self) -> str:
        payload = json.dumps([q.identity() for q in self.questions], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def tags(self) -> list[str]:
        return sorted({t for q in self.questions for t in q.tags})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Suite:
        """A suite written in Python, in the YAML schema, validated the same way (errors name
        the field: `questions[2].answer: ...`)."""
        name = data.get("name", "suite") if isinstance(data, dict) else "suite"
        return parse_suite(marked(data), f"<suite {name}>")

    @classmethod
    def from_yaml(cls, path: str | Path) -> Suite:
        """A suite file anywhere on disk (the CLI's --suite also takes names from suites/)."""
        return load_suite(Path(path))


class _Checker:
    """Collects problems for one file instead of stopping at the first."""

    def __init__(self, file: str):
        self.file = file
        self.problems: list[Problem] = []

    def add(self, line: int | None, field: str | None, message: str) -> None:
        self.problems.append(Problem(self.file, message, line, field))

    def keys(self, data: MarkedDict, allowed: set[str], where: str) -> None:
        for key, line in data.duplicate_keys:
            self.add(line, _join(where, key), "duplicate key (YAML would keep only the last)")
        for key in data:
            if key not in allowed:
                self.add(data.line_of(key), _join(where, key), f"unknown key; {hint(key, allowed)}")


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _scorer_specs(
    chk: _Checker, raw: Any, line: int | None, where: str
) -> tuple[ScorerSpec, ...] | None:
    """A scorer: a name, a mapping {type: name, option: ...}, or a list of them (all must pass)."""
    items = list(raw) if isinstance(raw, list) else [raw]
    if not items:
        chk.add(line, where, "an empty scorer list; give at least one scorer")
        return None
    specs = []
    for i, item in enumerate(items):
        here = f"{where}[{i}]" if isinstance(raw, list) else where
        item_line = raw.line_of(i) if isinstance(raw, MarkedList) else line
        if isinstance(item, str):
            name, params, pline = item, {}, item_line
        elif isinstance(item, dict):
            if "type" not in item:
                chk.add(item_line, here, "a scorer mapping needs 'type' (e.g. {type: numeric})")
                continue
            name, params = item["type"], {k: v for k, v in item.items() if k != "type"}
            pline = item.line_of("type") if isinstance(item, MarkedDict) else item_line
        else:
            chk.add(item_line, here, f"expected a scorer name or mapping, got {item!r}")
            continue
        info = SCORERS.get(name) if isinstance(name, str) else None
        if info is None:
            chk.add(
                pline, f"{here}.type", f"unknown scorer '{name}'; {hint(name, SCORERS, 'known')}"
            )
            continue
        ok = True
        for key, value in params.items():
            kline = item.line_of(key) if isinstance(item, MarkedDict) else pline
            if key not in info.params:
                known = ", ".join(info.params) or "none"
                chk.add(
                    kline, f"{here}.{key}", f"unknown option for scorer '{name}' (options: {known})"
                )
                ok = False
            elif not matches_type(value, info.params[key][0]):
                want = type_name(info.params[key][0])
                chk.add(kline, f"{here}.{key}", f"expected {want}, got {value!r}")
                ok = False
            elif key in info.ranges and (problem := info.ranges[key].problem(value)):
                chk.add(kline, f"{here}.{key}", problem)
                ok = False
        for key, (_, default) in info.params.items():
            if default is REQUIRED and key not in params:
                chk.add(pline, f"{here}.{key}", f"scorer '{name}' needs option '{key}'")
                ok = False
        if ok and info.prepare is not None:
            try:
                params = info.prepare(dict(params), Path(chk.file).parent)
            except OptionError as exc:
                kline = item.line_of(exc.option) if isinstance(item, MarkedDict) else pline
                chk.add(kline or pline, f"{here}.{exc.option}", str(exc))
                ok = False
        if ok:
            specs.append(ScorerSpec(name, dict(params)))
    graded = [s.type for s in specs if SCORERS[s.type].model_graded]
    if len(graded) > 1:
        chk.add(line, where, f"at most one model-graded scorer per question, got {len(graded)}")
        return None
    return tuple(specs) if len(specs) == len(items) else None


def _positive_int(chk: _Checker, value: Any, line: int | None, where: str) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    chk.add(line, where, f"expected a positive integer, got {value!r}")
    return None


def _tags(chk: _Checker, value: Any, line: int | None, where: str) -> tuple[str, ...]:
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return tuple(value)
    chk.add(line, where, f"expected a list of strings, got {value!r}")
    return ()


def _question(
    chk: _Checker, raw: Any, line: int | None, where: str, defaults: dict[str, Any]
) -> Question | None:
    if not isinstance(raw, MarkedDict):
        chk.add(line, where, f"expected a mapping with id and prompt, got {raw!r}")
        return None
    chk.keys(raw, QUESTION_KEYS, where)
    n_before = len(chk.problems)
    qid = raw.get("id")
    if qid is None:
        chk.add(raw.line, f"{where}.id", "missing; every question needs a unique id")
    elif not isinstance(qid, str | int) or isinstance(qid, bool) or str(qid).strip() == "":
        chk.add(raw.line_of("id"), f"{where}.id", f"expected a non-empty string, got {qid!r}")
    history: tuple[tuple[str, str], ...] = ()
    system = raw.get("system", defaults.get("system"))
    if "messages" in raw:
        if "prompt" in raw:
            chk.add(
                raw.line_of("messages"), f"{where}.messages", "give prompt or messages, not both"
            )
        history, prompt, own_system = _messages(chk, raw["messages"], raw, where)
        if own_system is not None:
            if "system" in raw:
                chk.add(raw.line_of("system"), f"{where}.system", "also given in messages")
            system = own_system
    else:
        prompt = raw.get("prompt")
        if prompt is None:
            chk.add(raw.line, f"{where}.prompt", "missing; the question the model is asked")
        elif not isinstance(prompt, str) or not prompt.strip():
            chk.add(
                raw.line_of("prompt"),
                f"{where}.prompt",
                f"expected a non-empty string, got {prompt!r}",
            )
    if system is not None and not isinstance(system, str):
        chk.add(raw.line_of("system"), f"{where}.system", f"expected a string, got {system!r}")
    max_new = defaults["max_new_tokens"]
    if "max_new_tokens" in raw:
        max_new = _positive_int(
            chk, raw["max_new_tokens"], raw.line_of("max_new_tokens"), f"{where}.max_new_tokens"
        )
    tags = defaults["tags"] + (
        _tags(chk, raw["tags"], raw.line_of("tags"), f"{where}.tags") if "tags" in raw else ()
    )
    if "scorer" in raw:
        specs = _scorer_specs(chk, raw["scorer"], raw.line_of("scorer"), f"{where}.scorer")
    elif defaults["scorer"] is not None:
        specs = defaults["scorer"]
    elif defaults["scorer_invalid"]:
        specs = None  # already reported at defaults.scorer
    else:
        chk.add(raw.line, f"{where}.scorer", "missing, and the suite has no defaults.scorer")
        specs = None
    answer = raw.get("answer")
    if isinstance(answer, bool) or not isinstance(answer, str | int | float | list | None):
        chk.add(
            raw.line_of("answer"),
            f"{where}.answer",
            f"expected a string, number or list, got {answer!r}",
        )
    for spec in specs or ():
        info = SCORERS[spec.type]
        if not info.needs_answer:
            continue
        if answer is None:
            chk.add(
                raw.line, f"{where}.answer", f"missing; scorer '{spec.type}' compares against it"
            )
        elif not matches_type(answer, info.answer_type):
            chk.add(
                raw.line_of("answer"),
                f"{where}.answer",
                f"scorer '{spec.type}' needs {type_name(info.answer_type)}, got {answer!r}",
            )
    if len(chk.problems) > n_before:
        return None
    return Question(str(qid), prompt, answer, specs, tags, max_new, system, history)


def _messages(
    chk: _Checker, raw: Any, question: MarkedDict, where: str
) -> tuple[tuple[tuple[str, str], ...], str | None, str | None]:
    """A conversation ending with the user's question: (earlier turns, that question, a leading
    system message or None)."""
    here, line = f"{where}.messages", question.line_of("messages")
    if not isinstance(raw, list) or not raw:
        chk.add(line, here, "expected a non-empty list of {role, content} turns")
        return (), None, None
    turns: list[tuple[str, str]] = []
    system = None
    for i, turn in enumerate(raw):
        at = raw.line_of(i) if isinstance(raw, MarkedList) else line
        ok = isinstance(turn, dict) and isinstance(turn.get("content"), str) and turn["content"]
        role = turn.get("role") if isinstance(turn, dict) else None
        if not ok or (role not in ROLES and not (role == "system" and i == 0)):
            chk.add(
                at,
                f"{here}[{i}]",
                "expected {role: user|assistant, content: text} (system only first), "
                f"got {turn!r}",
            )
            return (), None, None
        if role == "system":
            system = turn["content"]
        else:
            turns.append((role, turn["content"]))
    if not turns or turns[-1][0] != "user":
        chk.add(line, here, "the last turn must be the user's question")
        return (), None, None
    return tuple(turns[:-1]), turns[-1][1], system


def parse_suite(data: Any, file: str) -> Suite:
    """Validate parsed YAML into a Suite; raises InputError listing every problem."""
    chk = _Checker(file)
    if not isinstance(data, MarkedDict):
        chk.add(getattr(data, "line", 1), None, "a suite is a mapping with 'name' and 'questions'")
        raise InputError(problems=chk.problems)
    chk.keys(data, SUITE_KEYS, "")
    name = data.get("name", Path(file).stem)
    if not isinstance(name, str) or not name.strip():
        chk.add(data.line_of("name"), "name", f"expected a non-empty string, got {name!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        chk.add(
            data.line_of("description"), "description", f"expected a string, got {description!r}"
        )
    defaults: dict[str, Any] = {
        "max_new_tokens": DEFAULT_MAX_NEW_TOKENS,
        "scorer": None,
        "scorer_invalid": False,
        "tags": (),
    }
    if "system" in data:
        defaults["system"] = data["system"]
        if not isinstance(data["system"], str):
            chk.add(data.line_of("system"), "system", f"expected a string, got {data['system']!r}")
    raw_defaults = data.get("defaults", MarkedDict())
    if not isinstance(raw_defaults, MarkedDict):
        chk.add(data.line_of("defaults"), "defaults", f"expected a mapping, got {raw_defaults!r}")
    else:
        chk.keys(raw_defaults, DEFAULT_KEYS, "defaults")
        if "max_new_tokens" in raw_defaults:
            value = raw_defaults["max_new_tokens"]
            line = raw_defaults.line_of("max_new_tokens")
            checked = _positive_int(chk, value, line, "defaults.max_new_tokens")
            defaults["max_new_tokens"] = checked or DEFAULT_MAX_NEW_TOKENS
        if "scorer" in raw_defaults:
            line = raw_defaults.line_of("scorer")
            defaults["scorer"] = _scorer_specs(chk, raw_defaults["scorer"], line, "defaults.scorer")
            defaults["scorer_invalid"] = defaults["scorer"] is None
        if "tags" in raw_defaults:
            defaults["tags"] = _tags(
                chk, raw_defaults["tags"], raw_defaults.line_of("tags"), "defaults.tags"
            )
    raw_questions = data.get("questions")
    questions: list[Question] = []
    listed: list[tuple[Any, int | None, str]] = []
    if "source" in data:
        if not isinstance(data["source"], dict):
            chk.add(data.line_of("source"), "source", "expected a mapping (path, prompt, ...)")
        else:
            rows = read_source(data["source"], Path(file).parent, file, chk.problems)
            listed += [(marked(q), None, where) for where, q in rows]
    if raw_questions is None and "source" not in data:
        chk.add(data.line, "questions", "missing; a suite needs a list of questions (or a source)")
    elif raw_questions is not None and (
        not isinstance(raw_questions, MarkedList) or not raw_questions
    ):
        chk.add(data.line_of("questions"), "questions", "expected a non-empty list of questions")
    elif raw_questions is not None:
        listed = [
            (raw, raw_questions.line_of(i), f"questions[{i}]")
            for i, raw in enumerate(raw_questions)
        ] + listed
    if listed:
        seen: dict[str, str | None] = {}
        for raw, line, here in listed:
            q = _question(chk, raw, line, here, defaults)
            qid = raw.get("id") if isinstance(raw, dict) else None
            if isinstance(qid, str | int) and not isinstance(qid, bool):
                if str(qid) in seen:
                    chk.add(
                        raw.line_of("id"),
                        f"{here}.id",
                        f"duplicate id '{qid}' (first used {seen[str(qid)] or 'earlier'})",
                    )
                    continue
                seen[str(qid)] = raw.line_of("id") and f"on line {raw.line_of('id')}"
            if q is not None:
                questions.append(q)
    if chk.problems:
        raise InputError(problems=chk.problems)
    return Suite(name, description, file, tuple(questions))


def load_suite(path: Path) -> Suite:
    return parse_suite(load_yaml(path), str(path))


def available_suites(*, judged: bool = True) -> dict[str, Path]:
    """Suite names found in ./suites and the project's suites/ (the first wins), with those in
    their `judged/` subfolders unless `judged=False`."""
    found: dict[str, Path] = {}
    for folder in suites_dirs():
        paths = sorted(folder.glob("*.yaml"))
        if judged:
            paths += sorted((folder / JUDGED_DIR).glob("*.yaml"))
        for path in paths:
            found.setdefault(path.stem, path)
    return found


def resolve_suites(spec: str) -> list[Path]:
    """`--suite` values: names, paths, comma-separated lists of either, or `all`."""
    known = available_suites()
    paths: list[Path] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if part == "all":  # judged suites load a second model: they run when named
            paths.extend(available_suites(judged=False).values())
        elif part in known:
            paths.append(known[part])
        elif Path(part).is_file():
            paths.append(Path(part))
        else:
            raise InputError(
                f"no suite named '{part}' and no such file; {hint(part, known, 'known suites')}",
                argument="suites",
            )
    if not paths:
        raise InputError("give at least one suite name, path, or 'all'", argument="suites")
    return list(dict.fromkeys(display_path(p) for p in paths))


def load_suites(spec: str) -> list[Suite]:
    """Load every suite named by `spec`, reporting the problems of all files at once."""
    suites, problems = [], []
    for path in resolve_suites(spec):
        try:
            suites.append(load_suite(path))
        except InputError as exc:
            problems.extend(exc.problems or [Problem(str(path), str(exc))])
    if problems:
        raise InputError(problems=problems)
    names = [s.name for s in suites]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(
            f"two suites share the name {', '.join(dupes)}; names must be unique",
            argument="suites",
        )
    return suites
