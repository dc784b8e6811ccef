"""`harness baseline RUN_DIR`: the file a project commits so that CI can gate against it.

One JSON file holds, per model: its fingerprint, its per-suite summary, and per question whether
it was right, repeated itself, and ran into its token limit; plus each suite's hash, so a gate
can tell a changed suite from a changed model.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from . import __version__
from .errors import InputError
from .files import write_json_atomic
from .results import RunFolder, read_json
from .sample import as_samples
from .summarize import summarize

BASELINE_FILE = "baseline.json"
FORMAT = 2


def make_baseline(run_dir: Path) -> dict[str, Any]:
    folder = RunFolder(run_dir)
    if not folder.samples.exists() or not folder.run_json.exists():
        raise InputError(f"{run_dir}: not a run folder (needs run.json and samples.jsonl)")
    run = folder.read_run()
    if run.get("status") != "complete":
        raise InputError(
            f"{run_dir}: the run is not complete (status {run.get('status')!r}); "
            "resume it to the end first"
        )
    samples = as_samples(folder.read_samples())
    summary = summarize(samples)["models"]
    models: dict[str, Any] = {}
    for s in samples:
        entry = models.setdefault(
            s.model,
            {
                "fingerprint": run["models"].get(s.model, {}).get("fingerprint"),
                "summary": summary[s.model],
                "questions": {},
            },
        )
        entry["questions"].setdefault(s.suite, {})[s.id] = s.outcome()
    return {
        "format": FORMAT,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "harness_version": __version__,
        "source_run": str(run_dir),
        "decode": run.get("decode"),
        "suites": {
            name: {"hash": info["hash"], "questions": info["questions"]}
            for name, info in run["suites"].items()
        },
        "models": models,
        "judges": run.get("judges", {}),  # per judged suite: judge, fingerprint, rubric hash
    }


def write_baseline(run_dir: Path, out: Path) -> Path:
    data = make_baseline(run_dir)
    path = out / BASELINE_FILE
    write_json_atomic(path, data)
    return path


def read_baseline(path: Path) -> dict[str, Any]:
    """A baseline folder (holding baseline.json) or the file itself."""
    file = path / BASELINE_FILE if path.is_dir() else path
    if not file.exists():
        raise InputError(f"{file}: no baseline here; make one with `harness baseline RUN_DIR`")
    data = read_json(file)
    missing = [k for k in ("format", "suites", "models") if k not in data]
    if missing or data.get("format") != FORMAT:
        raise InputError(
            f"{file}: not a harness baseline (format {data.get('format')!r}, "
            f"missing {', '.join(missing) or 'nothing'}); rebuild it"
        )
    return data
