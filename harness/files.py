"""Writing a file so that no reader ever sees half of it: into a temporary file beside it,
flushed and synced, then renamed over it (an atomic step on one filesystem). Every result file
harness writes goes through `write_atomic`, so a killed process leaves the old file or the new
one; the JSON and JSONL functions only serialise. Model folders, written by libraries file by
file, go through `replace_folder` (a folder swapped whole) or `write_into` (each file whole)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Replace `path` with `data` (text is written as UTF-8), creating its folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _mode_for(path))  # mkstemp's 0600 would hide results from the team
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _mode_for(path: Path, new: int = 0o666) -> int:
    """The file's own mode when it exists, else what a plain open() (or mkdir, `new=0o777`)
    would give under the umask."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return new & ~umask


def _temporary_folder(parent: Path, prefix: str, mode_of: Path) -> Path:
    """An empty folder in `parent` (same filesystem, so a rename moves it), with `mode_of`'s
    mode or a plain mkdir's rather than mkdtemp's 0700."""
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=parent, prefix=prefix, suffix=".tmp"))
    folder.chmod(_mode_for(mode_of, new=0o777))
    return folder


def _aside(path: Path) -> Path:
    return path.parent / f".{path.name}.old"


def settle_folder(path: str | Path) -> None:
    """Finish what a killed `replace_folder` left: put the old folder back when the kill came
    between its two renames, and remove half-written temporary folders."""
    path = Path(path)
    aside = _aside(path)
    if aside.is_dir() and not path.exists():
        os.replace(aside, path)
    shutil.rmtree(aside, ignore_errors=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def replace_folder(path: str | Path, fill: Callable[[Path], None]) -> None:
    """Replace the folder `path` with the one `fill(folder)` writes into an empty folder beside
    it. A kill while `fill` writes leaves the old folder whole; readers that may follow such a
    kill call `settle_folder` first."""
    path = Path(path)
    settle_folder(path)
    new = _temporary_folder(path.parent, f".{path.name}.", path)
    try:
        fill(new)
        if path.exists():
            os.replace(path, _aside(path))
        os.replace(new, path)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    shutil.rmtree(_aside(path), ignore_errors=True)


def write_into(path: str | Path, fill: Callable[[Path], None]) -> None:
    """Write the files `fill(folder)` writes into the folder `path`, each moved in by one rename
    once all are written: a kill leaves each file old or new, never half of one, in a folder
    that holds other things too (a training's checkpoints and curve beside its model)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob(".writing.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    new = _temporary_folder(path, ".writing.", path)
    try:
        fill(new)
        for entry in sorted(new.iterdir()):
            target = path / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)
    finally:
        shutil.rmtree(new, ignore_errors=True)


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_jsonl_atomic(path: str | Path, rows: Iterable[Any]) -> None:
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
