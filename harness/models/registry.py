"""The models.yaml registry: reading and validating entries, resolving the names a command line
gives, and adding what `harness sft` trains.

A model reference is a registry name (`base`, `sft`), a local folder, a GGUF file, a checkpoint
glob or a hub id.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import typing
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, Problem, hint
from ..files import write_atomic
from ..paths import display_path, models_registries, user_registry
from ..schema import Report, check
from ..yamlio import load_yaml
from .sources import SOURCES, Source, location_choices
from .spec import EXTRA_FIELDS, EntryFields, ModelSpec


@dataclass(frozen=True)
class RegistryFields:
    """A models.yaml file: `models:` alone, whose entries `_entry` checks one by one."""

    models: dict[Any, Any]


@functools.cache
def _schema_of(sources: tuple[tuple[str, tuple[str, ...]], ...]) -> type:
    """The schema of an entry for one set of registered sources (key, extra keys): each
    location and extra key a string (a missing one is None, a null one is refused), then the
    shared `EntryFields`. Cached, so each set of sources makes one class."""
    keys = dict.fromkeys([key for key, _ in sources] + [k for _, extras in sources for k in extras])
    hints = typing.get_type_hints(EntryFields, include_extras=True)
    shared = [
        (f.name, hints[f.name], dataclasses.field(default=f.default))
        for f in dataclasses.fields(EntryFields)
    ]
    own = [(key, str, dataclasses.field(default=None)) for key in keys]
    return dataclasses.make_dataclass("Entry", own + shared, frozen=True, kw_only=True)


def entry_schema() -> type:
    """An entry's schema, as the sources registered now make it."""
    return _schema_of(tuple((s.key, tuple(s.extras)) for s in SOURCES.values()))


def entry_keys() -> set[str]:
    """The keys a models.yaml entry may hold: the shared ones, and each registered source's
    location key and extras."""
    return {f.name for f in dataclasses.fields(entry_schema())}


def _takers() -> dict[str, list[Source]]:
    """Each extra key, and the sources that take it, in registration order."""
    takers: dict[str, list[Source]] = {}
    for s in SOURCES.values():
        for key in s.extras:
            takers.setdefault(key, []).append(s)
    return takers


def _sources_given(raw: Mapping[Any, Any], name: str, line: int | None, report: Report) -> None:
    """What no type says: an entry gives exactly one location key, and an extra key only beside
    a source that takes it."""
    if sum(key in raw for key in SOURCES) != 1:
        report.add(line, name, f"give exactly one of {location_choices()}")
    for key, takers in _takers().items():
        if key in raw and not any(s.key in raw for s in takers):
            report.add(raw.line_of(key), f"{name}.{key}", f"'{key}' {takers[0].extras[key]}")


def _entry(name: str, raw: Any, line: int | None, base: Path, report: Report) -> ModelSpec | None:
    """One entry (`line`: where its name is) as a spec, or None where it has a problem."""
    if not isinstance(raw, dict):
        report.add(line, name, "expected a mapping with 'path' or 'hub'")
        return None
    fields = check(
        raw,
        entry_schema(),
        report,
        name,
        defaults={"chat_template": None},
        duplicates=False,
        keys=lambda raw: _sources_given(raw, name, line, report),
    )
    if not fields.ok:
        return None
    values = fields.values
    found = next(s for s in SOURCES.values() if s.key in fields.given)
    template = values["chat_template"]
    if template and "{" not in template and (base / template).is_file():
        template = (base / template).read_text()  # a path to a .jinja file, relative to models.yaml
    extra = {key: values[key] for key in found.extras if key in fields.given}
    return ModelSpec(
        name,
        found.key,
        found.place(values[found.key], raw, base),
        values["dtype"],
        template,
        values["trust_remote_code"],
        values["description"],
        **{key: value for key, value in extra.items() if key in EXTRA_FIELDS},
        options={key: value for key, value in extra.items() if key not in EXTRA_FIELDS},
    )


def _holds_models(key: Any, known: Collection[str]) -> str:
    return "unknown key; the file holds 'models:'"


def load_registry(path: Path | None = None) -> dict[str, ModelSpec]:
    """Parse one models.yaml (`models: {name: {path|hub, dtype, chat_template, ...}}`), or with
    no path the shipped registry and the user's on top of it."""
    if path is None:
        merged: dict[str, ModelSpec] = {}
        for registry in models_registries():
            merged.update(load_registry(registry))
        return merged
    if not path.exists():
        return {}
    file = str(display_path(path))
    data = load_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        line = getattr(data, "line", None)
        raise InputError(problems=[Problem(file, "expected a top-level 'models:' mapping", line)])
    report = Report(file)
    # a repeated key is not refused here or in an entry: the last one wins, as YAML itself has it
    check(data, RegistryFields, report, unknown=_holds_models, duplicates=False)
    models = data["models"]
    specs = {}
    for name, raw in models.items():
        spec = _entry(str(name), raw, models.line_of(name), path.parent, report)
        if spec:
            specs[str(name)] = spec
    report.raise_if_any()
    return specs


def resolve(ref: str, registry: dict[str, ModelSpec]) -> ModelSpec:
    """A registry name, else an existing folder, else (with a slash) a hub id."""
    if ref in registry:
        return registry[ref]
    if Path(ref).expanduser().exists():
        path = Path(ref).expanduser()
        kind = "gguf" if ref.endswith(".gguf") else "path"
        if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
            kind = "adapter"
        return ModelSpec(ref, kind, str(path))
    if "/" in ref and not ref.startswith((".", "/", "~")) and ref.count("/") == 1:
        return ModelSpec(ref, "hub", ref)
    raise InputError(
        f"'{ref}' is not in models.yaml, not a folder, not a hub id; "
        f"{hint(ref, registry, 'registered')}",
        argument="models",
    )


def checkpoints(pattern: str) -> list[ModelSpec]:
    """`DIR/checkpoint-*` (any glob): the checkpoints of one training run, in step order, named
    RUN@step-S after the run's folder (the parent of a folder named `checkpoints`)."""
    import glob
    import re

    found = []
    for path in map(Path, glob.glob(str(Path(pattern).expanduser()))):
        match = re.search(r"(\d+)$", path.name)
        if path.is_dir() and match:
            parent = path.parent.parent if path.parent.name == "checkpoints" else path.parent
            found.append((int(match[1]), parent.resolve().name, path))
    if not found:
        raise InputError(f"'{pattern}' matches no checkpoint folder", argument="models")
    return [ModelSpec(f"{run}@step-{step}", "path", str(path)) for step, run, path in sorted(found)]


def resolve_many(refs: str, registry: dict[str, ModelSpec] | None = None) -> list[ModelSpec]:
    """Comma-separated registry names, folders, hub ids, GGUF files and checkpoint globs."""
    registry = load_registry() if registry is None else registry
    names = [r.strip() for r in refs.split(",") if r.strip()]
    if any(set("*?[") & set(n) for n in names):
        specs: list[ModelSpec] = []
        for n in names:
            specs.extend(checkpoints(n) if set("*?[") & set(n) else [resolve(n, registry)])
        return list({s.name: s for s in specs}.values())
    if not names:
        raise InputError(
            "give at least one model (a name from models.yaml, a folder or a hub id)",
            argument="models",
        )
    specs = [resolve(r, registry) for r in dict.fromkeys(names)]
    return specs


def register(
    name: str,
    folder: Path,
    description: str,
    registry: Path | None = None,
    base: str | None = None,
) -> Path:
    """Add `name: {path: folder}` to models.yaml (kept as text, so its comments survive); with
    `base`, `name: {adapter: folder, base: base}`."""
    path = registry or user_registry()
    specs = load_registry(path) if path.exists() else {}
    if name in specs:
        existing = specs[name]
        same = Path(existing.location).resolve() == folder.resolve()
        if existing.source in ("path", "adapter") and same:
            return path
        raise InputError(
            f"{display_path(path)}: '{name}' already names {existing.location}; choose another "
            "name, or edit the file",
            argument="name",
        )
    rel = os.path.relpath(folder.resolve(), path.parent.resolve())
    text = path.read_text() if path.exists() else "models:\n"
    if not text.endswith("\n"):
        text += "\n"
    where = f"adapter: {rel}\n    base: {json.dumps(base)}" if base else f"path: {rel}"
    text += f"  {name}:\n    {where}\n    description: {json.dumps(description)}\n"
    write_atomic(path, text)
    load_registry(path)  # what was written must read back
    return path
