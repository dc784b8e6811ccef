"""The one atomic write: text or bytes, its folder made; a failed write leaves the old file.
Model folders: swapped whole, or their files moved in whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.files import (
    replace_folder,
    settle_folder,
    write_atomic,
    write_into,
    write_json_atomic,
    write_jsonl_atomic,
)


def test_text_and_bytes_replace_the_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "folder" / "out.md"
    write_atomic(path, "é\n")
    assert path.read_bytes() == "é\n".encode()
    write_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert [p.name for p in path.parent.iterdir()] == ["out.md"]  # no temporary left


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    write_jsonl_atomic(path, [{"a": 1}, {"b": "ü"}])
    with pytest.raises(TypeError):
        write_atomic(path, 3)  # type: ignore[arg-type]
    assert path.read_text(encoding="utf-8") == '{"a": 1}\n{"b": "ü"}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]


def test_json_is_indented_and_ends_in_a_newline(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    write_json_atomic(path, {"k": [1, 2]})
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n") and json.loads(text) == {"k": [1, 2]}


def test_a_new_file_gets_the_umask_mode_and_a_rewrite_keeps_the_mode(tmp_path: Path) -> None:
    import os

    old = os.umask(0o022)
    try:
        path = tmp_path / "run.json"
        write_json_atomic(path, {"a": 1})
        assert path.stat().st_mode & 0o777 == 0o644  # as open() would make it, not mkstemp's 0600
        path.chmod(0o640)
        write_json_atomic(path, {"a": 2})
        assert path.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def _fill(files: dict[str, str], fail: bool = False):
    def fill(folder: Path) -> None:
        for name, text in files.items():
            (folder / name).write_text(text)
        if fail:
            raise KeyboardInterrupt("killed while writing")

    return fill


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path: Path) -> None:
    best = tmp_path / "best"
    replace_folder(best, _fill({"weights": "step 2", "kept.json": "2"}))
    with pytest.raises(KeyboardInterrupt):  # killed halfway through the next best
        replace_folder(best, _fill({"weights": "step 4"}, fail=True))
    assert {p.name: p.read_text() for p in best.iterdir()} == {
        "weights": "step 2",
        "kept.json": "2",
    }
    replace_folder(best, _fill({"weights": "step 6", "kept.json": "6"}))
    assert {p.name: p.read_text() for p in best.iterdir()} == {
        "weights": "step 6",
        "kept.json": "6",
    }
    assert [p.name for p in tmp_path.iterdir()] == ["best"]  # no temporary, no old copy left


def test_a_kill_between_the_two_renames_is_settled(tmp_path: Path) -> None:
    best = tmp_path / "best"
    replace_folder(best, _fill({"kept.json": "2"}))
    best.rename(tmp_path / ".best.old")  # the old folder moved aside, the new one not yet in
    (tmp_path / ".best.x1.tmp").mkdir()  # and a half-written one
    settle_folder(best)
    assert (best / "kept.json").read_text() == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["best"]


def test_files_written_into_a_folder_arrive_whole_beside_what_it_holds(tmp_path: Path) -> None:
    out = tmp_path / "model"
    (out / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    write_into(out, _fill({"model.safetensors": "old", "tokenizer.json": "old"}))
    with pytest.raises(KeyboardInterrupt):
        write_into(out, _fill({"model.safetensors": "half"}, fail=True))
    assert (out / "model.safetensors").read_text() == "old"
    write_into(out, _fill({"model.safetensors": "new", "tokenizer.json": "new"}))
    names = sorted(p.name for p in out.iterdir())
    assert names == ["checkpoints", "model.safetensors", "tokenizer.json"]  # no temporary left
    assert (out / "model.safetensors").read_text() == "new"
    assert (out / "checkpoints" / "checkpoint-4").is_dir()
