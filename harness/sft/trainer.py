"""TRL's SFTTrainer assembled from planned settings: the data set in the form TRL masks, the
attention kernel, SFTConfig, and the speed-ups that wrap the built trainer.

Loss on the assistant's tokens only, by one of two routes picked from the chat template:
- the template marks the assistant's text with `{% generation %}` (the embedded model's does):
  chat rows train with `assistant_only_loss=True`, every assistant turn counted;
- otherwise rows become conversational prompt/completion pairs (the last assistant turn is the
  completion) and train with `completion_only_loss=True`.
Either way the turn-end token is inside the trained span, so the tuned model learns to stop.

Apart from `train.py` so that tests and benchmarks build the very trainer a run uses and look at
its batches and steps without a run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from ..logs import say
from ..models import LoadedModel, attention_shape
from . import varlen
from .compiling import compile_layers
from .data import SFTData
from .settings import SFTSettings

if TYPE_CHECKING:
    from trl import SFTConfig, SFTTrainer

LossRoute = Literal["assistant_only_loss", "completion_only_loss"]


class BuiltTrainer(NamedTuple):
    """A trainer ready to train, and the route its loss mask takes (sft.json's `loss_route`)."""

    trainer: SFTTrainer
    route: LossRoute


def make_trainer(
    lm: LoadedModel,
    data: SFTData,
    settings: SFTSettings,
    checkpoints: Path,
    *,
    progress: bool = True,
    log: Callable[[str], None] = say,
) -> BuiltTrainer:
    """An SFTTrainer (the sync-free one under `sync_free`) that trains `lm.model` on `data` with
    `settings` as they are (plan them first: `planning.plan_run`), checkpointing into
    `checkpoints`."""
    quiet_datasets(progress)
    dataset, route = build_dataset(data, lm.tokenizer)
    use_attention(lm, settings)
    config = sft_config(settings, route, checkpoints, lm.device.startswith("cuda"), progress)
    trainer = trainer_class(settings)(
        model=lm.model,
        args=config,
        train_dataset=dataset,
        processing_class=lm.tokenizer,
        peft_config=settings.lora.peft_config() if settings.lora else None,
    )
    speed_up(trainer, settings, lm.device, log)
    return BuiltTrainer(trainer, route)


def quiet_datasets(progress: bool) -> None:
    """No dataset cache files under the user's cache folder, and no fingerprint hashing of TRL's
    map functions (which fails to pickle under Python 3.12 with pyarrow 26); progress bars only
    with `progress`."""
    import datasets

    datasets.disable_caching()
    if not progress:
        datasets.disable_progress_bars()


def uses_generation_marks(tokenizer: Any) -> bool:
    template = tokenizer.chat_template or ""
    return "generation" in template and "endgeneration" in template


def build_dataset(data: SFTData, tokenizer: Any) -> tuple[Any, LossRoute]:
    """A datasets.Dataset in the form TRL masks correctly for this template, and the route.

    Its fingerprint is the data's own hash: datasets would otherwise hash the Arrow table with
    dill, which fails under Python 3.12 on pyarrow's MonthDayNano class.
    """
    from datasets import Dataset
    from datasets.table import InMemoryTable

    route: LossRoute
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


def use_attention(lm: LoadedModel, settings: SFTSettings) -> None:
    """Switch the model to the attention kernel the settings train with (registering harness's
    varlen kernel first)."""
    if not settings.attention:
        return
    if settings.attention == varlen.ATTENTION:
        varlen.register()
        if settings.compile:  # lets the compiled layers trace the kernel (CUDA only)
            varlen.settle_gqa(lm.device, attention_shape(lm.model.config).head_dim)
    lm.model.set_attn_implementation(settings.attention)


def sft_config(
    settings: SFTSettings, route: LossRoute, checkpoints: Path, on_gpu: bool, progress: bool
) -> SFTConfig:
    """TRL's SFTConfig for these settings."""
    import torch
    from trl import SFTConfig

    # flex attention is compiled; one padded shape per step compiles it once
    fixed_shape = settings.packing and settings.attention == "flex_attention"
    # transformers from 5.24 calls it activation_checkpointing, earlier 5.x gradient_checkpointing
    checkpointing = (
        "activation_checkpointing"
        if "activation_checkpointing" in SFTConfig.__dataclass_fields__
        else "gradient_checkpointing"
    )
    return SFTConfig(
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


def trainer_class(settings: SFTSettings) -> type[SFTTrainer]:
    """TRL's SFTTrainer, or its sync-free subclass (which checks the TRL it runs on)."""
    if settings.sync_free:
        from .syncfree import SyncFreeSFTTrainer

        return SyncFreeSFTTrainer
    from trl import SFTTrainer

    return SFTTrainer


def speed_up(
    trainer: SFTTrainer, settings: SFTSettings, device: str, log: Callable[[str], None] = say
) -> None:
    """What goes on the built trainer: the sync-free head's compiled tile (CUDA), and the
    decoder layers compiled in place."""
    if settings.sync_free and settings.compile and device.startswith("cuda"):
        from .head import compiled_tile

        trainer.head_tile = compiled_tile()
    if settings.compile:
        compile_layers(trainer.model, log=log)
