"""A model's attention geometry, read from its config: KV-cache sizing, the SFT memory estimate
and the invariant decoder's layout all need it, whatever the architecture names it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AttentionShape:
    heads: int
    kv_heads: int
    head_dim: int


def attention_shape(config: Any) -> AttentionShape:
    """Query heads, key/value heads and head width of a model's text config, with the defaults
    configs leave implicit (no grouping; hidden size split evenly over the heads)."""
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    heads = config.num_attention_heads
    return AttentionShape(
        heads,
        getattr(config, "num_key_value_heads", None) or heads,
        getattr(config, "head_dim", None) or config.hidden_size // heads,
    )
