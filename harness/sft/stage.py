"""The SFT stage as one call: check the data against the suites, train, save, register."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import Contaminated
from ..logs import LOG, say
from ..models import ModelSpec, load, register
from ..suites import Suite
from .curve import CurvePlan
from .data import load_many
from .overlap import find_overlaps
from .planning import check_one_gpu_per_process
from .settings import default_settings, respect_choices, settings_from_yaml
from .train import train

MAX_LISTED = 15


def check_overlap(data_spec: str, suites: list[Suite]) -> list:
    data = load_many(data_spec)
    return find_overlaps(data.user_prompts(), suites)


def describe_overlaps(overlaps: list) -> str:
    lines = [
        f"  {o.row}: {o.kind} match with {o.suite}/{o.question}: {o.text[:70]!r}"
        for o in overlaps[:MAX_LISTED]
    ]
    if len(overlaps) > MAX_LISTED:
        lines.append(f"  ... and {len(overlaps) - MAX_LISTED} more")
    return "\n".join(lines)


def run_sft(
    spec: ModelSpec,
    data_spec: str,
    out: Path,
    *,
    suites: list[Suite],
    name: str | None = None,
    config: Path | None = None,
    overrides: dict[str, Any] | None = None,
    allow_overlap: bool = False,
    device: str = "auto",
    registry: Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = say,
    curve: CurvePlan | None = None,
    curve_name: str | None = None,
) -> dict[str, Any]:
    """Check the data against the suites, train, save into `out`, register as `name`; with a
    `curve`, evaluate during training, its points named `curve_name` (else `name`, else the
    folder's) + @step-S."""
    check_one_gpu_per_process(device)
    data = load_many(data_spec)
    if curve is not None:  # the evaluation suites are checked for training rows too
        known = {s.name for s in suites}
        suites = [*suites, *(s for s in curve.suites if s.name not in known)]
    overlaps = find_overlaps(data.user_prompts(), suites)
    if overlaps and not allow_overlap:
        raise Contaminated(
            f"{len(overlaps)} training row(s) contain evaluation questions of "
            f"{', '.join(s.name for s in suites)}",
            describe_overlaps(overlaps),
        )
    if overlaps:
        LOG.warning(f"warning: training on {len(overlaps)} row(s) that overlap the suites")
    lm = load(spec, device=device, dtype="float32")
    preset, settings = default_settings(lm.n_params, lm.device)
    chosen: set[str] = set()
    if config:
        settings, keys = settings_from_yaml(config, settings)
        chosen |= keys
        preset += f"+{config}"
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if "lora" in overrides and settings.lora:  # --lora with the config's own lora: settings
        del overrides["lora"]
    if overrides:
        settings = replace(settings, **overrides)
        chosen |= set(overrides)
        preset += "+flags"
    settings = respect_choices(settings, chosen, log)
    info = train(
        lm,
        data,
        out,
        settings,
        preset,
        progress=progress,
        log=log,
        curve=curve,
        name=curve_name or name,
    )
    if "rank" in info:  # not rank 0 of a multi-process run: rank 0 saves and registers
        return info
    info["overlaps_allowed"] = len(overlaps)
    if name:
        adapter = spec.name if settings.lora else None
        path = register(name, out, f"{spec.name} fine-tuned on {data_spec}", registry, adapter)
        info["registered"] = f"{path}: {name}"
    return info
