"""The name a model goes by: what the registry or the command line says, before anything loads.

Every other module of the package passes a `ModelSpec` around, so it lives apart from them.
"""

from __future__ import annotations

from dataclasses import dataclass

DTYPES = ("auto", "float32", "bfloat16", "float16")


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
