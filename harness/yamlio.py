"""Safe YAML loading that remembers line numbers, so every validation error can point at a line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import InputError, Problem


class MarkedDict(dict):
    """A mapping that knows its own line, each key's line, and keys YAML silently overwrote."""

    line: int | None = None

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.key_lines: dict[Any, int] = {}
        self.duplicate_keys: list[tuple[Any, int]] = []

    def line_of(self, key: Any) -> int | None:
        return self.key_lines.get(key, self.line)


class MarkedList(list):
    """A sequence that knows its own line and each item's line."""

    line: int | None = None

    def __init__(self, *args: Any):
        super().__init__(*args)
        self.item_lines: list[int] = []

    def line_of(self, index: int) -> int | None:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


def marked(data: Any) -> Any:
    """Plain dicts and lists (a suite written in Python) as the marked kinds the validators
    read; with no lines to point at, errors name the field alone."""
    if isinstance(data, dict) and not isinstance(data, MarkedDict):
        return MarkedDict({k: marked(v) for k, v in data.items()})
    if isinstance(data, list | tuple) and not isinstance(data, MarkedList):
        return MarkedList(marked(v) for v in data)
    return data


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> MarkedDict:
    loader.flatten_mapping(node)
    out = MarkedDict()
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            )
        if key in out:
            out.duplicate_keys.append((key, line))
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = line
    return out


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> MarkedList:
    out = MarkedList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def parse_yaml(text: str, file: str) -> Any:
    """Parse YAML safely (no arbitrary objects); a syntax error names the file and line."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader derives from SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        reason = exc.problem or str(exc)
        if exc.context:
            reason = f"{reason} ({exc.context})"
        raise InputError(problems=[Problem(file, f"invalid YAML: {reason}", line)]) from None
    except yaml.YAMLError as exc:
        raise InputError(problems=[Problem(file, f"invalid YAML: {exc}")]) from None


def load_yaml(path: Path) -> Any:
    """Read and parse a YAML file; a missing or unreadable file is an input error, not a crash."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(problems=[Problem(str(path), "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(problems=[Problem(str(path), f"cannot read file: {exc}")]) from None
    return parse_yaml(text, str(path))
