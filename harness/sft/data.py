"""SFT data: chat JSONL, prompt/completion JSONL, or a local datasets folder, validated row by row.

Every format is read into one shape, a list of conversations (`messages`, ending with the
assistant's turn), so that validation, the contamination check and training see the same thing.
A malformed row is an error naming the file, row and field; nothing trains on broken data.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, Problem
from ..paths import shipped_file

ROLES = ("system", "user", "assistant")
MAX_PROBLEMS = 20

Conversation = list[dict[str, str]]


@dataclass(frozen=True)
class SFTData:
    source: str  # file or folder, as given
    format: str  # "messages" or "prompt-completion"
    conversations: tuple[tuple[tuple[str, str], ...], ...]  # ((role, content), ...) per row
    rows: tuple[str, ...]  # where each row came from, "file:line", for messages that name it

    def messages(self, i: int) -> Conversation:
        return [{"role": r, "content": c} for r, c in self.conversations[i]]

    def __len__(self) -> int:
        return len(self.conversations)

    @property
    def hash(self) -> str:
        payload = json.dumps(self.conversations, ensure_ascii=False)
        return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()

    def sample(self, n: int, seed: int) -> SFTData:
        """A seeded sample of `n` rows, in their original order."""
        import random

        keep = sorted(random.Random(seed).sample(range(len(self)), n))
        return SFTData(
            self.source,
            self.format,
            tuple(self.conversations[i] for i in keep),
            tuple(self.rows[i] for i in keep),
        )

    def user_prompts(self) -> list[tuple[str, str]]:
        """(row, user message) pairs: what the contamination check compares with suites."""
        return [
            (row, content)
            for row, conv in zip(self.rows, self.conversations, strict=True)
            for role, content in conv
            if role == "user"
        ]


def _messages(
    value: Any, where: str, field: str, problems: list[Problem], line: int | None
) -> list[tuple[str, str]] | None:
    if not isinstance(value, list) or not value:
        problems.append(Problem(where, "expected a non-empty list of messages", line, field))
        return None
    out = []
    for i, m in enumerate(value):
        f = f"{field}[{i}]"
        if not isinstance(m, dict):
            problems.append(Problem(where, f"expected {{role, content}}, got {m!r}", line, f))
            return None
        extra = set(m) - {"role", "content"}
        if extra:
            problems.append(Problem(where, f"unknown key(s) {sorted(extra)}", line, f))
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            problems.append(
                Problem(
                    where, f"expected one of {', '.join(ROLES)}, got {role!r}", line, f"{f}.role"
                )
            )
            return None
        if not isinstance(content, str) or not content.strip():
            problems.append(
                Problem(
                    where, f"expected a non-empty string, got {content!r}", line, f"{f}.content"
                )
            )
            return None
        out.append((role, content))
    return out


def parse_row(
    row: Any, where: str, line: int | None, problems: list[Problem]
) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    """One row of any supported format -> (format, conversation), or None with problems added."""
    if not isinstance(row, dict):
        problems.append(Problem(where, f"expected a JSON object, got {type(row).__name__}", line))
        return None
    if "messages" in row:
        extra = set(row) - {"messages"}
        if extra:
            problems.append(
                Problem(where, f"unknown key(s) {sorted(extra)} beside 'messages'", line)
            )
            return None
        conv = _messages(row["messages"], where, "messages", problems, line)
        fmt = "messages"
    elif "prompt" in row or "completion" in row:
        extra = set(row) - {"prompt", "completion"}
        if extra:
            problems.append(Problem(where, f"unknown key(s) {sorted(extra)}", line))
            return None
        prompt, completion = row.get("prompt"), row.get("completion")
        fmt = "prompt-completion"
        if isinstance(prompt, list) or isinstance(completion, list):  # conversational form
            p = _messages(prompt, where, "prompt", problems, line)
            c = _messages(completion, where, "completion", problems, line)
            conv = p + c if p is not None and c is not None else None
        else:
            for field, value in (("prompt", prompt), ("completion", completion)):
                if not isinstance(value, str) or not value.strip():
                    problems.append(
                        Problem(where, f"expected a non-empty string, got {value!r}", line, field)
                    )
                    return None
            conv = [("user", prompt), ("assistant", completion)]
    else:
        problems.append(
            Problem(where, "a row needs 'messages', or 'prompt' and 'completion'", line)
        )
        return None
    if conv is None:
        return None
    field = "messages" if fmt == "messages" else "completion"
    if conv[-1][0] != "assistant":
        problems.append(Problem(where, "the last message must be the assistant's", line, field))
        return None
    if not any(role == "user" for role, _ in conv):
        problems.append(Problem(where, "no user message to answer", line, field))
        return None
    return fmt, tuple(conv)


def _collect(items: list[tuple[str, int | None, Any]], source: str) -> SFTData:
    problems: list[Problem] = []
    convs, rows, formats = [], [], set()
    for where, line, row in items:
        parsed = parse_row(row, where, line, problems)
        if parsed:
            formats.add(parsed[0])
            convs.append(parsed[1])
            rows.append(f"{where}:{line}" if line is not None else where)
        if len(problems) >= MAX_PROBLEMS:
            problems.append(Problem(source, f"stopped after {MAX_PROBLEMS} problems"))
            break
    if not problems and not convs:
        problems.append(Problem(source, "no training rows"))
    if len(formats) > 1:
        problems.append(Problem(source, "rows mix 'messages' and 'prompt'/'completion'; use one"))
    if problems:
        raise InputError(problems=problems)
    return SFTData(source, formats.pop(), tuple(convs), tuple(rows))


def _jsonl_rows(path: Path) -> list[tuple[str, int | None, Any]]:
    items: list[tuple[str, int | None, Any]] = []
    problems = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(problems=[Problem(str(path), f"not UTF-8 text: {exc}")]) from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append((str(path), number, json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append(Problem(str(path), f"not valid JSON: {exc.msg}", number))
    if problems:
        raise InputError(problems=problems[:MAX_PROBLEMS])
    return items


def _dataset_rows(folder: Path) -> list[tuple[str, int | None, Any]]:
    """A local datasets folder, read as the tutorial does: load_dataset(PATH)["train"]."""
    from datasets import DatasetDict, load_dataset, load_from_disk

    try:
        if (folder / "dataset_dict.json").exists() or (folder / "dataset_info.json").exists():
            ds = load_from_disk(str(folder))
        else:
            ds = load_dataset(str(folder))
    except Exception as exc:  # datasets raises many types for unreadable folders
        raise InputError(f"{folder}: not a readable datasets folder: {exc}") from None
    if isinstance(ds, DatasetDict):
        if "train" not in ds:
            raise InputError(f"{folder}: no 'train' split (splits: {', '.join(ds)})")
        ds = ds["train"]
    return [(f"{folder}[train] row {i}", None, row) for i, row in enumerate(ds)]


def load_data(path: Path) -> SFTData:
    """Read training data from a .jsonl file or a datasets folder (the shipped data by its
    relative name, e.g. data/sft/arithmetic.jsonl, from any directory)."""
    path = shipped_file(Path(path))
    if not path.exists():
        raise InputError(f"{path} does not exist", argument="data")
    if path.is_dir():
        return _collect(_dataset_rows(path), str(path))
    return _collect(_jsonl_rows(path), str(path))


def _weighted(part: str) -> tuple[Path, int]:
    """`PATH*K` repeats a file's rows K times: oversampling a small set in a mix."""
    path, _, times = part.rpartition("*") if "*" in part else (part, "", "1")
    if not times.isdigit() or int(times) < 1:
        raise InputError(
            f"'{part}': the repeat count after '*' must be a positive integer", argument="data"
        )
    return Path(path.strip()), int(times)


def load_many(spec: str) -> SFTData:
    """`--data`: one path or several, comma-separated, each maybe `PATH*K`; rows concatenate."""
    parts = [_weighted(p.strip()) for p in spec.split(",") if p.strip()]
    if not parts:
        raise InputError("give a .jsonl file or a datasets folder", argument="data")
    loaded, problems = [], []
    for path, times in parts:
        try:
            loaded.extend([load_data(path)] * times)
        except InputError as exc:
            problems.extend(exc.problems or [Problem(str(path), str(exc))])
    if problems:
        raise InputError(problems=problems)
    if len({d.format for d in loaded}) > 1:
        raise InputError(
            "the files mix chat and prompt/completion rows; use one format", argument="data"
        )
    if len(loaded) == 1:
        return loaded[0]
    return SFTData(
        ",".join(d.source for d in loaded),
        loaded[0].format,
        tuple(c for d in loaded for c in d.conversations),
        tuple(r for d in loaded for r in d.rows),
    )
