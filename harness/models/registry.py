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
from .spec import DTYPES, ModelSpec

ENTRY_KEYS = {
    "path",
    "hub",
    "gguf",
    "package",
    "dtype",
    "chat_template",
    "trust_remote_code",
    "description",
    "adapter",
    "base",
}
LOCATION_KEYS = ("path", "hub", "gguf", "adapter")
# Files whose bytes decide what a model outputs; the fingerprint hashes exactly these.


def _entry(
    name: str, raw: Any, line: int | None, base: Path, file: str, problems: list[Problem]
) -> ModelSpec | None:
    if not isinstance(raw, dict):
        problems.append(Problem(file, "expected a mapping with 'path' or 'hub'", line, name))
        return None
    n = len(problems)
    for key in raw:
        if key not in ENTRY_KEYS:
            message = f"unknown key; {hint(key, ENTRY_KEYS)}"
            problems.append(Problem(file, message, raw.line_of(key), f"{name}.{key}"))
    if sum(key in raw for key in LOCATION_KEYS) != 1:
        problems.append(
            Problem(
                file,
                "give exactly one of 'path' (a folder), 'hub' (an id), 'gguf' (a file) or "
                "'adapter' (a LoRA adapter's folder)",
                line,
                name,
            )
        )
    if "package" in raw and "gguf" not in raw:
        problems.append(
            Problem(
                file,
                "'package' names where a 'gguf' file is",
                raw.line_of("package"),
                f"{name}.package",
            )
        )
    if "base" in raw and "adapter" not in raw:
        problems.append(
            Problem(
                file, "'base' names an 'adapter''s base model", raw.line_of("base"), f"{name}.base"
            )
        )
    for key in (
        "path",
        "hub",
        "gguf",
        "package",
        "chat_template",
        "description",
        "adapter",
        "base",
    ):
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
    package = raw.get("package")
    if "path" in raw or "adapter" in raw or ("gguf" in raw and not package):
        key = next(k for k in ("path", "adapter", "gguf") if k in raw)
        target = Path(raw[key]).expanduser()
        target = target if target.is_absolute() else base / target
        src, location = key, str(display_path(target))
    elif "gguf" in raw:
        src, location = "gguf", raw["gguf"]
    else:
        src, location = "hub", raw["hub"]
    return ModelSpec(
        name,
        src,
        location,
        dtype,
        template,
        trust,
        raw.get("description", ""),
        package,
        raw.get("base"),
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
