"""The one atomic write: text or bytes, its folder made; a failed write leaves the old file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.files import write_atomic, write_json_atomic, write_jsonl_atomic


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
