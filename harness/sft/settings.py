"""What an SFT run is asked to do: the settings' schema, the presets, and reading them from YAML.

Everything here is a user's or a preset's choice, before anything about the data, the machine
or the process count is known; `planning.py` turns these into what one run trains with, so a
settings file means the same on every machine. SFTSettings is also the settings file's schema
(harness/schema.py): its type hints say each key's type, bounds and choices.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any

from ..errors import InputError, Problem
from ..logs import say
from ..schema import OneOf, Range, Report, Via, Wording, check, noun
from ..yamlio import load_yaml
from . import varlen
from .lora import LoraSettings, lora_from_yaml

EMBEDDED_MAX_PARAMS = 10_000_000  # below this, a model gets the fast "embedded" preset


def _attentions() -> list[str]:
    return ["", "eager", "sdpa", "flex_attention", "flash_attention_2", varlen.ATTENTION]


def _optimizers() -> list[str]:
    from transformers.training_args import OptimizerNames

    return ["", *(o.value for o in OptimizerNames)]


def _reporters() -> list[str]:
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    return ["none", "all", *INTEGRATION_TO_CALLBACK]


def _schedulers() -> list[str]:
    from transformers import SchedulerType

    return [t.value for t in SchedulerType]


# A settings file's numbers are never negative; sizes and step counts are at least 1, and a
# rate or a number of epochs of 0 would train nothing. Choices are transformers' own lists,
# read when a value is checked (importing transformers is slow).
Count = Annotated[int, Range(0)]
Size = Annotated[int, Range(1)]
Amount = Annotated[float, Range(0)]
NonZeroAmount = Annotated[Amount, Range(0, low_open=True)]
Share = Annotated[float, Range(0, 1)]


@dataclass(frozen=True)
class SFTSettings:
    """One run's hyper-parameters and execution choices; frozen, so a planned copy never
    changes what the caller holds. The field names are the YAML keys and sft.json's."""

    learning_rate: NonZeroAmount
    epochs: NonZeroAmount
    batch_size: Size
    grad_accum: Size
    max_length: Size
    warmup_steps: Count
    weight_decay: Amount = 0.0
    lr_scheduler: Annotated[str, OneOf(_schedulers)] = "linear"
    seed: Count = 0
    logging_steps: Size = 10
    save_steps: Size = 200
    max_rows: Count = 0  # train on a seeded sample of this many rows (0: all)
    # Execution choices: speed and memory (benchmarks/RESULTS.md). `packing` puts several rows into
    # one max_length sequence, padding-free, position ids restarting per row so that no row attends
    # to another; a step then holds batch_size x max_length tokens.
    packing: bool = False
    # attn_implementation while training ("": the model's own)
    attention: Annotated[str, OneOf(_attentions)] = ""
    activation_checkpointing: bool = False
    liger: bool = False  # Liger's RMSNorm/SwiGLU/RoPE kernels (needs the liger-kernel package)
    compile: bool = False  # torch.compile each decoder layer (harness/sft/compiling.py)
    optimizer: Annotated[str, OneOf(_optimizers)] = ""  # TrainingArguments.optim ("": adamw_torch)
    # worker processes that collate the next batches while the GPU trains (0: in the training
    # process, between steps); on CUDA their batches are copied to the GPU without waiting
    loader_workers: Count = 0
    # the step never waits for the GPU (harness/sft/syncfree.py): the loss head on label positions
    # the collator lists, metrics read at logging steps, no per-step nan check of the loss
    sync_free: bool = False
    # Packed steps on a small data set: shorten the packed sequences until the run has at least
    # `min_steps` optimizer steps (big steps over few tokens learn less per token, measured), and
    # when lr_reference_rows is set scale the learning rate by rows per step / lr_reference_rows,
    # up to lr_max (with this, packed steps learn per token what the tutorial's 8 rows do).
    min_steps: Count = 0
    lr_reference_rows: Count = 0
    lr_max: Amount = 0.0
    warmup_max_fraction: Share = 0.0  # packed runs: warm-up no longer than this share of steps
    # packed runs on CUDA: micro-batches that fit this share of the GPU's memory, the rest of the
    # step by gradient accumulation (harness/sft/memory.py; 0: batch_size as set)
    memory_fraction: Share = 0.0
    # where the Trainer's logs go (TrainingArguments.report_to): the loss, and the evaluation
    # curve's eval/SUITE/accuracy, repetition_rate and no_stop_rate at each point
    report_to: Annotated[str, OneOf(_reporters)] = "none"
    # LoRA adapters instead of full weights (harness/sft/lora.py; None: every weight trains)
    lora: Annotated[LoraSettings | None, Via(lora_from_yaml)] = None


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


def default_settings(n_params: int, device: str = "cpu") -> tuple[str, SFTSettings]:
    """The preset for a model of `n_params` on `device`, and its name (sft.json's `preset`)."""
    if n_params < EMBEDDED_MAX_PARAMS:
        return "embedded", EMBEDDED
    if device.startswith("cuda"):
        return "fast", FAST
    return "tutorial", TUTORIAL


class _Wording(Wording):
    """The settings file's messages: "expected int, got 'x'", "must be at least 1, got 0",
    "'adam' is not one of: , adamw_torch, ..."."""

    def noun(self, tp: Any) -> str:
        return tp.__name__ if isinstance(tp, type) else noun(tp)

    def out_of_range(self, bounds: Range, value: Any) -> str:
        low, high = bounds.low, bounds.high
        low_side = f"{'above' if bounds.low_open else 'at least'} {low}"
        high_side = f"{'below' if bounds.high_open else 'at most'} {high}"
        if low is not None and high is not None:
            closed = not (bounds.low_open or bounds.high_open)
            within = f"between {low} and {high}" if closed else f"{low_side} and {high_side}"
        else:
            within = low_side if high is None else high_side
        return f"must be {within}, got {value!r}"

    def not_a_choice(self, choices: Sequence[Any], value: Any) -> str:
        return f"{value!r} is not one of: {', '.join(choices)}"


def _unknown_setting(key: Any, known: Collection[str]) -> str:
    return f"unknown setting (known: {', '.join(known)})"


def settings_from_yaml(path: Path, base: SFTSettings) -> tuple[SFTSettings, set[str]]:
    """A YAML file of SFTSettings fields over `base`, and the keys it set; unknown keys, bad types
    and unknown choices are errors, all of them reported at once."""
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise InputError(problems=[Problem(str(path), "expected a mapping of settings", 1)])
    report = Report(str(path))
    # the keys come in any order, so problems read top to bottom; a repeated key's last value
    # wins, as YAML has it
    settings = check(
        data,
        SFTSettings,
        report,
        defaults={f.name: getattr(base, f.name) for f in fields(base)},
        unknown=_unknown_setting,
        duplicates=False,
        order="file",
        wording=_Wording(),
    )
    report.raise_if_any()
    return settings.build(), set(settings.given)


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
