"""What one run trains with: the settings fitted to the processes, the machine, the data and
the GPU's memory, decided once before the trainer is built.

`settings.py` holds what was asked for; the steps here adapt it to facts only known at run
time, each a pure function of frozen settings (so each is tested alone), and `plan_run` applies
them in order into a `Plan`. sft.json records the plan's settings: what the run really used.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ..errors import InputError
from ..logs import say
from ..models import LoadedModel
from .data import SFTData
from .memory import fit_to_card
from .settings import SFTSettings


@dataclass(frozen=True)
class Plan:
    """A run's settings as planned, the rows it trains on (a seeded sample under `max_rows`)
    and the processes that share each optimizer step."""

    settings: SFTSettings
    data: SFTData
    processes: int


def plan_run(
    lm: LoadedModel, data: SFTData, settings: SFTSettings, log: Callable[[str], None] = say
) -> Plan:
    """Adapt `settings` to this run: split the step over the processes, drop what the device
    cannot run, sample the rows, size packed steps to the data, fit micro-batches to the GPU."""
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    settings = for_device(for_processes(settings, processes, log), lm.device, log)
    data = sample_rows(data, settings, log)
    if sized_to_data(settings):
        settings = plan_steps(settings, row_lengths(data, lm.tokenizer), processes, log)
    if settings.memory_fraction and lm.device.startswith("cuda"):
        card = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"  # where the Trainer moves the model
        settings = fit_to_card(settings, lm.model.config, lm.n_params, card, processes, log)
    return Plan(settings, data, processes)


def sample_rows(data: SFTData, settings: SFTSettings, log: Callable[[str], None] = say) -> SFTData:
    """A seeded sample of `max_rows` rows where the data has more, else the data as it is."""
    if not settings.max_rows or len(data) <= settings.max_rows:
        return data
    data = data.sample(settings.max_rows, settings.seed)
    log(f"training on a seeded sample of {len(data)} rows (max_rows)")
    return data


def sized_to_data(settings: SFTSettings) -> bool:
    """Whether `plan_steps` has anything to do (it needs every row tokenized to know)."""
    return settings.packing and bool(
        settings.min_steps or settings.lr_reference_rows or settings.warmup_max_fraction
    )


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
