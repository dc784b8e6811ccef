"""Models: the models.yaml registry, the sources that locate weights, loading, and fingerprints.

spec.py holds `ModelSpec`, the name a model goes by; registry.py reads models.yaml and resolves
references; sources.py holds `@source`, and builtin.py the sources harness ships with (folder,
hub, GGUF, adapter): a new way of locating weights is one `@source` function. loading.py loads
a checkpoint, memory.py takes a model already in memory; fingerprints.py and attention.py read
what run.json and the decoders need from a model.
"""

from __future__ import annotations

from .attention import AttentionShape, attention_shape
from .builtin import adapter_folder, gguf_file, hub_snapshot, local_folder  # registers them
from .fingerprints import FINGERPRINT_JSON, FINGERPRINT_SUFFIXES, fingerprint, weights_fingerprint
from .loading import TOKENIZER_FILES, LoadedModel, load, load_located, pick_device, pick_dtype
from .memory import evaluation_mode, from_memory
from .registry import checkpoints, entry_keys, load_registry, register, resolve, resolve_many
from .sources import (
    SOURCES,
    Loader,
    Located,
    Placer,
    Source,
    SourceFn,
    as_given,
    beside_registry,
    location_keys,
    source,
    unregister_source,
)
from .spec import DTYPES, ModelSpec

__all__ = [
    "DTYPES",
    "FINGERPRINT_JSON",
    "FINGERPRINT_SUFFIXES",
    "SOURCES",
    "TOKENIZER_FILES",
    "AttentionShape",
    "LoadedModel",
    "Loader",
    "Located",
    "ModelSpec",
    "Placer",
    "Source",
    "SourceFn",
    "adapter_folder",
    "as_given",
    "attention_shape",
    "beside_registry",
    "checkpoints",
    "entry_keys",
    "evaluation_mode",
    "fingerprint",
    "from_memory",
    "gguf_file",
    "hub_snapshot",
    "load",
    "load_located",
    "load_registry",
    "local_folder",
    "location_keys",
    "pick_device",
    "pick_dtype",
    "register",
    "resolve",
    "resolve_many",
    "source",
    "unregister_source",
    "weights_fingerprint",
]
