"""Where harness finds its suites, model registry and embedded model, and where runs go."""

from __future__ import annotations

import os
from pathlib import Path

# The project checkout (harness is installed editable from it; suites/ and models/ live there).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUNS_DIR = Path("reports/runs")


def suites_dirs() -> list[Path]:
    """./suites first (a user's own project), then the project's shipped suites."""
    dirs = [Path("suites"), PROJECT_ROOT / "suites"]
    return [
        d
        for i, d in enumerate(dirs)
        if d.is_dir() and d.resolve() not in {x.resolve() for x in dirs[:i]}
    ]


def models_registry() -> Path:
    """`HARNESS_MODELS`, else ./models.yaml, else the project's models.yaml."""
    if env := os.environ.get("HARNESS_MODELS"):
        return Path(env)
    local = Path("models.yaml")
    return local if local.is_file() else PROJECT_ROOT / "models.yaml"


def display_path(path: Path) -> Path:
    """A path as short as it can be shown: relative to the working directory where possible."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path.resolve()
