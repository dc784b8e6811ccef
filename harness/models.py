"""Models: the `models.yaml` registry, model sources, loading, and fingerprints.

A model reference on the command line is a registry name (`base`, `sft`), a local folder, or a
hub id. Each way of locating weights is a *source*, registered with `@source`: adding one (say,
GGUF files) is one function here.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .chat import ChatFormat, prepare
from .errors import InputError, Problem
from .paths import display_path, models_registry
from .yamlio import load_yaml

DTYPES = ("auto", "float32", "bfloat16", "float16")
ENTRY_KEYS = {"path", "hub", "dtype", "chat_template", "trust_remote_code", "description"}
# Files whose bytes decide what a model outputs; the fingerprint hashes exactly these.
FINGERPRINT_SUFFIXES = {".safetensors", ".bin", ".gguf", ".model", ".tiktoken", ".jinja", ".txt"}
FINGERPRINT_JSON = {
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "model.safetensors.index.json",
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")


@dataclass(frozen=True)
class ModelSpec:
    """A model as the registry or the command line names it."""

    name: str
    source: str  # a key of SOURCES
    location: str  # folder or hub id, as the source understands it
    dtype: str = "auto"
    chat_template: str | None = None
    trust_remote_code: bool = False
    description: str = ""


@dataclass
class LoadedModel:
    spec: ModelSpec
    model: Any
    tokenizer: Any
    chat: ChatFormat
    folder: Path
    fingerprint: str
    dtype: str
    device: str
    info: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """What run.json records about this model."""
        return {
            "source": self.spec.source,
            "location": self.spec.location,
            "folder": str(self.folder),
            "fingerprint": self.fingerprint,
            "dtype": self.dtype,
            "device": self.device,
            "class": type(self.model).__name__,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "chat": self.chat.to_dict(),
            **self.info,
        }


# --------------------------------------------------------------------------- sources

SOURCES: dict[str, Callable[[ModelSpec], Path]] = {}


def source(name: str) -> Callable[[Callable[[ModelSpec], Path]], Callable[[ModelSpec], Path]]:
    """Register a function that turns a spec's location into a local folder to load from."""

    def register(fn: Callable[[ModelSpec], Path]) -> Callable[[ModelSpec], Path]:
        SOURCES[name] = fn
        return fn

    return register


@source("path")
def local_folder(spec: ModelSpec) -> Path:
    folder = Path(spec.location)
    if not folder.exists():
        raise InputError(f"model '{spec.name}': folder {folder} does not exist")
    if not folder.is_dir():
        raise InputError(f"model '{spec.name}': {folder} is a file; give the model's folder")
    if not (folder / "config.json").is_file():
        raise InputError(
            f"model '{spec.name}': {folder} is not a model folder (no config.json); "
            "give the folder that save_pretrained wrote"
        )
    return folder


@source("hub")
def hub_snapshot(spec: ModelSpec) -> Path:
    """A hub id, from the local cache; downloads only where a network and permission exist."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(spec.location, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    except Exception as exc:  # a malformed id, a corrupt cache
        raise InputError(
            f"model '{spec.name}': cannot use hub id '{spec.location}': {exc}"
        ) from None
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        raise InputError(
            f"model '{spec.name}': hub id '{spec.location}' is not in the local cache and "
            "HF_HUB_OFFLINE is set; copy the model to a folder and pass its path"
        )
    try:
        return Path(snapshot_download(spec.location))
    except Exception as exc:
        raise InputError(
            f"model '{spec.name}': hub id '{spec.location}' is not in the local cache and could "
            f"not be downloaded ({type(exc).__name__}); on a machine without network access, "
            "copy the model to a folder and pass its path or add it to models.yaml"
        ) from None


# --------------------------------------------------------------------------- registry


def _entry(
    name: str, raw: Any, line: int | None, base: Path, file: str, problems: list[Problem]
) -> ModelSpec | None:
    if not isinstance(raw, dict):
        problems.append(Problem(file, "expected a mapping with 'path' or 'hub'", line, name))
        return None
    n = len(problems)
    for key in raw:
        if key not in ENTRY_KEYS:
            hint = difflib.get_close_matches(str(key), sorted(ENTRY_KEYS), n=1)
            fix = (
                f"; did you mean '{hint[0]}'?"
                if hint
                else f"; allowed: {', '.join(sorted(ENTRY_KEYS))}"
            )
            problems.append(Problem(file, f"unknown key{fix}", raw.line_of(key), f"{name}.{key}"))
    if ("path" in raw) == ("hub" in raw):
        problems.append(
            Problem(file, "give exactly one of 'path' (a folder) or 'hub' (an id)", line, name)
        )
    for key in ("path", "hub", "chat_template", "description"):
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
    if "path" in raw:
        folder = Path(raw["path"]).expanduser()
        folder = folder if folder.is_absolute() else base / folder
        src, location = "path", str(display_path(folder))
    else:
        src, location = "hub", raw["hub"]
    return ModelSpec(name, src, location, dtype, template, trust, raw.get("description", ""))


def load_registry(path: Path | None = None) -> dict[str, ModelSpec]:
    """Parse models.yaml: `models: {name: {path|hub, dtype, chat_template, ...}}`."""
    path = path or models_registry()
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
        return ModelSpec(ref, "path", str(Path(ref).expanduser()))
    if "/" in ref and not ref.startswith((".", "/", "~")) and ref.count("/") == 1:
        return ModelSpec(ref, "hub", ref)
    hint = difflib.get_close_matches(ref, sorted(registry), n=1)
    fix = f"did you mean '{hint[0]}'?" if hint else f"registered: {', '.join(registry) or 'none'}"
    raise InputError(f"--models: '{ref}' is not in models.yaml, not a folder, not a hub id; {fix}")


def resolve_many(refs: str, registry: dict[str, ModelSpec] | None = None) -> list[ModelSpec]:
    registry = load_registry() if registry is None else registry
    names = [r.strip() for r in refs.split(",") if r.strip()]
    if not names:
        raise InputError(
            "--models: give at least one model (a name from models.yaml, a folder or a hub id)"
        )
    specs = [resolve(r, registry) for r in dict.fromkeys(names)]
    return specs


# --------------------------------------------------------------------------- loading


def fingerprint(folder: Path) -> str:
    """sha256 over the names and bytes of the weight, config and tokenizer files."""
    digest = hashlib.sha256()
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and (p.suffix in FINGERPRINT_SUFFIXES or p.name in FINGERPRINT_JSON)
        and not any(part.startswith("checkpoint-") for part in p.relative_to(folder).parts)
    )
    for path in files:
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available on this machine")
    return device


def pick_dtype(requested: str, spec_dtype: str, device: str) -> str:
    """--dtype wins over the registry; auto is float32 on CPU and bfloat16 on a GPU."""
    choice = requested if requested != "auto" else spec_dtype
    if choice == "auto":
        return "bfloat16" if device.startswith("cuda") else "float32"
    return choice


def load(
    spec: ModelSpec, *, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False
) -> LoadedModel:
    """Load weights and tokenizer, put the chat template in place, work out stop tokens."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    folder = SOURCES[spec.source](spec)
    device = pick_device(device)
    dtype = pick_dtype(dtype, spec.dtype, device)
    trust = trust_remote_code or spec.trust_remote_code
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust)
    except ValueError as exc:
        raise InputError(
            f"model '{spec.name}': {folder}/config.json is not usable: {exc}"
        ) from None
    if not any((folder / name).exists() for name in TOKENIZER_FILES) and not any(
        folder.glob("*.tiktoken")
    ):
        # transformers 5 would quietly build an empty tokenizer from config.json alone
        raise InputError(
            f"model '{spec.name}': no tokenizer files in {folder} (looked for "
            f"{', '.join(TOKENIZER_FILES)}); save the tokenizer with the model"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust)
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(
            f"model '{spec.name}': no usable tokenizer in {folder} ({exc}); save the tokenizer "
            "with the model (tokenizer.save_pretrained)"
        ) from None
    if not hasattr(tokenizer, "apply_chat_template") or len(tokenizer) < 2:
        raise InputError(f"model '{spec.name}': the tokenizer in {folder} has no vocabulary")
    try:
        model = AutoModelForCausalLM.from_pretrained(
            folder, dtype=getattr(torch, dtype), trust_remote_code=trust
        )
    except ValueError as exc:
        raise InputError(
            f"model '{spec.name}': {folder} is not a causal language model "
            f"({type(config).__name__}): {str(exc).splitlines()[0]}"
        ) from None
    except OSError as exc:
        raise InputError(f"model '{spec.name}': no usable weights in {folder}: {exc}") from None
    model.to(device).eval()
    chat = prepare(tokenizer, model.generation_config, spec.chat_template)
    # generate() fills every unset option from the model's generation_config (sampling,
    # repetition_penalty, ...); harness decodes plain greedy, so that config is recorded and
    # replaced by an empty one.
    shipped = {
        k: v
        for k, v in model.generation_config.to_diff_dict().items()
        if k not in ("transformers_version", "_from_model_config")
    }
    model.generation_config = GenerationConfig()
    info = {"shipped_generation_config": shipped}
    return LoadedModel(
        spec, model, tokenizer, chat, folder, fingerprint(folder), dtype, device, info
    )


def register(name: str, folder: Path, description: str, registry: Path | None = None) -> Path:
    """Add `name: {path: folder}` to models.yaml (kept as text, so its comments survive)."""
    path = registry or models_registry()
    specs = load_registry(path) if path.exists() else {}
    if name in specs:
        existing = specs[name]
        if existing.source == "path" and Path(existing.location).resolve() == folder.resolve():
            return path
        raise InputError(
            f"{display_path(path)}: '{name}' already names {existing.location}; choose another "
            "--name, or edit the file"
        )
    rel = os.path.relpath(folder.resolve(), path.parent.resolve())
    text = path.read_text() if path.exists() else "models:\n"
    if not text.endswith("\n"):
        text += "\n"
    text += f"  {name}:\n    path: {rel}\n    description: {json.dumps(description)}\n"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    load_registry(path)  # what was written must read back
    return path
