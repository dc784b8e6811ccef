"""Model sources: each way of locating a checkpoint is one function registered with `@source`.

builtin.py holds the sources harness ships with; this module holds what they register into.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .fingerprints import fingerprint
from .spec import ModelSpec


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
SOURCES: dict[str, SourceFn] = {}


def source(name: str) -> Callable[[SourceFn], SourceFn]:
    """Register a function that turns a spec's location into a local checkpoint to load."""

    def register(fn: SourceFn) -> SourceFn:
        SOURCES[name] = fn
        return fn

    return register
