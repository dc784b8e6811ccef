from __future__ import annotations

import shutil

import pytest
from transformers import ViTConfig

from harness.errors import InputError
from harness.models import ModelSpec, fingerprint, load, load_registry, resolve, resolve_many

from .conftest import PROJECT


def test_project_registry_has_the_embedded_base():
    reg = load_registry(PROJECT / "models.yaml")
    assert reg["base"].source == "path" and reg["base"].location.endswith("models/base")
    assert reg["qwen3-0.6b-base"].source == "hub"


def test_registry_errors_name_file_line_and_field(write):
    path = write(
        "models.yaml",
        "models:\n"
        "  a:\n    path: x\n    hub: y/z\n"
        "  b:\n    path: x\n    dtype: float8\n"
        "  c:\n    pth: x\n"
        "  d:\n    path: x\n    trust_remote_code: maybe\n",
    )
    with pytest.raises(InputError) as info:
        load_registry(path)
    text = str(info.value)
    assert f"{path}:2: a: give exactly one of 'path'" in text
    assert f"{path}:7: b.dtype: expected one of auto, float32, bfloat16, float16" in text
    assert f"{path}:9: c.pth: unknown key; did you mean 'path'?" in text
    assert f"{path}:12: d.trust_remote_code: expected true or false" in text


def test_registry_relative_paths_and_template_files(write, tmp_path):
    write("tpl.jinja", "{{ messages[0]['content'] }}")
    path = write(
        "models.yaml", "models:\n  m:\n    path: sub/model\n    chat_template: tpl.jinja\n"
    )
    spec = load_registry(path)["m"]
    assert spec.location.endswith("sub/model") and spec.chat_template.startswith("{{")


def test_resolve_names_folders_and_hub_ids(random_model_dir):
    reg = {"base": ModelSpec("base", "path", "models/base")}
    assert resolve("base", reg).location == "models/base"
    assert resolve(str(random_model_dir), reg).source == "path"
    assert resolve("Qwen/Qwen3-0.6B-Base", reg).source == "hub"
    with pytest.raises(InputError, match="did you mean 'base'"):
        resolve("bsae", reg)
    assert [s.name for s in resolve_many("base, base,Qwen/X", reg)] == ["base", "Qwen/X"]
    with pytest.raises(InputError, match="at least one model"):
        resolve_many(" , ", reg)


def test_load_errors_are_specific(tmp_path, random_model_dir, monkeypatch):
    with pytest.raises(InputError, match="does not exist"):
        load(ModelSpec("m", "path", str(tmp_path / "missing")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a model folder"):
        load(ModelSpec("m", "path", str(tmp_path / "empty")))
    vit = tmp_path / "vit"
    ViTConfig().save_pretrained(vit)
    shutil.copy(random_model_dir / "tokenizer.json", vit)
    shutil.copy(random_model_dir / "tokenizer_config.json", vit)
    with pytest.raises(InputError, match="not a causal language model"):
        load(ModelSpec("m", "path", str(vit)))
    no_tok = tmp_path / "no-tokenizer"
    no_tok.mkdir()
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        shutil.copy(random_model_dir / name, no_tok)
    with pytest.raises(InputError, match="tokenizer"):
        load(ModelSpec("m", "path", str(no_tok)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    with pytest.raises(InputError, match="not in the local cache"):
        load(ModelSpec("q", "hub", "Qwen/Qwen3-0.6B-Base"))


def test_fingerprint_follows_weights_and_tokenizer(random_model_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(random_model_dir, copy)
    assert fingerprint(copy) == fingerprint(random_model_dir)
    (copy / "notes.md").write_text("not part of the model")
    assert fingerprint(copy) == fingerprint(random_model_dir)
    (copy / "chat_template.jinja").write_text("{{ 'changed' }}")
    assert fingerprint(copy) != fingerprint(random_model_dir)


def test_gguf_entries(write, tmp_path):
    path = write(
        "models.yaml",
        "models:\n"
        "  file:\n    gguf: weights/m.gguf\n"
        "  packaged:\n    gguf: m.gguf\n    package: some-dist\n"
        "  bad:\n    path: x\n    package: some-dist\n",
    )
    with pytest.raises(InputError) as info:
        load_registry(path)
    assert f"{path}:9: bad.package: 'package' names where a 'gguf' file is" in str(info.value)
    path.write_text("\n".join(path.read_text().splitlines()[:6]) + "\n")
    reg = load_registry(path)
    assert reg["file"].source == "gguf" and reg["file"].location.endswith("weights/m.gguf")
    assert (reg["packaged"].location, reg["packaged"].package) == ("m.gguf", "some-dist")
    with pytest.raises(InputError, match="does not exist"):
        load(reg["file"])
    gguf = tmp_path / "x.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve(str(gguf), {}).source == "gguf"
