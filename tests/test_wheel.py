"""harness installed from its wheel works from any directory: the suites, the embedded models,
their registry and the SFT data travel inside the package, and a user's own add to them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from harness.models import load_registry
from harness.paths import suites_dirs
from harness.suites import available_suites, load_suites

from .conftest import PROJECT


def _sh(*cmd: object, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{cmd}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtual environment (offline: the dependencies come from this interpreter's
    site-packages) with the wheel built from this checkout installed in it; returns its bin/."""
    root = tmp_path_factory.mktemp("wheel")
    # built from a copy: an in-tree build would leave build/ and egg-info in the checkout
    source = root / "source"
    skip = shutil.ignore_patterns(".git", "build", "*.egg-info", "reports", ".*", "__pycache__")
    shutil.copytree(PROJECT, source, ignore=skip)
    (source / "reports").mkdir()
    pip = (sys.executable, "-m", "pip")
    _sh(*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", source, "-w", "dist", cwd=root)
    (wheel,) = (root / "dist").glob("harness-*.whl")
    venv.create(root / "env", system_site_packages=True, with_pip=True)
    bin_dir = root / "env" / "bin"
    _sh(
        bin_dir / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel, cwd=root
    )
    return bin_dir


def test_the_wheel_runs_the_main_job_from_any_directory(installed, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HARNESS_MODELS", "HARNESS_SUITES")}
    where = _sh(installed / "python", "-c", "import harness; print(harness.__file__)", cwd=tmp_path)
    assert str(installed.parent) in where.stdout  # the installed copy, not this checkout
    args = ("run", "--suite", "math", "--models", "base,sft", "--quiet", "--out", "run")
    done = _sh(installed / "harness", *args, cwd=tmp_path, env=env)
    assert "sft      math" in done.stdout
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert {m: i["folder"].startswith(str(installed.parent)) for m, i in run["models"].items()} == {
        "base": True,
        "sft": True,
    }
    n = len(load_suites("math")[0].questions)  # the shipped suite, as the wheel carries it
    assert len((tmp_path / "run" / "samples.jsonl").read_text().splitlines()) == 2 * n


def test_a_users_suites_and_models_add_to_the_shipped_ones(installed, tmp_path):
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "mine.yaml").write_text(
        "name: mine\nquestions:\n  - {id: q1, prompt: 'What is 2 + 2?', answer: 4, "
        "scorer: numeric, max_new_tokens: 8}\n"
    )
    (tmp_path / "models.yaml").write_text(
        "models:\n  mybase:\n    gguf: nothing-here.gguf\n    description: my own\n"
    )
    listed = _sh(installed / "harness", "suites", cwd=tmp_path).stdout
    assert "mine" in listed and "math" in listed
    models = _sh(installed / "harness", "models", cwd=tmp_path).stdout
    assert "mybase" in models and "sft" in models
    args = ("run", "--suite", "mine", "--models", "sft", "--quiet", "--out", "r")
    _sh(installed / "harness", *args, cwd=tmp_path)
    assert (tmp_path / "r" / "report.md").is_file()


def test_registries_merge_and_the_users_entry_wins(tmp_path, monkeypatch):
    own = tmp_path / "own.yaml"
    own.write_text("models:\n  sft:\n    path: elsewhere\n  extra:\n    hub: a/b\n")
    monkeypatch.setenv("HARNESS_MODELS", str(own))
    reg = load_registry()
    assert reg["base"].location.endswith("models/base")  # shipped, still there
    assert reg["sft"].location.endswith("elsewhere") and reg["extra"].location == "a/b"


def test_harness_suites_adds_folders_before_the_shipped_ones(tmp_path, monkeypatch):
    (tmp_path / "math.yaml").write_text(
        "name: math\nquestions:\n  - {id: a, prompt: p, answer: 1}\n"
    )
    monkeypatch.setenv("HARNESS_SUITES", str(tmp_path))
    assert suites_dirs()[0] == tmp_path
    assert available_suites()["math"] == tmp_path / "math.yaml"  # the user's wins
    assert "general" in available_suites()
