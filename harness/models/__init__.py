"""Models: the models.yaml registry, the sources that locate weights, loading, and fingerprints.

spec.py holds `ModelSpec`, the name a model goes by; registry.py reads models.yaml and resolves
references; sources.py holds `@source` and builtin.py the sources it ships with (folder,
adapter, hub, GGUF); loading.py loads a checkpoint, memory.py takes a model already in memory;
fingerprints.py and attention.py read what run.json and the decoders need from a model.
"""

from __future__ import annotations

from . import builtin  # noqa: F401  (registers the built-in sources)
from .attention import AttentionShape, attention_shape
from .builtin import adapter_folder, gguf_file, hub_snapshot, local_folder
from .fingerprints import FINGERPRINT_JSON, FINGERPRINT_SUFFIXES, fingerprint, weights_fingerprint
from .loading import TOKENIZER_FILES, LoadedModel, load, pick_device, pick_dtype
from .memory import evaluation_mode, from_memory
from .registry import (
    ENTRY_KEYS,
    LOCATION_KEYS,
    checkpoints,
    load_registry,
    register,
    resolve,
    resolve_many,
)
from .sources import SOURCES, Located, SourceFn, source
from .spec import DTYPES, ModelSpec

__all__ = [
    "DTYPES",
    "ENTRY_KEYS",
    "FINGERPRINT_JSON",
    "FINGERPRINT_SUFFIXES",
    "LOCATION_KEYS",
    "SOURCES",
    "TOKENIZER_FILES",
    "AttentionShape",
    "LoadedModel",
    "Located",
    "ModelSpec",
    "SourceFn",
    "adapter_folder",
    "attention_shape",
    "checkpoints",
    "evaluation_mode",
    "fingerprint",
    "from_memory",
    "gguf_file",
    "hub_snapshot",
    "load",
    "load_registry",
    "local_folder",
    "pick_device",
    "pick_dtype",
    "register",
    "resolve",
    "resolve_many",
    "source",
    "weights_fingerprint",
]
