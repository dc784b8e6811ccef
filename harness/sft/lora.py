"""LoRA: train low-rank adapters (peft, through TRL's `peft_config`) instead of every weight.

The defaults adapt every linear layer of the attention and the MLP, the names Qwen3 and Llama
shapes share. LoRA learns well at about ten times full fine-tuning's learning rate, so the
preset's rate is scaled by `lr_scale` unless the learning rate was chosen.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ..errors import Problem

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraSettings:
    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = DEFAULT_TARGETS  # or ("all-linear",)
    lr_scale: float = 10.0

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


def lora_from_yaml(value: Any, file: str, line: int | None, problems: list[Problem]) -> Any:
    """`lora: true` (the defaults) or a mapping of LoraSettings fields; None when invalid."""
    if value is True:
        return LoraSettings()
    if value is False or value is None:
        return None
    if not isinstance(value, dict):
        problems.append(Problem(file, f"expected true or a mapping, got {value!r}", line, "lora"))
        return None
    known = {f.name for f in fields(LoraSettings)}
    values: dict[str, Any] = {}
    before = len(problems)
    for key, raw in value.items():
        where = f"lora.{key}"
        at = value.line_of(key) if hasattr(value, "line_of") else line
        if key not in known:
            problems.append(Problem(file, f"unknown key (known: {', '.join(known)})", at, where))
        elif key == "target_modules":
            if not (isinstance(raw, list) and raw and all(isinstance(m, str) for m in raw)):
                problems.append(Problem(file, f"expected a list of names, got {raw!r}", at, where))
            else:
                values[key] = tuple(raw)
        elif key == "r":
            if not isinstance(raw, int) or isinstance(raw, bool) or raw < 1:
                problems.append(Problem(file, f"expected an integer >= 1, got {raw!r}", at, where))
            else:
                values[key] = raw
        else:
            number = isinstance(raw, int | float) and not isinstance(raw, bool)
            low, high = (0.0, 1.0) if key == "dropout" else (0.0, None)
            if (
                not number
                or raw < low
                or (high is not None and raw >= high)
                or (key != "dropout" and raw <= 0)
            ):
                want = "a number from 0 to below 1" if key == "dropout" else "a number above 0"
                problems.append(Problem(file, f"expected {want}, got {raw!r}", at, where))
            else:
                values[key] = float(raw)
    return LoraSettings(**values) if len(problems) == before else None
