"""A training step that never waits for the GPU: TRL's SFTTrainer without host syncs.

TRL's SFT loss selects the labelled positions with a boolean mask and reads three metrics back
with `.item()` every step; Trainer checks every step's loss for nan/inf the same way. Each wait
drains the GPU's queue, and the GPU then idles while Python starts the next piece of work: on a
Qwen3-0.6B step of 32k tokens on an H200 these gaps were ~50 of 339 ms (benchmarks/RESULTS.md).
Here the loss goes through `head.FusedHead` on the positions the collator lists, entropy and
token accuracy stay on the GPU and are read when Trainer logs, and so is the count of trained
tokens across processes (Trainer's nan check is off: `trainer.sft_config`).

The loss, its gradients and the logged metrics are TRL's (tests/test_head.py compares them).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from trl import SFTTrainer

from ..errors import HarnessError
from .head import EAGER, POSITIONS, TARGETS, TOKENS, FusedHead, LabelledPositions, Tile


class HiddenStates:
    """Keeps the decoder's output from the forward pass Trainer runs through its wrappers (DDP
    hooks gradients up in its own forward), so the head can take it instead of the logits."""

    def __init__(self, decoder: torch.nn.Module) -> None:
        self.value: torch.Tensor | None = None
        self.armed = False
        self.handle = decoder.register_forward_hook(self._keep)

    def _keep(self, module: Any, args: Any, output: Any) -> None:
        if self.armed:
            self.value = output[0] if isinstance(output, tuple) else output.last_hidden_state

    @contextmanager
    def capture(self) -> Iterator[None]:
        """Keep what the decoder outputs inside the block (only there: generation, evaluation
        and a failed forward keep nothing)."""
        self.armed, self.value = True, None
        try:
            yield
        finally:
            self.armed = False

    def take(self) -> torch.Tensor:
        value, self.value = self.value, None
        if value is None:
            raise RuntimeError("the decoder's forward hook saw no hidden states")
        return value


# Config fields by which some models scale or cap their logits (Gemma-2, Granite, Cohere, ...):
# TRL's head applies them, FusedHead does not, so such models take TRL's path.
LOGIT_TRANSFORMS = (
    "final_logit_softcapping",
    "logit_scale",
    "output_multiplier",
    "lm_head_multiplier",
    "logits_scaling",
)


def plain_head(model: Any) -> bool:
    """Whether the model's logits are just `hidden @ weight.T` (no bias, scaling, capping or
    sharded weight): what FusedHead computes."""
    config = model.config.get_text_config()
    if any(getattr(config, name, None) not in (None, 1, 1.0) for name in LOGIT_TRANSFORMS):
        return False
    head = model.get_output_embeddings()
    return getattr(head, "bias", None) is None and type(head.weight) is torch.nn.Parameter


# What this trainer takes from TRL's SFTTrainer beyond its public interface: the private
# metric store and token count it fills for TRL's own `log`, and the switches that send a step
# to TRL's `compute_loss`. pyproject.toml pins the TRL versions the tests cover; a TRL that moves
# any of these fails here, loudly, instead of training or logging differently.
TRL_ATTRIBUTES = (
    "_metrics",
    "_total_train_tokens",
    "_tp_size",
    "aux_loss_enabled",
    "compute_loss_func",
    "label_smoother",
    "get_tp_size",
)
TRL_SIGNATURES = {
    "compute_loss": ["self", "model", "inputs", "return_outputs", "num_items_in_batch"],
    "log": ["self", "logs", "start_time"],
}


def _moved_signatures() -> list[str]:
    import inspect

    moved = []
    for name, params in TRL_SIGNATURES.items():
        found = list(inspect.signature(getattr(SFTTrainer, name)).parameters)
        if found != params:
            moved.append(f"SFTTrainer.{name}({', '.join(params)}), found ({', '.join(found)})")
    return moved


def _moved_attributes(trainer: Any) -> list[str]:
    moved = [a for a in TRL_ATTRIBUTES if not hasattr(trainer, a)]
    if not moved and not isinstance(trainer._metrics.get("train"), dict):
        moved.append("_metrics['train'] as a dict of lists")
    return moved


def _refuse(moved: list[str]) -> None:
    import trl

    if moved:
        raise HarnessError(
            f"TRL {trl.__version__} changed what harness's sync-free SFT step relies on: "
            f"{'; '.join(moved)}. Install the TRL version pyproject.toml names, or set "
            "sync_free: false in the SFT config"
        )


def check_trl_contract(trainer: Any | None = None) -> None:
    """Refuse a TRL whose SFTTrainer no longer has what the sync-free step overrides (checked
    on the class, before TRL prepares any data) or fills (on a built `trainer`)."""
    _refuse(_moved_signatures() + ([] if trainer is None else _moved_attributes(trainer)))


class SyncFreeSFTTrainer(SFTTrainer):
    """SFTTrainer whose step leaves the GPU's queue full: the loss through `FusedHead` on the
    collator's label positions, metrics read at logging. Cases this does not cover go to TRL's
    own `compute_loss`: outputs requested, MoE auxiliary loss, other loss types or loss
    functions, label smoothing, fp16 (gradient scaling would come after the head's gradients are
    made), and heads that are not a plain product (`plain_head`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        check_trl_contract()  # the overridden methods: before TRL tokenizes the data
        super().__init__(*args, **kwargs)
        check_trl_contract(self)  # the private fields, which exist once TRL has built them
        self.data_collator = LabelledPositions(self.data_collator)
        self._hidden = HiddenStates(self._causal_lm().get_decoder())
        self._plain_head = plain_head(self._causal_lm())
        self.head_tile: Tile = EAGER  # make_trainer sets the compiled one on CUDA
        self._pending_tokens = 0  # this process's trained tokens not yet summed across processes

    def _causal_lm(self) -> Any:
        get_base = getattr(self.model, "get_base_model", None)  # PEFT
        return get_base() if callable(get_base) else self.model

    def _takes_fast_path(self, return_outputs: bool) -> bool:
        return self._plain_head and not (
            return_outputs
            or self.aux_loss_enabled
            or self.compute_loss_func is not None
            or self.label_smoother is not None
            or self.args.loss_type != "nll"
            or self.args.fp16
        )

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        positions, targets = inputs.pop(POSITIONS), inputs.pop(TARGETS)
        tokens = inputs.pop(TOKENS)
        if not self._takes_fast_path(return_outputs):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        forward = {k: v for k, v in inputs.items() if k != "labels"}
        no_logits = positions.new_empty(0)  # the LM head runs in FusedHead, on labelled tokens
        with self._hidden.capture():
            model(**forward, use_cache=False, logits_to_keep=no_logits)
        hidden = self._hidden.take()
        hidden = hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions)
        weight = self._causal_lm().get_output_embeddings().weight
        half = torch.bfloat16 if self.args.bf16 else None
        nll, entropy, correct = FusedHead.apply(
            hidden, weight, targets, half, self.head_tile, torch.is_grad_enabled()
        )
        labelled = positions.numel()
        # clamped as TRL's: a step without trainable tokens gives a zero loss, not 0 / 0
        if num_items_in_batch is None:
            loss = nll / max(labelled, 1)
        else:  # a device tensor stays there (no copy, no wait); an int is a CPU scalar
            loss = nll / torch.as_tensor(num_items_in_batch).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        sums = torch.stack([entropy, correct.float(), torch.full_like(entropy, labelled)])
        if self.accelerator.num_processes > 1:
            sums = self.accelerator.gather_for_metrics(sums[None]).sum(0)
        valid = sums[2].clamp(min=1)
        self._metrics[mode]["entropy"].append(sums[0] / valid)
        self._metrics[mode]["mean_token_accuracy"].append(sums[1] / valid)
        if mode == "train":
            if self.accelerator.num_processes > 1:
                self._pending_tokens += tokens
            else:
                self._total_train_tokens += tokens // self._tp_size
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        if self.accelerator.num_processes > 1:  # one gather per log, on every rank alike
            local = torch.tensor([self._pending_tokens], device=self.args.device)
            self._total_train_tokens += int(self.accelerator.gather(local).sum()) // self._tp_size
            self._pending_tokens = 0
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        for key, values in self._metrics[mode].items():
            if values and isinstance(values[0], torch.Tensor):
                self._metrics[mode][key] = [float(torch.stack(values).mean())]
        super().log(logs, start_time)
