"""`harness sft`'s training run: plan, build the trainer, train, save the model and sft.json.

The pieces live beside it: the settings' schema and presets in `settings.py`, what a run trains
with in `planning.py`, TRL's trainer in `trainer.py`. This module orders them, and writes what a
run leaves in its folder: the model (an adapter under LoRA), the tokenizer, a generation config
that stops at the chat template's turn end, and sft.json, the record of the run.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..env import versions
from ..files import write_into, write_json_atomic
from ..logs import say
from ..models import LoadedModel, ModelSpec
from .curve import CurveCallback, CurvePlan
from .data import SFTData
from .planning import Plan, plan_run
from .settings import SFTSettings
from .trainer import LossRoute, make_trainer

if TYPE_CHECKING:
    from transformers.trainer_utils import TrainOutput
    from trl import SFTTrainer


def train(
    lm: LoadedModel,
    data: SFTData,
    out: Path,
    settings: SFTSettings,
    preset: str,
    *,
    progress: bool = True,
    log: Callable[[str], None] = say,
    curve: CurvePlan | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Fine-tune, save model + tokenizer + generation config + sft.json into `out`; with a
    `curve`, evaluate along the way into out/curve (and keep the best point in out/best).
    Returns sft.json's record (on ranks other than 0 of a multi-process run: steps and rank)."""
    start = time.time()
    plan = plan_run(lm, data, settings, log)
    checkpoints = out / "checkpoints"
    attention = lm.model.config._attn_implementation  # training may swap it; restored to save
    trainer, route = make_trainer(
        lm, plan.data, plan.settings, checkpoints, progress=progress, log=log
    )
    watcher = (
        watch_curve(trainer, curve, lm, plan, out, name, attention, log)
        if curve is not None
        else None
    )
    resume = _last_checkpoint(checkpoints)
    if resume:
        log(f"resuming from {resume}")
    log(f"training {lm.spec.name} on {len(plan.data)} rows ({route}, preset {preset})")
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if not trainer.is_world_process_zero():  # rank 0 alone writes the result
        return {"steps": trainer.state.global_step, "rank": int(os.environ.get("RANK", "0"))}
    model = save_model(trainer, lm, out, plan.settings, attention)
    info = {
        **run_record(lm, plan, route, preset),
        **outcome_record(trainer, result),
        "eos_token_ids": list(lm.chat.stop_token_ids),
        "adapter": bool(plan.settings.lora),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "resumed_from": str(resume) if resume else None,
        "peak_gpu_memory_gb": _peak_gpu_memory(lm.device),
        "seconds": round(time.time() - start, 1),
        "versions": {**versions(), "trl": _trl_version()},
    }
    if watcher is not None:
        runtime = result.metrics.get("train_runtime", 0.0)
        info |= curve_record(watcher, runtime, trainer.state.global_step)
    write_json_atomic(out / "sft.json", info)
    shutil.rmtree(checkpoints, ignore_errors=True)
    return info


def watch_curve(
    trainer: SFTTrainer,
    curve: CurvePlan,
    lm: LoadedModel,
    plan: Plan,
    out: Path,
    name: str | None,
    attention: str | None,
    log: Callable[[str], None],
) -> CurveCallback:
    """Attach the evaluation curve's callback; its identity ties resumed points to this model,
    data and planned settings."""
    identity = (
        f"{lm.fingerprint}:{plan.data.hash}:{json.dumps(asdict(plan.settings), sort_keys=True)}"
    )
    best = out / "best" if curve.keep else None
    watcher = CurveCallback(
        curve, lm, name or out.name, out / "curve", identity, best, attention, log
    )
    watcher.attach(trainer)
    return watcher


def _last_checkpoint(folder: Path) -> Path | None:
    found = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return found[-1] if found else None


def save_model(
    trainer: SFTTrainer, lm: LoadedModel, out: Path, settings: SFTSettings, attention: str | None
) -> Any:
    """Save the trained model (the adapter alone under LoRA) and tokenizer into `out`, with the
    attention kernel it was loaded with and a generation config that stops at the turn end;
    returns the model unwrapped."""
    from transformers import GenerationConfig

    model = trainer.model
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    if attention and model.config._attn_implementation != attention:
        model.set_attn_implementation(attention)
    model.generation_config = GenerationConfig(
        eos_token_id=list(lm.chat.stop_token_ids), pad_token_id=lm.tokenizer.pad_token_id
    )
    if settings.lora:  # the adapter alone, naming its base so that `harness run` finds it
        model.peft_config["default"].base_model_name_or_path = base_reference(lm.spec, out)

    def fill(folder: Path) -> None:
        # save_embedding_layers=False: peft would look the base up on the hub to decide
        model.save_pretrained(folder, **({"save_embedding_layers": False} if settings.lora else {}))
        lm.tokenizer.save_pretrained(folder)

    write_into(out, fill)  # a kill while saving leaves no half-written weights to load
    return model


def run_record(lm: LoadedModel, plan: Plan, route: LossRoute, preset: str) -> dict[str, Any]:
    """sft.json's account of what was trained, on what, with what."""
    return {
        "base_model": lm.spec.name,
        "base_location": lm.spec.location,
        "base_fingerprint": lm.fingerprint,
        "data": plan.data.source,
        "data_hash": plan.data.hash,
        "data_rows": len(plan.data),
        "data_format": plan.data.format,
        "loss_route": route,
        "preset": preset,
        "settings": asdict(plan.settings),
        "device": lm.device,
        "processes": plan.processes,
    }


def outcome_record(trainer: SFTTrainer, result: TrainOutput) -> dict[str, Any]:
    """sft.json's account of how training went: loss, tokens, time, steps."""
    history = trainer.state.log_history
    losses = [_curve_point(h) for h in history if "loss" in h]
    runtime = result.metrics.get("train_runtime", 0.0)
    tokens = int(max((h.get("num_tokens", 0) for h in history), default=0))
    return {
        "train_loss": round(result.training_loss, 4),
        "tokens": tokens,
        "train_seconds": round(runtime, 2),
        "tokens_per_s": round(tokens / runtime, 1) if tokens and runtime else None,
        "final_loss": losses[-1]["loss"] if losses else round(result.training_loss, 4),
        "loss_curve": losses,
        "steps": trainer.state.global_step,
    }


def curve_record(watcher: CurveCallback, runtime: float, last_step: int) -> dict[str, Any]:
    """sft.json's account of the evaluation curve, and of the point kept as best."""
    curve = watcher.plan
    # Trainer's runtime holds every evaluation but the last (made after it stops the clock)
    inside = watcher.seconds - watcher.point_seconds.get(last_step, 0.0)
    training = runtime - inside
    record: dict[str, Any] = {
        "curve": {
            "folder": "curve",
            "suites": [s.name for s in curve.suites],
            "points": sorted(watcher.done),
            "eval_seconds": round(watcher.seconds, 2),
            "training_seconds": round(training, 2),
            "seconds_per_point": watcher.point_seconds,
            "eval_share_of_training": round(watcher.seconds / training, 4)
            if training > 0
            else None,
        }
    }
    if watcher.best is not None:
        record["kept"] = {**watcher.best, "folder": "best", "why": f"best:{curve.keep}"}
    return record


def base_reference(spec: ModelSpec, out: Path) -> str:
    """How an adapter saved in `out` names its base: the registry's name, else the base's folder
    relative to the adapter's (both move together in a repository), else its hub id."""
    from ..models import load_registry

    if spec.name in load_registry():
        return spec.name
    if spec.source in ("path", "gguf") and not spec.package:
        return os.path.relpath(Path(spec.location).resolve(), out.resolve())
    return spec.location


def _curve_point(logged: dict[str, Any]) -> dict[str, Any]:
    """A loss-curve point of sft.json from a Trainer log entry."""
    point = {"step": logged["step"], "loss": round(logged["loss"], 4)}
    if "mean_token_accuracy" in logged:  # TRL's: the share of labels the model ranks first
        point["token_accuracy"] = round(logged["mean_token_accuracy"], 4)
    return point


def _peak_gpu_memory(device: str) -> float | None:
    """The most GPU memory torch held for tensors during the run (weights, optimizer state,
    activations), in GB; None off the GPU."""
    import torch

    if not device.startswith("cuda"):
        return None
    return round(torch.cuda.max_memory_allocated() / 1e9, 2)


def _trl_version() -> str:
    import trl

    return trl.__version__
