"""`harness sft`: supervised fine-tuning with TRL's SFTTrainer, loss on the assistant's tokens only.

Two routes to assistant-only loss, picked from the chat template:
- the template marks the assistant's text with `{% generation %}` (the embedded model's does):
  chat rows train with `assistant_only_loss=True`, every assistant turn counted;
- otherwise rows become conversational prompt/completion pairs (the last assistant turn is the
  completion) and train with `completion_only_loss=True`.
Either way the turn-end token is inside the trained span, so the tuned model learns to stop, and
it is written as eos into the saved generation config.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..env import versions
from ..errors import InputError, Problem
from ..files import write_json_atomic
from ..logs import say
from ..models import LoadedModel, attention_shape
from ..yamlio import MarkedDict, load_yaml
from . import varlen
from .compiling import compile_layers
from .curve import CurveCallback, CurvePlan
from .data import SFTData
from .lora import LoraSettings, lora_from_yaml
from .memory import fit_to_card

EMBEDDED_MAX_PARAMS = 10_000_000  # below this, a model gets the fast "embedded" preset


@dataclass(frozen=True)
class SFTSettings:
    learning_rate: float
    epochs: float
    batch_size: int
    grad_accum: int
    max_length: int
    warmup_steps: int
    weight_decay: float = 0.0
    lr_scheduler: str = "linear"
    seed: int = 0
    logging_steps: int = 10
    save_steps: int = 200
    max_rows: int = 0  # train on a seeded sample of this many rows (0: all)
    # Execution choices: speed and memory (benchmarks/RESULTS.md). `packing` puts several rows into
    # one max_length sequence, padding-free, position ids restarting per row so that no row attends
    # to another; a step then holds batch_size x max_length tokens.
    packing: bool = False
    attention: str = ""  # attn_implementation while training ("": the model's own)
    activation_checkpointing: bool = False
    liger: bool = False  # Liger's RMSNorm/SwiGLU/RoPE kernels (needs the liger-kernel package)
    compile: bool = False  # torch.compile each decoder layer (harness/sft/compiling.py)
    optimizer: str = ""  # TrainingArguments.optim ("": its default, adamw_torch)
    # worker processes that collate the next batches while the GPU trains (0: in the training
    # process, between steps); on CUDA their batches are copied to the GPU without waiting
    loader_workers: int = 0
    # the step never waits for the GPU (harness/sft/syncfree.py): the loss head on label positions
    # the collator lists, metrics read at logging steps, no per-step nan check of the loss
    sync_free: bool = False
    # Packed steps on a small data set: shorten the packed sequences until the run has at least
    # `min_steps` optimizer steps (big steps over few tokens learn less per token, measured), and
    # when lr_reference_rows is set scale the learning rate by rows per step / lr_reference_rows,
    # up to lr_max (with this, packed steps learn per token what the tutorial's 8 rows do).
    min_steps: int = 0
    lr_reference_rows: int = 0
    lr_max: float = 0.0
    warmup_max_fraction: float = 0.0  # packed runs: warm-up no longer than this share of steps
    # packed runs on CUDA: micro-batches that fit this share of the GPU's memory, the rest of the
    # step by gradient accumulation (harness/sft/memory.py; 0: batch_size as set)
    memory_fraction: float = 0.0
    # where the Trainer's logs go (TrainingArguments.report_to): the loss, and the evaluation
    # curve's eval/SUITE/accuracy, repetition_rate and no_stop_rate at each point
    report_to: str = "none"
    # LoRA adapters instead of full weights (harness/sft/lora.py; None: every weight trains)
    lora: LoraSettings | None = None


# The tutorial's hyper-parameters, for real models.
TUTORIAL = SFTSettings(
    learning_rate=8e-5, epochs=1, batch_size=1, grad_accum=8, max_length=1024, warmup_steps=0
)
# Fast settings for the embedded 0.5M-parameter model on two CPU cores.
EMBEDDED = SFTSettings(
    learning_rate=3e-3,
    epochs=3,
    batch_size=32,
    grad_accum=1,
    max_length=128,
    warmup_steps=20,
    weight_decay=0.01,
    lr_scheduler="cosine",
)


# harness's default on a CUDA GPU: rows packed into 8,192-token sequences, 4 of them per step
# (32k tokens; fewer per micro-batch where memory is short), padding-free varlen attention, bf16,
# decoder layers compiled, no activation checkpointing, a step that never waits for the GPU
# (syncfree.py) with batches collated in worker processes. Measured against TUTORIAL in
# benchmarks/RESULTS.md.
FAST = SFTSettings(
    learning_rate=8e-5,  # the tutorial's, for its 8 rows a step; scaled by rows/8 up to 8x
    epochs=1,
    batch_size=4,
    grad_accum=1,
    max_length=8192,
    warmup_steps=10,
    lr_scheduler="linear",  # the tutorial's
    logging_steps=5,
    packing=True,
    attention=varlen.ATTENTION,
    compile=True,
    sync_free=True,
    loader_workers=2,  # collating 32k tokens (~20 ms) off the training process; no measured gain
    min_steps=200,
    lr_reference_rows=8,
    lr_max=6.4e-4,
    warmup_max_fraction=0.05,
    memory_fraction=0.85,
)


# settings whose sensible range is not "0 or more" (the rest: no negative numbers)
RANGES: dict[str, tuple[float, float | None]] = {
    "batch_size": (1, None),
    "grad_accum": (1, None),
    "max_length": (1, None),
    "logging_steps": (1, None),
    "save_steps": (1, None),
    "memory_fraction": (0, 1),
    "warmup_max_fraction": (0, 1),
}
POSITIVE = {"epochs", "learning_rate"}


def default_settings(n_params: int, device: str = "cpu") -> tuple[str, SFTSettings]:
    if n_params < EMBEDDED_MAX_PARAMS:
        return "embedded", EMBEDDED
    if device.startswith("cuda"):
        return "fast", FAST
    return "tutorial", TUTORIAL


def settings_from_yaml(path: Path, base: SFTSettings) -> tuple[SFTSettings, set[str]]:
    """A YAML file of SFTSettings fields over `base`, and the keys it set; unknown keys, bad types
    and unknown choices are errors."""
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise InputError(problems=[Problem(str(path), "expected a mapping of settings", 1)])
    types = {f.name: f.type for f in fields(SFTSettings)}
    problems, values = [], {}
    for key, value in data.items():
        line = data.line_of(key) if isinstance(data, MarkedDict) else None
        if key not in types:
            problems.append(
                Problem(str(path), f"unknown setting (known: {', '.join(types)})", line, str(key))
            )
            continue
        if key == "lora":
            before = len(problems)
            lora = lora_from_yaml(value, str(path), line, problems)
            if len(problems) == before:
                values[key] = lora
            continue
        want = {"float": float, "int": int, "str": str, "bool": bool}[str(types[key])]
        ok = isinstance(value, want) or (want is float and isinstance(value, int))
        if not ok or (isinstance(value, bool) and want is not bool):
            problems.append(
                Problem(str(path), f"expected {want.__name__}, got {value!r}", line, key)
            )
            continue
        if want in (int, float) and not isinstance(value, bool):
            low, high = RANGES.get(key, (0, None))
            if value < low or (high is not None and value > high):
                within = f"between {low} and {high}" if high is not None else f"at least {low}"
                problems.append(Problem(str(path), f"must be {within}, got {value!r}", line, key))
                continue
            if key in POSITIVE and value <= 0:
                problems.append(Problem(str(path), f"must be above 0, got {value!r}", line, key))
                continue
        allowed = _choices(key)
        if allowed is not None and value not in allowed:
            problems.append(
                Problem(str(path), f"{value!r} is not one of: {', '.join(allowed)}", line, key)
            )
            continue
        values[key] = float(value) if want is float else value
    if problems:
        raise InputError(problems=problems)
    return replace(base, **values), set(values)


def respect_choices(
    settings: SFTSettings, chosen: set[str], log: Callable[[str], None] = say
) -> SFTSettings:
    """What a user set is used as set: a chosen learning rate is not rescaled, a chosen step size
    is not resized, a chosen warm-up not shortened (unless the planning settings are chosen too)."""
    if (
        settings.lr_reference_rows
        and "learning_rate" in chosen
        and "lr_reference_rows" not in chosen
    ):
        log(f"learning rate {settings.learning_rate:g} as chosen (not scaled to the step size)")
        settings = replace(settings, lr_reference_rows=0)
    if "warmup_steps" in chosen and "warmup_max_fraction" not in chosen:
        settings = replace(settings, warmup_max_fraction=0.0)
    if settings.lora and "learning_rate" not in chosen and settings.lora.lr_scale != 1:
        scale = settings.lora.lr_scale
        log(f"LoRA: learning rate x {scale:g} (lora.lr_scale), the rate adapters learn at")
        settings = replace(
            settings,
            learning_rate=settings.learning_rate * scale,
            lr_max=settings.lr_max * scale,
        )
    sizes = {"batch_size", "max_length", "grad_accum"} & chosen
    if settings.min_steps and sizes and "min_steps" not in chosen:
        log(f"step size as chosen ({', '.join(sorted(sizes))}; not resized to the data)")
        settings = replace(settings, min_steps=0)
    return settings


def _choices(key: str) -> list[str] | None:
    """The values a string setting may take (None: any)."""
    if key == "attention":
        return ["", "eager", "sdpa", "flex_attention", "flash_attention_2", varlen.ATTENTION]
    if key == "optimizer":
        from transformers.training_args import OptimizerNames

        return ["", *(o.value for o in OptimizerNames)]
    if key == "report_to":
        from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

        return ["none", "all", *INTEGRATION_TO_CALLBACK]
    if key == "lr_scheduler":
        from transformers import SchedulerType

        return [t.value for t in SchedulerType]
    return None


def uses_generation_marks(tokenizer: Any) -> bool:
    template = tokenizer.chat_template or ""
    return "generation" in template and "endgeneration" in template


def build_dataset(data: SFTData, tokenizer: Any) -> tuple[Any, str]:
    """A datasets.Dataset in the form TRL masks correctly for this template, and the route.

    Its fingerprint is the data's own hash: datasets would otherwise hash the Arrow table with
    dill, which fails under Python 3.12 on pyarrow's MonthDayNano class (seen on the GPU machine).
    """
    from datasets import Dataset
    from datasets.table import InMemoryTable

    if uses_generation_marks(tokenizer):
        rows = [{"messages": data.messages(i)} for i in range(len(data))]
        route = "assistant_only_loss"
    else:
        rows = []
        for i in range(len(data)):
            msgs = data.messages(i)
            rows.append({"prompt": msgs[:-1], "completion": msgs[-1:]})
        route = "completion_only_loss"
    fingerprint = hashlib.sha256(f"{data.hash}:{route}".encode()).hexdigest()[:32]
    return Dataset(InMemoryTable.from_pylist(rows), fingerprint=fingerprint), route


def for_processes(
    settings: SFTSettings, processes: int, log: Callable[[str], None] = say
) -> SFTSettings:
    """Keep the effective batch (batch x accumulation x processes) of a one-process run."""
    if processes <= 1:
        return settings
    before = f"batch {settings.batch_size} x accumulation {settings.grad_accum}"
    if settings.grad_accum % processes == 0:
        settings = replace(settings, grad_accum=settings.grad_accum // processes)
    elif settings.batch_size % processes == 0:
        settings = replace(settings, batch_size=settings.batch_size // processes)
    else:
        log(
            f"{processes} processes: cannot split {before} evenly; the effective batch grows "
            f"{processes}x"
        )
        return settings
    log(
        f"{processes} processes: {before} per process becomes batch {settings.batch_size} x "
        f"accumulation {settings.grad_accum}, so the effective batch stays the same"
    )
    return settings


def for_device(settings: SFTSettings, device: str, log: Callable[[str], None] = say) -> SFTSettings:
    """Drop what this machine cannot run or what the settings make redundant, saying so:
    Liger's kernels need CUDA and the package and are redundant with compiled layers; compiling
    for CUDA needs Triton."""
    if (
        settings.compile
        and device.startswith("cuda")
        and importlib.util.find_spec("triton") is None
    ):
        log("compile: off (torch.compile for CUDA needs the triton package)")
        settings = replace(settings, compile=False)
    if settings.lora and settings.compile:
        # measured on an H200 (benchmarks/RESULTS.md): peft's layers under compiled decoder
        # layers trained at half the tokens/s of the same run uncompiled
        log("compile: off (LoRA layers train faster uncompiled)")
        settings = replace(settings, compile=False)
    if settings.liger and settings.compile:
        log("liger: off (the compiled layers fuse the same operations)")
        return replace(settings, liger=False)
    if settings.liger and not device.startswith("cuda"):
        log("liger: off (Liger's kernels run on CUDA only)")
        return replace(settings, liger=False)
    if settings.liger and importlib.util.find_spec("liger_kernel") is None:
        log("liger: off (pip install liger-kernel, or use the default compile: true)")
        return replace(settings, liger=False)
    return settings


def plan_steps(
    settings: SFTSettings,
    lengths: list[int],
    processes: int = 1,
    log: Callable[[str], None] = say,
) -> SFTSettings:
    """Size packed steps to the data: at least `min_steps` of them, rows never truncated, and the
    learning rate scaled linearly to the rows a step holds (sqrt scaling learned less per token in
    benchmarks/sft_loss_cpu.py). `lengths`: tokens of each row."""
    if not settings.packing or not lengths:
        return settings
    total = sum(lengths) * settings.epochs
    per_step = settings.batch_size * settings.max_length * settings.grad_accum * processes
    # never smaller steps than the reference's rows (a few long rows would give steps of one)
    min_steps = min(
        settings.min_steps, len(lengths) * settings.epochs / (settings.lr_reference_rows or 1)
    )
    if min_steps and total / per_step < min_steps:
        want = math.ceil(total / min_steps / processes / 64) * 64
        length = min(settings.max_length, max(want, max(lengths)))
        settings = replace(settings, batch_size=1, grad_accum=1, max_length=length)
        per_step = length * processes
    steps = max(1, math.ceil(total / per_step))
    rows = len(lengths) * settings.epochs / steps
    if settings.warmup_max_fraction:  # a short run does not spend itself warming up
        cap = int(steps * settings.warmup_max_fraction)
        settings = replace(settings, warmup_steps=min(settings.warmup_steps, cap))
    note = (
        f"packing {len(lengths)} rows ({sum(lengths)} tokens) into {settings.batch_size} x "
        f"{settings.max_length}-token sequences x {settings.grad_accum * processes}: about {steps} "
        f"steps of {rows:.0f} rows"
    )
    if settings.lr_reference_rows:
        lr = settings.learning_rate * rows / settings.lr_reference_rows
        if settings.lr_max:
            lr = min(lr, settings.lr_max)
        note += (
            f"; learning rate {settings.learning_rate:g} x {rows:.0f}/"
            f"{settings.lr_reference_rows} rows = {lr:.3g}"
            + (" (the cap, lr_max)" if lr == settings.lr_max else "")
        )
        settings = replace(settings, learning_rate=lr, lr_reference_rows=0)
    log(note)
    return settings


def row_lengths(data: SFTData, tokenizer: Any) -> list[int]:
    """Tokens of each row through the chat template (what packing fills sequences with)."""
    return [
        len(
            tokenizer.apply_chat_template(data.messages(i), tokenize=True, return_dict=True)[
                "input_ids"
            ]
        )
        for i in range(len(data))
    ]


def make_trainer(
    lm: LoadedModel,
    data: SFTData,
    settings: SFTSettings,
    checkpoints: Path,
    *,
    progress: bool = True,
    log: Callable[[str], None] = say,
) -> Any:
    """An SFTTrainer ready to train `lm.model` on `data` (exposed for tests of the label mask)."""
    import datasets
    import torch
    from trl import SFTConfig, SFTTrainer

    # no dataset cache files under ~/.cache, and no fingerprint hashing of TRL's map functions
    # (which failed to pickle under Python 3.12 with pyarrow 26 on the GPU machine)
    datasets.disable_caching()
    if not progress:
        datasets.disable_progress_bars()
    dataset, route = build_dataset(data, lm.tokenizer)
    on_gpu = lm.device.startswith("cuda")
    if settings.attention:
        if settings.attention == varlen.ATTENTION:
            varlen.register()
            if settings.compile:  # lets the compiled layers trace the kernel (CUDA only)
                varlen.settle_gqa(lm.device, attention_shape(lm.model.config).head_dim)
        lm.model.set_attn_implementation(settings.attention)
    # flex attention is compiled; one padded shape per step compiles it once
    fixed_shape = settings.packing and settings.attention == "flex_attention"
    # transformers 5.24 renamed gradient_checkpointing (older 5.x know only the old name)
    checkpointing = (
        "activation_checkpointing"
        if "activation_checkpointing" in SFTConfig.__dataclass_fields__
        else "gradient_checkpointing"
    )
    config = SFTConfig(
        output_dir=str(checkpoints),
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        max_length=settings.max_length,
        warmup_steps=settings.warmup_steps,
        weight_decay=settings.weight_decay,
        lr_scheduler_type=settings.lr_scheduler,
        seed=settings.seed,
        data_seed=settings.seed,
        logging_steps=settings.logging_steps,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=1,
        assistant_only_loss=route == "assistant_only_loss",
        completion_only_loss=route == "completion_only_loss" or None,
        # SFTConfig turns both on by default, even on a CPU, where neither works.
        bf16=on_gpu and torch.cuda.is_bf16_supported(),
        packing=settings.packing,
        pad_to_multiple_of=settings.batch_size * settings.max_length if fixed_shape else None,
        use_liger_kernel=settings.liger,
        **({"optim": settings.optimizer} if settings.optimizer else {}),
        use_cpu=not on_gpu,
        report_to=settings.report_to,
        disable_tqdm=not progress,
        dataloader_num_workers=settings.loader_workers,
        dataloader_persistent_workers=settings.loader_workers > 0,
        # pinned batches copied without a stream sync: the GPU is not drained at each step start
        accelerator_config={
            "non_blocking": on_gpu and (settings.loader_workers > 0 or settings.sync_free)
        },
        # Trainer's nan/inf check of each step's loss waits for the GPU; a nan shows in the log
        logging_nan_inf_filter=not settings.sync_free,
        **{checkpointing: settings.activation_checkpointing},
    )
    trainer_class = SFTTrainer
    if settings.sync_free:
        from .syncfree import SyncFreeSFTTrainer

        trainer_class = SyncFreeSFTTrainer
    trainer = trainer_class(
        model=lm.model,
        args=config,
        train_dataset=dataset,
        processing_class=lm.tokenizer,
        peft_config=settings.lora.peft_config() if settings.lora else None,
    )
    if settings.sync_free and settings.compile and on_gpu:
        from .head import compiled_tile

        trainer.head_tile = compiled_tile()
    if settings.compile:
        compile_layers(trainer.model, log=log)
    return trainer, route


def check_one_gpu_per_process(device: str, command: str = "sft") -> None:
    """Trainer gives a process started outside torchrun / accelerate that sees several GPUs
    nn.DataParallel, which TRL's trainer refuses, and only after the data is tokenized: say so
    first, with the two ways out."""
    import torch

    if device == "cpu" or "LOCAL_RANK" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return
    if not torch.cuda.is_available() or (n := torch.cuda.device_count()) <= 1:
        return
    raise InputError(
        f"{n} GPUs are visible to this one process, and TRL's trainer refuses to drive several "
        f"GPUs from one process (nn.DataParallel). Train on all of them with `torchrun "
        f"--nproc_per_node {n} -m harness {command} ...`, or on one with `CUDA_VISIBLE_DEVICES=0 "
        f"harness {command} ...`"
    )


def _last_checkpoint(folder: Path) -> Path | None:
    found = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return found[-1] if found else None


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
    `curve`, evaluate along the way into out/curve (and keep the best point in out/best)."""
    from transformers import GenerationConfig

    start = time.time()
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    settings = for_device(for_processes(settings, processes, log), lm.device, log)
    if settings.max_rows and len(data) > settings.max_rows:
        data = data.sample(settings.max_rows, settings.seed)
        log(f"training on a seeded sample of {len(data)} rows (max_rows)")
    if settings.packing and (
        settings.min_steps or settings.lr_reference_rows or settings.warmup_max_fraction
    ):
        settings = plan_steps(settings, row_lengths(data, lm.tokenizer), processes, log)
    if settings.memory_fraction and lm.device.startswith("cuda"):
        card = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"  # where the Trainer moves the model
        settings = fit_to_card(settings, lm.model.config, lm.n_params, card, processes, log)
    checkpoints = out / "checkpoints"
    attention = lm.model.config._attn_implementation  # training may swap it; restored to save
    trainer, route = make_trainer(lm, data, settings, checkpoints, progress=progress, log=log)
    watcher = None
    if curve is not None:
        identity = f"{lm.fingerprint}:{data.hash}:{json.dumps(asdict(settings), sort_keys=True)}"
        best = out / "best" if curve.keep else None
        watcher = CurveCallback(
            curve, lm, name or out.name, out / "curve", identity, best, attention, log
        )
        watcher.attach(trainer)
    resume = _last_checkpoint(checkpoints)
    if resume:
        log(f"resuming from {resume}")
    log(f"training {lm.spec.name} on {len(data)} rows ({route}, preset {preset})")
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    losses = [_curve_point(h) for h in trainer.state.log_history if "loss" in h]
    runtime = result.metrics.get("train_runtime", 0.0)
    tokens = int(max((h.get("num_tokens", 0) for h in trainer.state.log_history), default=0))
    model = trainer.model
    if not trainer.is_world_process_zero():  # rank 0 alone writes the result
        return {"steps": trainer.state.global_step, "rank": int(os.environ.get("RANK", "0"))}
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    if attention and model.config._attn_implementation != attention:
        model.set_attn_implementation(attention)
    stop_ids = list(lm.chat.stop_token_ids)
    model.generation_config = GenerationConfig(
        eos_token_id=stop_ids, pad_token_id=lm.tokenizer.pad_token_id
    )
    out.mkdir(parents=True, exist_ok=True)
    if settings.lora:  # the adapter alone, naming its base so that `harness run` finds it
        model.peft_config["default"].base_model_name_or_path = base_reference(lm.spec, out)
    # save_embedding_layers=False: peft would look the base up on the hub to decide
    model.save_pretrained(out, **({"save_embedding_layers": False} if settings.lora else {}))
    lm.tokenizer.save_pretrained(out)
    info = {
        "base_model": lm.spec.name,
        "base_location": lm.spec.location,
        "base_fingerprint": lm.fingerprint,
        "data": data.source,
        "data_hash": data.hash,
        "data_rows": len(data),
        "data_format": data.format,
        "loss_route": route,
        "preset": preset,
        "settings": asdict(settings),
        "device": lm.device,
        "processes": processes,
        "train_loss": round(result.training_loss, 4),
        "tokens": tokens,
        "train_seconds": round(runtime, 2),
        "tokens_per_s": round(tokens / runtime, 1) if tokens and runtime else None,
        "final_loss": losses[-1]["loss"] if losses else round(result.training_loss, 4),
        "loss_curve": losses,
        "steps": trainer.state.global_step,
        "eos_token_ids": stop_ids,
        "adapter": bool(settings.lora),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "resumed_from": str(resume) if resume else None,
        "peak_gpu_memory_gb": _peak_gpu_memory(lm.device),
        "seconds": round(time.time() - start, 1),
        "versions": {**versions(), "trl": _trl_version()},
    }
    if watcher is not None:
        # Trainer's runtime holds every evaluation but the last (made after it stops the clock)
        inside = watcher.seconds - watcher.point_seconds.get(trainer.state.global_step, 0.0)
        training = runtime - inside
        info["curve"] = {
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
        if watcher.best is not None:
            info["kept"] = {**watcher.best, "folder": "best", "why": f"best:{curve.keep}"}
    write_json_atomic(out / "sft.json", info)
    shutil.rmtree(checkpoints, ignore_errors=True)
    return info


def base_reference(spec: Any, out: Path) -> str:
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
