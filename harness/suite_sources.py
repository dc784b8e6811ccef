"""Questions from a data file: a suite's `source:` maps a JSONL, CSV or parquet file, or a local
`datasets` folder, to questions through field templates, like lm-evaluation-harness's
doc_to_text / doc_to_target, so that a benchmark kept as data needs no hand-written YAML.

    source: {path: data/word_problems.jsonl, id: "wp-{idx}", prompt: "{question}",
             answer: "{answer}", answer_pattern: '#### (-?[\\d,.]+)'}

Templates are Python format strings over a row's fields (`{idx}` is the row's index); a row
without a field a template names is an error naming the file and row. `answer_pattern` takes
the answer from its first group, and a number-looking answer becomes a number.
"""

from __future__ import annotations

import csv
import json
import re
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import Problem

SOURCE_KEYS = {"path", "id", "prompt", "answer", "answer_pattern", "system", "tags", "split"}
TEMPLATES = ("id", "prompt", "answer", "system")
NUMBER = re.compile(r"-?\d[\d,]*(\.\d+)?|-?\.\d+")


def _rows(path: Path, split: str | None) -> Iterator[tuple[str, Any]]:
    """(where, row) pairs: where is "file:line" for text formats, "file row N" otherwise."""
    suffix = path.suffix.lower()
    if path.is_dir():
        yield from _dataset_rows(path, split)
    elif suffix == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if line.strip():
                    try:
                        yield f"{path}:{number}", json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
    elif suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as fh:
            for number, row in enumerate(csv.DictReader(fh), start=2):
                yield f"{path}:{number}", row
    elif suffix == ".parquet":
        import pandas as pd

        for i, row in enumerate(pd.read_parquet(path).to_dict("records")):
            yield f"{path} row {i}", row
    else:
        raise ValueError(f"{path}: expected a .jsonl, .csv or .parquet file or a datasets folder")


def _dataset_rows(folder: Path, split: str | None) -> Iterator[tuple[str, Any]]:
    import datasets

    try:
        data = datasets.load_from_disk(str(folder))
    except (FileNotFoundError, ValueError):
        data = datasets.load_dataset(str(folder))
    if isinstance(data, datasets.DatasetDict):
        names = list(data)
        chosen = split or next((s for s in ("test", "validation", "train") if s in data), names[0])
        if chosen not in data:
            raise ValueError(f"{folder}: no split '{chosen}' (it has {', '.join(names)})")
        data = data[chosen]
    for i, row in enumerate(data):
        yield f"{folder} row {i}", row


def _fields(template: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


def _number(text: str) -> Any:
    """'1,234' -> 1234, '2.5' -> 2.5; anything else stays text."""
    if NUMBER.fullmatch(text.strip()):
        value = float(text.strip().replace(",", ""))
        return int(value) if value.is_integer() else value
    return text


def read_source(
    spec: dict[str, Any], base: Path, file: str, problems: list[Problem]
) -> list[tuple[str, dict[str, Any]]]:
    """(row location, question mapping as a YAML suite would hold it) for each row of `spec`'s
    file; problems are appended, each naming the data file and row (or the suite file and the
    `source` field)."""
    for key in spec:
        if key not in SOURCE_KEYS:
            known = ", ".join(sorted(SOURCE_KEYS))
            problems.append(Problem(file, f"unknown key (known: {known})", None, f"source.{key}"))
    for key in ("path", "prompt"):
        if not isinstance(spec.get(key), str) or not spec.get(key):
            problems.append(Problem(file, "missing: a string is needed", None, f"source.{key}"))
    for key in ("id", "answer", "answer_pattern", "system", "split"):
        if key in spec and not isinstance(spec[key], str):
            problems.append(Problem(file, f"expected a string, got {spec[key]!r}", None, key))
    if problems:
        return []
    path = Path(spec["path"]).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.exists():
        problems.append(Problem(file, f"{path} does not exist", None, "source.path"))
        return []
    pattern = None
    if "answer_pattern" in spec:
        try:
            pattern = re.compile(spec["answer_pattern"])
        except re.error as exc:
            problems.append(
                Problem(file, f"not a valid regex: {exc}", None, "source.answer_pattern")
            )
            return []
    templates = {k: spec.get(k) for k in TEMPLATES if spec.get(k) is not None}
    templates.setdefault("id", "{idx}")
    out: list[tuple[str, dict[str, Any]]] = []
    try:
        for idx, (where, row) in enumerate(_rows(path, spec.get("split"))):
            if not isinstance(row, dict):
                problems.append(Problem(where, f"expected an object of fields, got {row!r}"))
                continue
            values = {**row, "idx": idx}
            question: dict[str, Any] = {}
            for key, template in templates.items():
                missing = [f for f in _fields(template) if f not in values]
                if missing:
                    problems.append(
                        Problem(
                            where,
                            f"no field '{missing[0]}' (fields: {', '.join(map(str, row))})",
                            None,
                            f"source.{key}",
                        )
                    )
                    break
                question[key] = template.format(**values)
            else:
                if "answer" in question:
                    question["answer"] = _answer(question["answer"], pattern, where, problems)
                if isinstance(spec.get("tags"), list):
                    question["tags"] = list(spec["tags"])
                out.append((where, question))
    except ValueError as exc:
        problems.append(Problem(file, str(exc), None, "source.path"))
    return out


def _answer(text: str, pattern: re.Pattern | None, where: str, problems: list[Problem]) -> Any:
    if pattern is not None:
        found = pattern.search(text)
        if found is None:
            problems.append(
                Problem(where, f"answer_pattern found nothing in {text[:80]!r}", None, "answer")
            )
            return None
        text = found.group(1) if found.groups() else found.group(0)
    return _number(text)
