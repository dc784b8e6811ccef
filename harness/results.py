"""The run folder: append-only samples.jsonl, atomically written run.json and summary.json.

samples.jsonl is appended one batch per write and flushed to disk, so a killed run leaves at
worst one half-written last line, which `read_samples` drops (and `repair` cuts off) before a
resume redoes it. JSON files are written to a temporary name and renamed, so a folder never
claims to be complete when it is not.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import InputError
from .files import write_json_atomic, write_jsonl_atomic

RUN_JSON = "run.json"
SAMPLES = "samples.jsonl"
SUMMARY = "summary.json"

SampleKey = tuple[str, str, str]  # (model, suite, question id)


def key_of(record: dict[str, Any]) -> SampleKey:
    return (record["model"], record["suite"], record["id"])


def judged_by(run: dict[str, Any], suite: str) -> list[tuple[str, str, str]]:
    """What makes two runs' verdicts on a suite comparable, from run.json: each judge's name,
    fingerprint and rubric hash (empty for a suite no model graded)."""
    entries = run.get("judges", {}).get(suite, [])
    return sorted((e["model"], e["fingerprint"], e["rubric_hash"]) for e in entries)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: not found") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None


class _Parsed:
    """What `read_samples` parsed of one file: the records, and where it stopped."""

    def __init__(self, inode: int):
        self.inode, self.offset, self.lines, self.tail = inode, 0, 0, b""
        self.records: list[dict[str, Any]] = []

    def still_holds(self, fh: Any, size: int) -> bool:
        """The same file, grown or as it was: its inode, and the bytes that ended the last read
        where they were (an atomic rewrite makes a new file)."""
        if os.fstat(fh.fileno()).st_ino != self.inode or size < self.offset:
            return False
        fh.seek(self.offset - len(self.tail))
        return fh.read(len(self.tail)) == self.tail


_PARSED: dict[str, _Parsed] = {}


class RunFolder:
    """A run folder; `shard=r` points appends at rank r's own samples file (several processes)."""

    def __init__(self, path: Path, shard: int | None = None):
        self.path = Path(path)
        self.shard = shard

    @property
    def run_json(self) -> Path:
        return self.path / RUN_JSON

    @property
    def samples(self) -> Path:
        return self.path / (SAMPLES if self.shard is None else f"samples.rank{self.shard}.jsonl")

    def shards(self) -> list[RunFolder]:
        found = sorted(self.path.glob("samples.rank*.jsonl"))
        return [
            RunFolder(self.path, int(p.name[len("samples.rank") : -len(".jsonl")])) for p in found
        ]

    def read_all_samples(self, *, shared: bool = False) -> list[dict[str, Any]]:
        """samples.jsonl and every rank's shard, each record once (`shared`: see read_samples)."""
        seen: dict[SampleKey, dict[str, Any]] = {}
        for part in [RunFolder(self.path), *self.shards()]:
            for r in part.read_samples(shared=shared):
                seen.setdefault(key_of(r), r)
        return list(seen.values())

    def merge_shards(self, order: list[str], suites: list[str]) -> None:
        """Fold the ranks' shards into samples.jsonl (model, then suite order) and remove them."""
        shards = self.shards()
        if not shards:
            return
        rank = {m: i for i, m in enumerate(order)}
        srank = {s: i for i, s in enumerate(suites)}
        records = sorted(
            self.read_all_samples(),
            key=lambda r: (rank.get(r["model"], 99), srank.get(r["suite"], 99)),
        )
        self.rewrite_samples(records)
        for part in shards:
            part.samples.unlink()

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY

    def exists(self) -> bool:
        return self.run_json.exists() or (self.path / SAMPLES).exists()

    def read_run(self) -> dict[str, Any]:
        return read_json(self.run_json)

    def write_run(self, data: dict[str, Any]) -> None:
        write_json_atomic(self.run_json, data)

    def write_summary(self, data: dict[str, Any]) -> None:
        write_json_atomic(self.summary, data)

    def read_samples(self, *, shared: bool = False) -> list[dict[str, Any]]:
        """Every complete record; a torn last line (a killed write) is left out. `shared`: the
        records are shared with later shared reads in this process and must not be changed; the
        file only grows between rewrites, so such a read parses only the lines appended since
        the last (a run evaluated point after point reads in linear time)."""
        if not self.samples.exists():
            return []
        key = str(self.samples.resolve())
        seen = _PARSED.get(key) if shared else None
        with self.samples.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if seen is None or not seen.still_holds(fh, size):
                seen = _Parsed(os.fstat(fh.fileno()).st_ino)
            fh.seek(seen.offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1  # complete lines only
        for raw in data[:end].split(b"\n")[:-1]:
            seen.lines += 1
            if not raw.strip():
                continue
            try:
                seen.records.append(json.loads(raw))
            except json.JSONDecodeError as exc:
                _PARSED.pop(key, None)
                raise InputError(
                    f"{self.samples}:{seen.lines}: not valid JSON ({exc.msg})"
                ) from None
        if end:
            seen.offset += end
            seen.tail = data[max(0, end - 64) : end]
        if shared:
            _PARSED[key] = seen
        return list(seen.records)

    def repair(self) -> int:
        """Cut a torn last line off samples.jsonl; returns the bytes removed."""
        if not self.samples.exists():
            return 0
        data = self.samples.read_bytes()
        keep = data.rfind(b"\n") + 1
        if keep == len(data):
            return 0
        with self.samples.open("r+b") as fh:
            fh.truncate(keep)
        return len(data) - keep

    def append_samples(self, records: Iterable[dict[str, Any]]) -> None:
        """One write per batch, flushed and synced, so a kill tears at most the last line."""
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        if not text:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        with self.samples.open("a", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    def rewrite_samples(self, records: Iterable[dict[str, Any]]) -> None:
        """Replace samples.jsonl whole (re-scoring), atomically."""
        _PARSED.pop(str(self.samples.resolve()), None)
        write_jsonl_atomic(self.samples, records)
