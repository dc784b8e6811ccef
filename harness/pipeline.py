"""`harness pipeline`: the tutorial as one command (evaluate the base, fine-tune, evaluate again).

Each stage leaves a file that marks it done, in one folder (default reports/pipelines/NAME):
the run folder's samples for the base, model/sft.json for training, the run folder's samples for
the tuned model. Re-running the same command after a crash continues where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from .compare import paired
from .evaluation import DecodeSettings, evaluate
from .files import write_atomic
from .logs import say
from .models import ModelSpec
from .paths import display_path
from .report import write_reports
from .results import RunFolder
from .sft.curve import CurvePlan
from .sft.planning import check_one_gpu_per_process
from .sft.stage import run_sft
from .suites import Suite
from .tables import paired_table, summary_table


def pipeline(
    base: ModelSpec,
    data: str,
    suites: list[Suite],
    out: Path,
    *,
    name: str,
    settings: DecodeSettings | None = None,
    sft_overrides: dict[str, Any] | None = None,
    config: Path | None = None,
    allow_overlap: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = say,
    curve: CurvePlan | None = None,
) -> dict[str, Any]:
    settings = settings or DecodeSettings()
    if curve is not None:  # the curve decodes as the pipeline's runs do
        curve = replace(curve, decode=settings)
    run_dir, model_dir = out / "run", out / "model"
    if not (model_dir / "sft.json").exists():  # before evaluating: training would refuse later
        check_one_gpu_per_process(settings.device, "pipeline")
    log(f"[1/3] evaluating {base.name}")
    evaluate(suites, [base], run_dir, settings, resume=True, log=log, progress=progress)
    if (model_dir / "sft.json").exists():
        log(f"[2/3] {model_dir} is already trained (sft.json); skipping")
    else:
        log(f"[2/3] fine-tuning {base.name} on {data}")
        run_sft(
            base,
            data,
            model_dir,
            suites=suites,
            config=config,
            overrides=sft_overrides,
            allow_overlap=allow_overlap,
            device=settings.device,
            progress=progress,
            log=log,
            curve=curve,
            curve_name=name,
        )
    kind = "adapter" if (model_dir / "adapter_config.json").is_file() else "path"
    # an adapter's base as this pipeline was given it (a registry name ships a packaged GGUF)
    base_ref = base.name if base.package else base.location
    tuned = ModelSpec(
        name, kind, str(model_dir), description=f"{base.name} after SFT", base=base_ref
    )
    log(f"[3/3] evaluating {name}")
    summary = evaluate(suites, [tuned], run_dir, settings, resume=True, log=log, progress=progress)
    comparison = paired(RunFolder(run_dir).read_samples(), base.name, name)
    text = (
        f"# {base.name} -> {name}\n\n{summary_table(summary, 'github')}\n\n"
        f"{paired_table(comparison, 'github')}\n"
    )
    curve_dir = model_dir / "curve"
    if (curve_dir / "run.json").exists():
        from .curves import curve_markdown

        text += f"\n## During training ({display_path(curve_dir)})\n\n{curve_markdown(curve_dir)}\n"
    write_atomic(out / "comparison.md", text)
    write_reports(run_dir)
    return {"summary": summary, "comparison": comparison}
