"""The name a model goes by: what the registry or the command line says, before anything loads.

Every other module of the package passes a `ModelSpec` around, so it lives apart from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

DTYPES = ("auto", "float32", "bfloat16", "float16")
# models.yaml keys an entry of any source may hold
SHARED_KEYS = ("dtype", "chat_template", "trust_remote_code", "description")
# a source's extra keys that fill a field of their own (code reads them by name); any other
# extra key lands in `ModelSpec.options`
EXTRA_FIELDS = ("package", "base")
# names no source may take for a key: they are the spec's own
RESERVED_KEYS = (*SHARED_KEYS, "name", "source", "location", "options")


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
    # the source's other extra models.yaml keys, as the entry gives them
    options: Mapping[str, str] = field(default_factory=dict, hash=False)
