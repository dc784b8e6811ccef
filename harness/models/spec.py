"""The name a model goes by: what the registry or the command line says, before anything loads,
and the keys every models.yaml entry may hold whatever its source.

Every other module of the package passes a `ModelSpec` around, so it lives apart from them.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Literal

from ..schema import Expect

Dtype = Literal["auto", "float32", "bfloat16", "float16"]
DTYPES: tuple[str, ...] = typing.get_args(Dtype)


@dataclass(frozen=True, kw_only=True)
class EntryFields:
    """The models.yaml keys an entry of any source may hold, for `schema.check`; the registry
    adds each source's location and extra keys before them. Fields follow the order problems
    are reported in. A missing chat_template is None (the registry supplies it: the tokenizer's
    own template), while a null one is refused."""

    chat_template: str  # inline Jinja, or a .jinja file beside models.yaml
    description: str = ""
    dtype: Annotated[Dtype, Expect(f"one of {', '.join(DTYPES)}")] = "auto"
    trust_remote_code: bool = False


# models.yaml keys an entry of any source may hold
SHARED_KEYS = tuple(f.name for f in dataclasses.fields(EntryFields))
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
