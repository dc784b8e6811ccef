"""harness from Python: evaluate models on suites, read runs back, compare, gate and export.

A thin facade over the same stages the command line runs (suite -> runner -> scorers -> run
folder -> report/compare/gate), so a notebook cell, a training script and `harness run` make the
same files. Errors are `harness.errors.InputError`s naming the parameter or file at fault; progress
goes to the `harness` logger and tqdm bars.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import InputError
from .files import write_atomic, write_jsonl_atomic
from .logs import say
from .models import LoadedModel, ModelSpec, checkpoints, from_memory, load_registry, resolve
from .sample import Sample, as_samples
from .suites import Suite, load_suite, load_suites

SuitesArg = str | Path | Suite | Sequence[str | Path | Suite]
ModelArg = str | Path | ModelSpec | LoadedModel | tuple[Any, ...]
EXPORT_FORMATS = ("csv", "parquet", "jsonl")


@dataclass
class Run:
    """A run folder as Python objects: run.json (`info`), the typed samples and the summary."""

    path: Path
    info: dict[str, Any]
    samples: list[Sample]
    summary: dict[str, Any] = field(repr=False)

    def __repr__(self) -> str:
        return (
            f"Run('{self.path}': {', '.join(self.models)} on {', '.join(self.suites)}, "
            f"{len(self.samples)} samples)"
        )

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(s.model for s in self.samples))

    @property
    def suites(self) -> list[str]:
        return list(dict.fromkeys(s.suite for s in self.samples))

    def samples_df(self) -> Any:
        """One row per sample: every field of `Sample` (a row's dict rebuilds the Sample),
        plus the derived `repeated`, `no_stop` and `seq_rep_4` columns for grouping."""
        import pandas as pd

        rows = [
            {
                **s.to_dict(),
                "repeated": s.repeated,
                "no_stop": s.no_stop,
                "seq_rep_4": s.repetition.get("seq_rep_4"),
            }
            for s in self.samples
        ]
        return pd.DataFrame(rows, columns=_SAMPLE_COLUMNS if not rows else None)

    def summary_df(self) -> Any:
        """One row per model x suite (tag empty) and per model x suite x tag."""
        import pandas as pd

        rows = []
        for model, suites in self.summary["models"].items():
            for suite, entry in suites.items():
                for tag, values in [("", entry), *entry.get("by_tag", {}).items()]:
                    row = {"model": model, "suite": suite, "tag": tag}
                    for key, value in values.items():
                        if key == "by_tag":
                            continue
                        if isinstance(value, list):  # an interval
                            row[f"{key}_low"], row[f"{key}_high"] = value
                        else:
                            row[key] = value
                    rows.append(row)
        return pd.DataFrame(rows)

    def compare(self, model_a: str, model_b: str) -> list[Any]:
        """Per suite, `model_b` against `model_a` on the same questions (`compare.Paired`)."""
        from .compare import paired

        for name in (model_a, model_b):
            if name not in self.models:
                raise InputError(
                    f"the run has no model '{name}' (it has {', '.join(self.models)})",
                    argument="model",
                )
        return paired(self.samples, model_a, model_b)

    def report(self, path: str | Path | None = None) -> tuple[Path, Path]:
        """Write report.html and report.md (into the run folder, or copies into `path`)."""
        from .report import write_reports

        html, md = write_reports(self.path)
        if path is None:
            return html, md
        html_copy, md_copy = Path(path) / html.name, Path(path) / md.name
        write_atomic(html_copy, html.read_bytes())
        write_atomic(md_copy, md.read_bytes())
        return html_copy, md_copy

    def export(self, path: str | Path, fmt: str | None = None, what: str = "samples") -> Path:
        """The samples or the summary as csv, parquet or jsonl (`fmt` from the suffix if left
        out); nested fields (tags, scorer, detail, repetition) as JSON text in csv and parquet."""
        path = Path(path)
        fmt = fmt or path.suffix.lstrip(".")
        if fmt not in EXPORT_FORMATS:
            raise InputError(
                f"expected one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}", argument="format"
            )
        if what not in ("samples", "summary"):
            raise InputError(f"expected samples or summary, got {what!r}", argument="what")
        df = self.samples_df() if what == "samples" else self.summary_df()
        if fmt == "jsonl":
            rows = [s.to_dict() for s in self.samples] if what == "samples" else None
            write_jsonl_atomic(path, rows if rows is not None else df.to_dict("records"))
            return path
        flat = df.copy()
        for column in flat.columns:
            if flat[column].map(lambda v: isinstance(v, dict | list | tuple)).any():
                flat[column] = flat[column].map(lambda v: json.dumps(v, ensure_ascii=False))
        data = flat.to_csv(index=False) if fmt == "csv" else flat.to_parquet(index=False)
        write_atomic(path, data)
        return path


_SAMPLE_COLUMNS = [*Sample.__dataclass_fields__, "repeated", "no_stop", "seq_rep_4"]


def load_run(path: str | Path) -> Run:
    """A run folder written by `harness run` or `evaluate` (complete or not)."""
    from .results import RunFolder
    from .summarize import summarize

    folder = RunFolder(Path(path))
    if not folder.run_json.exists():
        raise InputError(f"{path}: not a run folder (no run.json)")
    samples = as_samples(folder.read_samples())
    return Run(folder.path, folder.read_run(), samples, summarize(samples))


def _suites(suites: SuitesArg) -> list[Suite]:
    items = [suites] if isinstance(suites, str | Path | Suite) else list(suites)
    out: list[Suite] = []
    for item in items:
        if isinstance(item, Suite):
            out.append(item)
        elif isinstance(item, Path):
            out.append(load_suite(item))
        elif isinstance(item, str):
            out.extend(load_suites(item))
        else:
            raise InputError(
                f"expected suite names, paths or Suite objects, got {type(item).__name__}",
                argument="suites",
            )
    if not out:
        raise InputError("give at least one suite", argument="suites")
    return out


def _models(models: ModelArg | Sequence[ModelArg] | dict[str, Any]) -> list[Any]:
    """Registry names, folders, hub ids and specs to load; (model, tokenizer) pairs in memory,
    named `model`, `model-2`, ... or by a dict's keys, or as (name, model, tokenizer)."""
    if isinstance(models, dict):
        named = list(models.items())
    elif isinstance(models, str):
        named = [(None, m.strip()) for m in models.split(",") if m.strip()]
    elif isinstance(models, tuple) and len(models) in (2, 3) and not isinstance(models[0], str):
        named = [(None, models)]  # one (model, tokenizer) pair
    elif isinstance(models, Iterable):
        named = [(None, m) for m in models]
    else:
        named = [(None, models)]
    registry = load_registry()
    out: list[Any] = []
    for i, (name, item) in enumerate(named, start=1):
        if isinstance(item, LoadedModel | ModelSpec):
            out.append(item)
        elif isinstance(item, str | Path) and set("*?[") & set(str(item)):
            out.extend(checkpoints(str(item)))  # a training run's checkpoints: a curve
        elif isinstance(item, str | Path):
            spec = resolve(str(item), registry)
            out.append(spec if name is None else replace(spec, name=name))
        elif isinstance(item, tuple) and len(item) == 3 and isinstance(item[0], str):
            out.append(from_memory(item[1], item[2], name=item[0]))
        elif isinstance(item, tuple) and len(item) == 2:
            out.append(from_memory(item[0], item[1], name=name or _default_name(i, len(named))))
        else:
            raise InputError(
                f"model {i}: expected a name, a folder, a hub id or a (model, tokenizer) pair, "
                f"got {type(item).__name__}",
                argument="models",
            )
    names = [m.spec.name if isinstance(m, LoadedModel) else m.name for m in out]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise InputError(f"two models share the name {', '.join(dupes)}", argument="models")
    if not out:
        raise InputError("give at least one model", argument="models")
    return out


def _default_name(i: int, n: int) -> str:
    return "model" if n == 1 else f"model-{i}"


def evaluate(
    suites: SuitesArg,
    models: ModelArg | Sequence[ModelArg] | dict[str, Any],
    out: str | Path | None = None,
    *,
    batch_size: int | None = None,
    max_new_tokens: int | None = None,
    device: str = "auto",
    dtype: str = "auto",
    limit: int | None = None,
    decoder: str = "auto",
    self_check: int | None = None,
    resume: bool = True,
    progress: bool = True,
    trust_remote_code: bool = False,
    report: bool = True,
) -> Run | None:
    """Evaluate `models` on `suites` greedily and return the run (None on ranks other than 0
    under torchrun).

    `suites`: names from suites/, YAML paths, "all", comma lists, or `Suite` objects. `models`:
    registry names, folders, hub ids, `(model, tokenizer)` pairs already in memory (evaluated
    as they are, in the mode they are handed back in), `(name, model, tokenizer)` triples, or a
    dict {name: any of these}. `out=None` writes to a fresh temporary folder (logged, and
    `Run.path`). An existing `out` holding the same suites, models and settings is resumed, so
    re-running a cell finishes or re-reads its run instead of failing; `resume=False` refuses.
    """
    from .evaluation import DecodeSettings
    from .evaluation import evaluate as run_stages
    from .selfcheck import DEFAULT_QUESTIONS

    suite_list = _suites(suites)
    model_list = _models(models)
    settings = DecodeSettings(
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        device=device,
        dtype=dtype,
        limit=limit,
        decoder=decoder,
        self_check=DEFAULT_QUESTIONS if self_check is None else self_check,
    )
    folder = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="harness-run-"))
    say(f"run folder: {folder}")
    summary = run_stages(
        suite_list,
        model_list,
        folder,
        settings,
        resume=resume,
        trust_remote_code=trust_remote_code,
        progress=progress,
    )
    if summary is None:
        return None
    if report:
        from .report import write_reports

        write_reports(folder)
    return load_run(folder)


def gate(
    baseline: str | Path | dict[str, Any],
    run: Run | str | Path,
    rules: str | Path | Any | None = None,
    *,
    candidate: str | None = None,
    baseline_model: str | None = None,
) -> Any:
    """Gate a run against a baseline (folder, baseline.json or its dict); `rules` a YAML path
    or a `gate.Rules`. Returns a `gate.GateResult` (`.passed`, `.checks`, `.notes`)."""
    from .baseline import read_baseline
    from .gating import Rules, load_rules
    from .gating import gate as run_gate

    data = baseline if isinstance(baseline, dict) else read_baseline(Path(baseline))
    ruleset = rules if isinstance(rules, Rules) else load_rules(Path(rules) if rules else None)
    path = run.path if isinstance(run, Run) else Path(run)
    return run_gate(data, path, ruleset, candidate=candidate, baseline_model=baseline_model)
