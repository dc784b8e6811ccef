"""Which checkpoints the invariant decoder can run, and where their weights are.

The decoder reads the weights of a transformers model in place (no copy, so a model being
trained is evaluated as it is now). An architecture is one registered function that returns the
per-layer weights of a pre-norm decoder with rotary attention and a gated SiLU MLP, or raises
`Unsupported` naming what does not fit; such a model is decoded by the non-invariant path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from ..models import attention_shape


class Unsupported(Exception):
    """The model has something the invariant decoder does not compute (said in the message)."""


@dataclass(frozen=True)
class Layer:
    input_norm: torch.Tensor
    qkv: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # q, k, v projections [out, hidden]
    qkv_bias: tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]
    q_norm: torch.Tensor | None  # per-head RMSNorm weights (Qwen3), else None
    k_norm: torch.Tensor | None
    o: torch.Tensor
    o_bias: torch.Tensor | None
    post_norm: torch.Tensor
    gate_up: tuple[torch.Tensor, torch.Tensor]
    gate_up_bias: tuple[torch.Tensor | None, torch.Tensor | None]
    down: torch.Tensor
    down_bias: torch.Tensor | None


@dataclass(frozen=True)
class Layout:
    """A decoder-only model as the invariant decoder computes it."""

    embed: torch.Tensor
    layers: tuple[Layer, ...]
    final_norm: torch.Tensor
    head: torch.Tensor
    eps: float
    heads: int
    kv_heads: int
    head_dim: int
    hidden: int
    intermediate: int
    vocab: int
    max_positions: int
    rotary: Any  # the model's own rotary module: cos/sin tables for every rope type it knows

    @property
    def scale(self) -> float:
        return self.head_dim**-0.5

    def cast(self, dtype: torch.dtype) -> Layout:
        """The same model in another dtype (copies of the weights: a float32 model being
        trained is evaluated as its bf16 save would be)."""

        def c(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.detach().to(dtype).contiguous()

        layers = tuple(
            Layer(
                **{
                    f.name: tuple(c(t) for t in v) if isinstance(v, tuple) else c(v)
                    for f, v in ((f, getattr(layer, f.name)) for f in fields(Layer))
                }
            )
            for layer in self.layers
        )
        tied = self.head is self.embed
        embed = c(self.embed)
        return replace(
            self,
            embed=embed,
            layers=layers,
            final_norm=c(self.final_norm),
            head=embed if tied else c(self.head),
        )


ArchitectureFn = Callable[[Any], Layout]
ARCHITECTURES: dict[str, ArchitectureFn] = {}


def architecture(*names: str) -> Callable[[ArchitectureFn], ArchitectureFn]:
    """Register a function that lays out models of these transformers classes."""

    def register(fn: ArchitectureFn) -> ArchitectureFn:
        for name in names:
            ARCHITECTURES[name] = fn
        return fn

    return register


def _bias(linear: Any) -> torch.Tensor | None:
    return linear.bias if getattr(linear, "bias", None) is not None else None


def _contiguous(t: torch.Tensor, what: str) -> torch.Tensor:
    if not t.is_contiguous():
        raise Unsupported(f"{what} is not contiguous in memory")
    return t


def _check_config(cfg: Any) -> None:
    act = getattr(cfg, "hidden_act", "silu")
    if act != "silu":
        raise Unsupported(f"activation {act!r} (the decoder computes SiLU)")
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    if isinstance(rope, dict) and rope.get("rope_type", rope.get("type")) in ("dynamic",):
        raise Unsupported("dynamic rope scaling (its tables change with the sequence length)")
    window = getattr(cfg, "sliding_window", None)
    uses_window = getattr(cfg, "use_sliding_window", window is not None)
    layer_types = getattr(cfg, "layer_types", None) or []
    if (window and uses_window) or any(t != "full_attention" for t in layer_types):
        raise Unsupported("sliding-window attention")
    for name in ("attn_logit_softcapping", "final_logit_softcapping"):
        if getattr(cfg, name, None):
            raise Unsupported(name.replace("_", " "))
    if getattr(cfg, "pretraining_tp", 1) not in (1, None):
        raise Unsupported("tensor-parallel pretraining layout (pretraining_tp > 1)")


@architecture("LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "MistralForCausalLM")
def llama_like(model: Any) -> Layout:
    """Llama, Mistral, Qwen2 (q/k/v biases) and Qwen3 (q/k RMSNorm per head)."""
    cfg = model.config.get_text_config()
    _check_config(cfg)
    body = model.model
    shape = attention_shape(cfg)
    layers = []
    for i, block in enumerate(body.layers):
        attn, mlp = block.self_attn, block.mlp
        q_norm = getattr(attn, "q_norm", None)
        k_norm = getattr(attn, "k_norm", None)
        if type(mlp).__name__.endswith("MoE") or not hasattr(mlp, "gate_proj"):
            raise Unsupported(f"layer {i}: its MLP is not a gated MLP")
        layers.append(
            Layer(
                input_norm=block.input_layernorm.weight,
                qkv=tuple(
                    _contiguous(p.weight, f"layer {i} {n}")
                    for n, p in (("q", attn.q_proj), ("k", attn.k_proj), ("v", attn.v_proj))
                ),
                qkv_bias=(_bias(attn.q_proj), _bias(attn.k_proj), _bias(attn.v_proj)),
                q_norm=q_norm.weight if q_norm is not None else None,
                k_norm=k_norm.weight if k_norm is not None else None,
                o=_contiguous(attn.o_proj.weight, f"layer {i} o"),
                o_bias=_bias(attn.o_proj),
                post_norm=block.post_attention_layernorm.weight,
                gate_up=(
                    _contiguous(mlp.gate_proj.weight, f"layer {i} gate"),
                    _contiguous(mlp.up_proj.weight, f"layer {i} up"),
                ),
                gate_up_bias=(_bias(mlp.gate_proj), _bias(mlp.up_proj)),
                down=_contiguous(mlp.down_proj.weight, f"layer {i} down"),
                down_bias=_bias(mlp.down_proj),
            )
        )
    head = model.get_output_embeddings()
    if _bias(head) is not None:
        raise Unsupported("a bias on the output head")
    norm_eps = getattr(body.norm, "variance_epsilon", getattr(body.norm, "eps", None))
    if norm_eps is None or type(body.norm).__name__.startswith("Gemma"):
        raise Unsupported(f"final norm {type(body.norm).__name__}")
    if shape.head_dim & (shape.head_dim - 1) or shape.heads % shape.kv_heads:
        raise Unsupported(
            f"head width {shape.head_dim} (not a power of two) or {shape.heads} query heads "
            f"over {shape.kv_heads} key/value heads"
        )
    return Layout(
        embed=body.embed_tokens.weight,
        layers=tuple(layers),
        final_norm=body.norm.weight,
        head=_contiguous(head.weight, "output head"),
        eps=float(norm_eps),
        heads=shape.heads,
        kv_heads=shape.kv_heads,
        head_dim=shape.head_dim,
        hidden=cfg.hidden_size,
        intermediate=cfg.intermediate_size,
        vocab=head.weight.shape[0],
        max_positions=getattr(cfg, "max_position_embeddings", 1 << 20),
        rotary=body.rotary_emb,
    )


def layout_of(model: Any) -> Layout:
    """The model's layout, or `Unsupported` with the reason."""
    name = type(model).__name__
    fn = ARCHITECTURES.get(name)
    if fn is None:
        raise Unsupported(f"architecture {name} (supported: {', '.join(sorted(ARCHITECTURES))})")
    return fn(model)
