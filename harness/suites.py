"""Question suites: YAML files, validated on load, one message per problem (file, line, field)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError, Problem, hint
from .paths import display_path, suites_dirs
from .schema import Checked, Report, check, matches_type, type_name
from .scoring import SCORERS, ScorerSpec
from .suite_schema import DefaultFields, QuestionFields, SuiteFields
from .suite_sources import read_source
from .yamlio import MarkedDict, MarkedList, load_yaml, marked

# suites graded by a model live in this subfolder of a suites folder: found by name, not in `all`
JUDGED_DIR = "judged"


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


def _check_answer(
    report: Report, raw: MarkedDict, where: str, specs: tuple[ScorerSpec, ...]
) -> None:
    """The answer each scorer compares against: there, and of the type it reads."""
    answer = raw.get("answer")
    for spec in specs:
        info = SCORERS[spec.type]
        if not info.needs_answer:
            continue
        if answer is None:
            report.add(
                raw.line, f"{where}.answer", f"missing; scorer '{spec.type}' compares against it"
            )
        elif not matches_type(answer, info.answer_type):
            report.add(
                raw.line_of("answer"),
                f"{where}.answer",
                f"scorer '{spec.type}' needs {type_name(info.answer_type)}, got {answer!r}",
            )


def _question(
    report: Report,
    raw: Any,
    line: int | None,
    where: str,
    defaults: dict[str, Any],
    suite_tags: tuple[str, ...],
) -> Question | None:
    if not isinstance(raw, MarkedDict):
        report.add(line, where, f"expected a mapping with id and prompt, got {raw!r}")
        return None
    n_before = len(report.problems)
    fields = check(raw, QuestionFields, report, where, defaults=defaults)
    q = fields.values
    # a wrong scorer stands for no scorer (not the suite's): there is no answer to check for it
    specs = None if "scorer" in fields.invalid else q["scorer"]
    _check_answer(report, raw, where, specs or ())
    if len(report.problems) > n_before:
        return None
    history, prompt, system = q["messages"] or ((), q["prompt"], None)
    return Question(
        str(q["id"]),
        prompt,
        q["answer"],
        specs,
        suite_tags + q["tags"],
        q["max_new_tokens"],
        q["system"] if system is None else system,
        history,
    )


def _question_defaults(
    report: Report, suite: Checked[SuiteFields]
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """What a question has unless it says otherwise, and the tags every question gets."""
    given = check(suite.values["defaults"], DefaultFields, report, "defaults")
    defaults = {
        "max_new_tokens": given.values["max_new_tokens"],
        "system": suite.values["system"],
    }
    if "scorer" in given.given:  # a wrong one is reported here once, not again per question
        defaults["scorer"] = given.values["scorer"]
    return defaults, given.values["tags"]


def _listed(data: MarkedDict, file: str, report: Report) -> list[tuple[Any, int | None, str]]:
    """(question, line, field) for the suite's questions, then for its source's rows."""
    raw_questions = data.get("questions")
    listed: list[tuple[Any, int | None, str]] = []
    if "source" in data:
        if not isinstance(data["source"], dict):
            report.add(data.line_of("source"), "source", "expected a mapping (path, prompt, ...)")
        else:
            rows = read_source(data["source"], Path(file).parent, file, report.problems)
            listed += [(marked(q), None, where) for where, q in rows]
    if raw_questions is None and "source" not in data:
        report.add(
            data.line, "questions", "missing; a suite needs a list of questions (or a source)"
        )
    elif raw_questions is not None and (
        not isinstance(raw_questions, MarkedList) or not raw_questions
    ):
        report.add(data.line_of("questions"), "questions", "expected a non-empty list of questions")
    elif raw_questions is not None:
        listed = [
            (raw, raw_questions.line_of(i), f"questions[{i}]")
            for i, raw in enumerate(raw_questions)
        ] + listed
    return listed


def parse_suite(data: Any, file: str) -> Suite:
    """Validate parsed YAML into a Suite; raises InputError listing every problem."""
    report = Report(file)
    if not isinstance(data, MarkedDict):
        report.add(
            getattr(data, "line", 1), None, "a suite is a mapping with 'name' and 'questions'"
        )
        report.raise_if_any()
    suite = check(data, SuiteFields, report, defaults={"name": Path(file).stem, "system": None})
    defaults, suite_tags = _question_defaults(report, suite)
    questions: list[Question] = []
    seen: dict[str, str | None] = {}
    for raw, line, here in _listed(data, file, report):
        q = _question(report, raw, line, here, defaults, suite_tags)
        qid = raw.get("id") if isinstance(raw, dict) else None
        if isinstance(qid, str | int) and not isinstance(qid, bool):
            if str(qid) in seen:
                report.add(
                    raw.line_of("id"),
                    f"{here}.id",
                    f"duplicate id '{qid}' (first used {seen[str(qid)] or 'earlier'})",
                )
                continue
            seen[str(qid)] = raw.line_of("id") and f"on line {raw.line_of('id')}"
        if q is not None:
            questions.append(q)
    report.raise_if_any()
    return Suite(suite.values["name"], suite.values["description"], file, tuple(questions))


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
