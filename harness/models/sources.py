"""Model sources: each way of locating a checkpoint is one function registered with `@source`.

The registration says everything the rest of the package needs: the models.yaml key that gives
the location (which is also `ModelSpec.source`), the extra keys an entry may add, how a
models.yaml value becomes a location, and, where transformers alone cannot load what the source
found, how to load it. The registry builds the schema of an entry from it and `load` dispatches
on it, so a new source is one function. builtin.py holds the sources harness ships with.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..paths import display_path
from .fingerprints import fingerprint
from .spec import RESERVED_KEYS, ModelSpec

if TYPE_CHECKING:
    from .loading import LoadedModel


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


SourceFn = Callable[[ModelSpec], Located]
# (the value under the source's key, the whole entry, the folder of models.yaml) -> location
Placer = Callable[[str, Mapping[str, Any], Path], str]


class Loader(Protocol):
    """Loads a spec itself, for a source whose checkpoint transformers cannot load alone."""

    def __call__(
        self, spec: ModelSpec, *, device: str, dtype: str, trust_remote_code: bool
    ) -> LoadedModel: ...


def beside_registry(value: str, entry: Mapping[str, Any], folder: Path) -> str:
    """A path as models.yaml gives it: relative paths start at the file's own folder."""
    target = Path(value).expanduser()
    target = target if target.is_absolute() else folder / target
    return str(display_path(target))


def as_given(value: str, entry: Mapping[str, Any], folder: Path) -> str:
    """A location that is not a path (a hub id): kept as written."""
    return value


@dataclass(frozen=True)
class Source:
    """A source as `@source` registered it; calling it locates a spec's checkpoint (what
    checking a model exists before a run needs, without loading it)."""

    key: str  # the models.yaml key holding the location; also ModelSpec.source
    noun: str  # what the location is ("a folder"), as the registry's messages name it
    locate: SourceFn
    extras: Mapping[str, str] = field(default_factory=dict)  # key -> what it names
    place: Placer = beside_registry
    load: Loader | None = None  # None: transformers loads what `locate` found

    def __call__(self, spec: ModelSpec) -> Located:
        return self.locate(spec)


SOURCES: dict[str, Source] = {}


def source(
    key: str,
    noun: str,
    *,
    extras: Mapping[str, str] | None = None,
    place: Placer = beside_registry,
    load: Loader | None = None,
) -> Callable[[SourceFn], SourceFn]:
    """Register `fn(spec) -> Located` as the source that a models.yaml entry's `key:` selects.

    `noun` says what the location is ("a folder"); `extras` maps each further key an entry of
    this source may hold to what it names, completing the sentence "'KEY' ..." that an entry
    giving it without this source gets (the value lands in `ModelSpec.options`, or in the field
    of its name for those of `EXTRA_FIELDS`); `place` turns the value under `key` into the
    location (default: a path relative to models.yaml); `load` replaces the transformers
    loading of what `fn` located. Keys are identifiers (they become schema fields). Sources are
    listed in registration order."""

    def register(fn: SourceFn) -> SourceFn:
        if key in SOURCES:
            raise ValueError(f"a model source named '{key}' is registered already")
        extra = set(extras or {})
        taken = {*RESERVED_KEYS, *SOURCES}  # sources may share an extra key, not these
        shared = {k for s in SOURCES.values() for k in s.extras}
        clash = sorted(({key} & (taken | shared)) | (extra & (taken | {key})))
        if clash:
            raise ValueError(f"model source '{key}': {', '.join(clash)} names another key")
        # each key is a field of the entry schema the registry checks entries against
        odd = sorted(k for k in {key, *extra} if not k.isidentifier() or keyword.iskeyword(k))
        if odd:
            raise ValueError(f"model source '{key}': {', '.join(odd)} is not an identifier")
        SOURCES[key] = Source(key, noun, fn, dict(extras or {}), place, load)
        return fn

    return register


def unregister_source(key: str) -> None:
    """Take a source out of the registry again (a test's own, once it is done)."""
    del SOURCES[key]


def location_keys() -> tuple[str, ...]:
    """The models.yaml keys that give an entry's location, one per source."""
    return tuple(SOURCES)


def location_choices() -> str:
    """The registered sources as one phrase: "'path' (a folder), ... or 'adapter' (...)"."""
    named = [f"'{s.key}' ({s.noun})" for s in SOURCES.values()]
    return " or ".join([", ".join(named[:-1]), named[-1]]) if len(named) > 1 else named[0]
