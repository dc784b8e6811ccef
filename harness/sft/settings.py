"""What an SFT run is asked to do: the settings' schema, the presets, and reading them from YAML.

Everything here is a user's or a preset's choice, before anything about the data, the machine
or the process count is known; `planning.py` turns these into what one run trains with, so a
settings file means the same on every machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path

from ..errors import InputError, Problem
from ..logs import say
from ..yamlio import MarkedDict, load_yaml
from . import varlen
from .lora import LoraSettings, lora_from_yaml

EMBEDDED_MAX_PARAMS = 10_000_000  # below this, a model gets the fast "embedded" preset


@dataclass(frozen=True)
class SFTSettings:
    """One run's hyper-parameters and execution choices; frozen, so a planned copy never
    changes what the caller holds. The field names are the YAML keys and sft.json's."""

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
    """The preset for a model of `n_params` on `device`, and its name (sft.json's `preset`)."""
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
