"""The models.yaml registry: reading and validating entries, resolving the names a command line
gives, and adding what `harness sft` trains.

A model reference is a registry name (`base`, `sft`), a local folder, a GGUF file, a checkpoint
glob or a hub id.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import InputError, Problem, hint
from ..files import write_text_atomic
from ..paths import display_path, models_registries, user_registry
from ..yamlio import load_yaml
from .sources import SOURCES, location_choices
from .spec import DTYPES, EXTRA_FIELDS, SHARED_KEYS, ModelSpec


def entry_keys() -> set[str]:
    """The keys a models.yaml entry may hold: the shared ones, and each registered source's
    location key and extras."""
    return {*SHARED_KEYS, *SOURCES, *(key for s in SOURCES.values() for key in s.extras)}


def _entry(
    name: str, raw: Any, line: int | None, base: Path, file: str, problems: list[Problem]
) -> ModelSpec | None:
    if not isinstance(raw, dict):
        problems.append(Problem(file, "expected a mapping with 'path' or 'hub'", line, name))
        return None
    n = len(problems)
    known = entry_keys()
    for key in raw:
        if key not in known:
            message = f"unknown key; {hint(key, known)}"
            problems.append(Problem(file, message, raw.line_of(key), f"{name}.{key}"))
    given = [s for s in SOURCES.values() if s.key in raw]
    if len(given) != 1:
        problems.append(Problem(file, f"give exactly one of {location_choices()}", line, name))
    extras = list(dict.fromkeys(key for s in SOURCES.values() for key in s.extras))
    for key in extras:
        takers = [s for s in SOURCES.values() if key in s.extras]
        if key in raw and not any(s.key in raw for s in takers):
            message = f"'{key}' {takers[0].extras[key]}"
            problems.append(Problem(file, message, raw.line_of(key), f"{name}.{key}"))
    for key in (*SOURCES, *extras, "chat_template", "description"):
        if key in raw and not isinstance(raw[key], str):
            problems.append(
                Problem(
                    file, f"expected a string, got {raw[key]!r}", raw.line_of(key), f"{name}.{key}"
                )
            )
    dtype = raw.get("dtype", "auto")
    if dtype not in DTYPES:
        problems.append(
            Problem(
                file,
                f"expected one of {', '.join(DTYPES)}, got {dtype!r}",
                raw.line_of("dtype"),
                f"{name}.dtype",
            )
        )
    trust = raw.get("trust_remote_code", False)
    if not isinstance(trust, bool):
        problems.append(
            Problem(
                file,
                f"expected true or false, got {trust!r}",
                raw.line_of("trust_remote_code"),
                f"{name}.trust_remote_code",
            )
        )
    if len(problems) > n:
        return None
    template = raw.get("chat_template")
    if template and "{" not in template and (base / template).is_file():
        template = (base / template).read_text()  # a path to a .jinja file, relative to models.yaml
    (found,) = given
    extra = {key: raw[key] for key in found.extras if key in raw}
    return ModelSpec(
        name,
        found.key,
        found.place(raw[found.key], raw, base),
        dtype,
        template,
        trust,
        raw.get("description", ""),
        **{key: value for key, value in extra.items() if key in EXTRA_FIELDS},
        options={key: value for key, value in extra.items() if key not in EXTRA_FIELDS},
    )


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
    problems: list[Problem] = []
    for key in data:
        if key != "models":
            problems.append(
                Problem(file, "unknown key; the file holds 'models:'", data.line_of(key), str(key))
            )
    models = data["models"]
    specs = {}
    for name, raw in models.items():
        spec = _entry(str(name), raw, models.line_of(name), path.parent, file, problems)
        if spec:
            specs[str(name)] = spec
    if problems:
        raise InputError(problems=problems)
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
    write_text_atomic(path, text)
    load_registry(path)  # what was written must read back
    return path
