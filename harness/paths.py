"""Where harness finds its suites, model registry, embedded models and data, and where runs go.

What the project ships (suites, the embedded `base` and `sft`, the registry naming them, the SFT
data) lives in the source checkout's own folders, and in an installed wheel in the package's
`shipped/` folder (setup.py copies them there). A user's `./suites/` and `./models.yaml`, or
`HARNESS_SUITES` and `HARNESS_MODELS`, add to the shipped ones and win on a name they share.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE.parent
SHIPPED = PACKAGE / "shipped" if (PACKAGE / "shipped").is_dir() else PROJECT_ROOT
DEFAULT_RUNS_DIR = Path("reports/runs")


def _unique(paths: list[Path]) -> list[Path]:
    seen: set[Path] = set()
    out = []
    for p in paths:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            out.append(p)
    return out


def suites_dirs() -> list[Path]:
    """HARNESS_SUITES (folders, os.pathsep-separated), ./suites, then the shipped suites; a suite
    name found in an earlier folder wins."""
    env = [Path(p) for p in os.environ.get("HARNESS_SUITES", "").split(os.pathsep) if p]
    return _unique([d for d in [*env, Path("suites"), SHIPPED / "suites"] if d.is_dir()])


def models_registries() -> list[Path]:
    """The shipped registry, then the user's (HARNESS_MODELS, else ./models.yaml), which wins."""
    return _unique([p for p in (SHIPPED / "models.yaml", user_registry()) if p.is_file()])


def user_registry() -> Path:
    """Where `harness sft` registers what it trains: HARNESS_MODELS, else ./models.yaml (in a
    source checkout, the project's own when run from its root)."""
    if env := os.environ.get("HARNESS_MODELS"):
        return Path(env)
    return Path("models.yaml")


def shipped_file(path: Path) -> Path:
    """`path` if it exists, else the shipped file of that relative name (e.g. the README's
    `data/sft/arithmetic.jsonl` run from anywhere), else `path` unchanged."""
    if path.exists() or path.is_absolute():
        return path
    candidate = SHIPPED / path
    return candidate if candidate.exists() else path


def display_path(path: Path) -> Path:
    """A path as short as it can be shown: relative to the working directory where possible."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path.resolve()
