"""LoRA adapters, evaluated on their base model.

Several adapters of one base share one loaded copy of it (peft's `load_adapter`, then the one
being evaluated chosen by name). While an adapter decodes, its update (B·A·scale, computed by
peft) is added in float32 into new tensors that replace the base's weights, peft's own branch is
switched off, and the original tensors are put back afterwards, bit for bit. The model then
computes what the adapter merged into the base and saved as a full model computes, and the
batch-invariant decoder, which reads weights rather than calling modules, decodes it unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import InputError
from .models import LoadedModel, ModelSpec, fingerprint, load, load_registry, resolve

ADAPTER_CONFIG = "adapter_config.json"
MERGE_NOTE = "merged into float32 copies of the base's weights while decoding (peft's branch off)"


def adapter_config(spec: ModelSpec) -> dict[str, Any]:
    path = Path(spec.location) / ADAPTER_CONFIG
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"adapter '{spec.name}': cannot read {path}: {exc}") from None
    if config.get("peft_type") != "LORA":
        raise InputError(
            f"adapter '{spec.name}': {path} holds a {config.get('peft_type')} adapter; harness "
            "evaluates LoRA adapters"
        )
    unsupported = [key for key in ("use_dora", "lora_bias", "modules_to_save") if config.get(key)]
    if unsupported:
        raise InputError(
            f"adapter '{spec.name}': {path} sets {', '.join(unsupported)}, which merging into "
            "the base's weights does not cover; merge it yourself (merge_and_unload) and "
            "evaluate the merged folder"
        )
    return config


def base_spec(spec: ModelSpec, registry: dict[str, ModelSpec] | None = None) -> ModelSpec:
    """The adapter's base: the registry's `base:`, else adapter_config.json's
    base_model_name_or_path (a registry name, a folder, relative to the adapter's, or a hub id)."""
    ref = spec.base or adapter_config(spec).get("base_model_name_or_path")
    if not ref:
        raise InputError(
            f"adapter '{spec.name}' ({spec.location}) names no base model; add `base: NAME` to "
            "its models.yaml entry"
        )
    registry = load_registry() if registry is None else registry
    beside = Path(spec.location) / ref
    if ref not in registry and not Path(ref).expanduser().exists() and beside.exists():
        ref = str(beside)
    try:
        return resolve(ref, registry)
    except InputError as exc:
        raise InputError(
            f"adapter '{spec.name}' ({spec.location}): its base '{ref}' cannot be found: {exc}"
        ) from None


def attach(base: LoadedModel, spec: ModelSpec) -> LoadedModel:
    """The adapter in `spec` loaded onto `base` (which keeps every adapter loaded before)."""
    from peft import PeftModel

    config = adapter_config(spec)
    folder = Path(spec.location)
    try:
        if base.peft is None:
            base.peft = PeftModel.from_pretrained(base.model, folder, adapter_name=spec.name)
            base.peft.eval()
        else:
            base.peft.load_adapter(folder, adapter_name=spec.name)
    except (RuntimeError, ValueError, KeyError) as exc:  # shapes or module names that differ
        raise InputError(
            f"adapter '{spec.name}' ({folder}) does not fit its base '{base.spec.name}' "
            f"({base.spec.location}): {str(exc).splitlines()[0][:300]}"
        ) from None
    own = fingerprint(folder)
    digest = hashlib.sha256(f"{base.fingerprint}:{own}".encode()).hexdigest()
    info = {
        **base.info,
        "adapter": {
            "folder": str(folder),
            "base": base.spec.name,
            "base_location": base.spec.location,
            "base_fingerprint": base.fingerprint,
            "adapter_fingerprint": own,
            "r": config.get("r"),
            "alpha": config.get("lora_alpha"),
            "target_modules": config.get("target_modules"),
            "decoded": MERGE_NOTE,
        },
    }
    return LoadedModel(
        spec,
        base.model,
        base.tokenizer,
        base.chat,
        folder,
        "sha256:" + digest,
        base.dtype,
        base.device,
        info,
        peft=base.peft,
        adapter=spec.name,
    )


@contextmanager
def merged(peft_model: Any, name: str | None) -> Iterator[None]:
    """The named adapter merged into the base's weights (None: the base alone), then undone."""
    import torch
    from peft.tuners.lora import LoraLayer

    swapped: list[tuple[Any, Any]] = []
    with peft_model.disable_adapter():
        try:
            with torch.no_grad():
                for module in peft_model.modules() if name else ():
                    if isinstance(module, LoraLayer) and name in module.lora_A:
                        weight = module.get_base_layer().weight
                        delta = module.get_delta_weight(name)
                        original = weight.data
                        weight.data = (original.float() + delta.float()).to(original.dtype)
                        swapped.append((weight, original))
            yield
        finally:
            for weight, original in swapped:
                weight.data = original


class SharedBases:
    """Loads a run's models in turn, keeping a base loaded while adapters later in the run need
    it: the base is read from disk once, whatever the number of its adapters."""

    def __init__(self, specs: list[ModelSpec], **load_kwargs: Any):
        self.load_kwargs = load_kwargs
        self.registry = load_registry() if any(s.source == "adapter" for s in specs) else {}
        self.bases = {s.name: base_spec(s, self.registry) for s in specs if s.source == "adapter"}
        keys = [_key(self.bases.get(s.name, s)) for s in specs]
        self.uses = {k: keys.count(k) for k in keys}
        self.loaded: dict[tuple[str, str], LoadedModel] = {}

    def load(self, spec: ModelSpec, log: Any = None) -> LoadedModel:
        base = self.bases.get(spec.name, spec)
        key = _key(base)
        if key not in self.loaded:
            if log:
                log(f"loading {base.name} ({base.source}: {base.location})")
            self.loaded[key] = load(base, **self.load_kwargs)
        shared = self.loaded[key]
        if spec.source == "adapter":
            if log:
                log(f"loading adapter {spec.name} onto {base.name}")
            return attach(shared, spec)
        if shared.spec != spec:  # the same weights under another name
            shared = LoadedModel(**{**vars(shared), "spec": spec})
        return shared

    def done(self, spec: ModelSpec) -> None:
        """Forget a base once the last model that needs it is evaluated."""
        key = _key(self.bases.get(spec.name, spec))
        self.uses[key] -= 1
        if self.uses[key] == 0:
            self.loaded.pop(key, None)


def _key(spec: ModelSpec) -> tuple[str, str]:
    return spec.source, str(Path(spec.location).expanduser().resolve())
