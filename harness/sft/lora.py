"""LoRA: train low-rank adapters (peft, through TRL's `peft_config`) instead of every weight.

The defaults adapt every linear layer of the attention and the MLP, the names Qwen3 and Llama
shapes share. LoRA learns well at about ten times full fine-tuning's learning rate, so the
preset's rate is scaled by `lr_scale` unless the learning rate was chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from ..schema import At, Expect, NonEmpty, Positive, Range, check, unknown_key_listing

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
AboveZero = Annotated[float, Positive(), Expect("a number above 0")]
Dropout = Annotated[float, Range(0, 1, high_open=True), Expect("a number from 0 to below 1")]
Names = Annotated[tuple[str, ...], NonEmpty(), Expect("a list of names")]


@dataclass(frozen=True)
class LoraSettings:
    """The `lora:` section of a settings file; each field is a key."""

    r: Annotated[int, Range(1), Expect("an integer >= 1")] = 16
    alpha: AboveZero = 32.0
    dropout: Dropout = 0.0
    target_modules: Names = DEFAULT_TARGETS  # or ("all-linear",)
    lr_scale: AboveZero = 10.0

    def peft_config(self) -> Any:
        from peft import LoraConfig

        targets = self.target_modules
        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=targets[0] if targets == ("all-linear",) else list(targets),
            task_type="CAUSAL_LM",
        )


def lora_from_yaml(value: Any, at: At) -> LoraSettings | None:
    """`lora: true` (the defaults), false or null (none), or a mapping of LoraSettings fields;
    None when invalid. A parser for the settings file's `lora` field (schema.Via)."""
    if value is True:
        return LoraSettings()
    if value is False or value is None:
        return None
    if not isinstance(value, dict):
        at.add(f"expected true or a mapping, got {value!r}")
        return None
    # as in the rest of the settings file: problems top to bottom, a repeated key's last value
    lora = check(
        value,
        LoraSettings,
        at.report,
        at.field,
        unknown=unknown_key_listing,
        duplicates=False,
        order="file",
    )
    return lora.build() if lora.ok else None
