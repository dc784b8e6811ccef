from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from transformers import ViTConfig

from harness.errors import InputError
from harness.models import (
    SOURCES,
    Located,
    ModelSpec,
    as_given,
    fingerprint,
    load,
    load_registry,
    resolve,
    resolve_many,
    source,
    unregister_source,
)

from .conftest import PROJECT, run_args, run_cli


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


@pytest.fixture
def shelf(tmp_path, random_model_dir):
    """A source of the test's own, registered here and nowhere else: `shelf: NAME` is the model
    NAME on a shelf folder, and `edition:` picks one of its copies."""
    root = tmp_path / "shelf"
    shutil.copytree(random_model_dir, root / "tiny" / "v1")

    @source(
        "shelf",
        "a name on the shelf",
        extras={"edition": "picks a 'shelf' model's copy"},
        place=as_given,  # a name, not a path relative to models.yaml
    )
    def on_the_shelf(spec: ModelSpec) -> Located:
        folder = root / spec.location / spec.options.get("edition", "v1")
        if not folder.is_dir():
            raise InputError(f"model '{spec.name}': no {spec.location} on the shelf")
        return Located(folder)

    yield root
    unregister_source("shelf")


SHELF_ENTRY = "models:\n  mine:\n    shelf: tiny\n    edition: v1\n    dtype: float32\n"


def test_a_source_is_one_registered_function(shelf, random_model_dir, write, tmp_path, monkeypatch):
    path = write("models.yaml", SHELF_ENTRY + "  odd:\n    path: x\n    edition: v2\n")
    with pytest.raises(InputError) as info:
        load_registry(path)
    assert f"{path}:8: odd.edition: 'edition' picks a 'shelf' model's copy" in str(info.value)
    path.write_text(SHELF_ENTRY)
    spec = resolve("mine", load_registry(path))
    assert (spec.source, spec.location, spec.options) == ("shelf", "tiny", {"edition": "v1"})
    lm = load(spec, device="cpu")
    assert lm.folder == shelf / "tiny" / "v1" and lm.dtype == "float32"
    assert lm.fingerprint == fingerprint(random_model_dir)
    # the command line reaches it by its name in models.yaml, like any other model
    monkeypatch.setenv("HARNESS_MODELS", str(path))
    suite = write(
        "mini.yaml",
        "name: mini\nquestions:\n  - {id: q1, prompt: 'What is 2 + 2?', "
        "answer: 4, scorer: numeric, max_new_tokens: 4}\n",
    )
    assert run_cli(*run_args(suite, "mine", tmp_path / "run")) == 0
    model = json.loads((tmp_path / "run" / "run.json").read_text())["models"]["mine"]
    assert (model["source"], model["location"]) == ("shelf", "tiny")


def test_entries_name_every_registered_source(shelf, write):
    path = write("models.yaml", "models:\n  both:\n    path: x\n    shelf: tiny\n")
    with pytest.raises(InputError, match="'adapter' \\(a LoRA adapter's folder\\) or 'shelf'"):
        load_registry(path)


def test_an_unknown_location_key_is_refused_clearly(write):
    path = write("models.yaml", SHELF_ENTRY)
    with pytest.raises(InputError) as info:
        load_registry(path)
    text = str(info.value)
    assert f"{path}:3: mine.shelf: unknown key; " in text
    assert f"{path}:4: mine.edition: unknown key; " in text
    assert (
        f"{path}:2: mine: give exactly one of 'path' (a folder), 'hub' (an id), 'gguf' (a file) "
        "or 'adapter' (a LoRA adapter's folder)"
    ) in text


def test_a_source_cannot_take_a_key_in_use():
    def locate(spec: ModelSpec) -> Located:
        return Located(Path(spec.location))

    with pytest.raises(ValueError, match="registered already"):
        source("path", "a folder")(locate)
    with pytest.raises(ValueError, match="dtype, gguf names another key"):
        source("x", "a thing", extras={"gguf": "", "dtype": ""})(locate)
    with pytest.raises(ValueError, match="package names another key"):
        source("package", "a distribution")(locate)
    assert "x" not in SOURCES and "package" not in SOURCES


def test_a_source_key_is_an_identifier():
    def locate(spec: ModelSpec) -> Located:
        return Located(Path(spec.location))

    with pytest.raises(ValueError, match="'gguf-file': gguf-file is not an identifier"):
        source("gguf-file", "a file")(locate)
    with pytest.raises(ValueError, match="'y': from is not an identifier"):
        source("y", "a thing", extras={"from": "names a 'y''s origin"})(locate)
    assert "gguf-file" not in SOURCES and "y" not in SOURCES
