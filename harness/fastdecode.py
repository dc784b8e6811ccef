"""Greedy decoding with a static KV cache, the decode step replayed as a CUDA graph on a GPU.

transformers' `generate` grows its cache by concatenation and pays Python and mask-building
overhead on every step; at batch 1,024 on an H100 that, not the GPU, sets its speed. Here the
cache is allocated once (prompt + new tokens), the attention mask is a fixed 4D boolean tensor
computed on the device from the step counter, and on CUDA the whole step (forward, argmax,
counter updates) is captured once and replayed. Greedy outputs are the same function of the
prompt: on CPU in float32 they equal `generate`'s token for token (tests/test_fastdecode.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

CHECK_EVERY = 16  # steps between checks (one host sync) for "every row has stopped"
GQA_SDPA = "harness_gqa_sdpa"


def _gqa_sdpa(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """SDPA that lets the kernel share each KV head among its query heads.

    transformers' own SDPA path copies the KV cache out to every query head (repeat_kv) whenever
    a mask is given: at batch 1,024 on an H100 that copy was a quarter of each decode step.
    """
    out = torch.nn.functional.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask,
        scale=scaling,
        enable_gqa=key.shape[1] != query.shape[1],
    )
    return out.transpose(1, 2).contiguous(), None


def _register_attention() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(GQA_SDPA, _gqa_sdpa)


def _masks(attention_mask: torch.Tensor, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Key-side validity (real prompt tokens and every generated slot) and positions."""
    batch, prompt = attention_mask.shape
    valid = torch.ones(batch, total, dtype=torch.bool, device=attention_mask.device)
    valid[:, :prompt] = attention_mask.bool()
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    return valid, positions


@contextmanager
def _shared_kv_heads(model: Any) -> Iterator[None]:
    """Swap transformers' SDPA for the GQA-aware one while decoding (only where SDPA was used)."""
    impl = getattr(model.config, "_attn_implementation", None)
    if impl != "sdpa":
        yield
        return
    _register_attention()
    model.set_attn_implementation(GQA_SDPA)
    try:
        yield
    finally:
        model.set_attn_implementation(impl)


@torch.inference_mode()
def greedy_static(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    stop_ids: list[int],
    *,
    cuda_graph: bool | None = None,
    rehearse: bool = False,
    with_margins: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Generated ids [batch, <= max_new_tokens] (rows run on past their stop token; cut later)
    and, with `with_margins`, each step's gap between the best and second-best logit."""
    with _shared_kv_heads(model):
        from transformers import StaticCache

        device = input_ids.device
        batch, prompt = input_ids.shape
        total = prompt + max_new_tokens
        cuda_graph = device.type == "cuda" if cuda_graph is None else cuda_graph
        cache = StaticCache(config=model.config, max_cache_len=total)
        # transformers renamed the argument (past_key_values -> cache) in 5.2x; accept either
        cache_arg = (
            "cache"
            if "cache" in inspect.signature(model.forward).parameters
            else ("past_key_values")
        )
        valid, positions = _masks(attention_mask, total)
        slots = torch.arange(total, device=device)

        # prefill: causal over the prompt, padding masked, nothing beyond the prompt
        causal = slots[None, :] <= torch.arange(prompt, device=device)[:, None]  # [prompt, total]
        mask = (causal[None] & valid[:, None, :])[:, None]  # [batch, 1, prompt, total]
        additive = getattr(model.config, "_attn_implementation", "sdpa") == "eager"
        as_mask = (
            (
                lambda m: torch.zeros(m.shape, dtype=model.dtype, device=device).masked_fill(
                    ~m, torch.finfo(model.dtype).min
                )
            )
            if additive
            else (lambda m: m)
        )
        out = model(
            input_ids=input_ids,
            attention_mask=as_mask(mask),
            position_ids=positions,
            **{cache_arg: cache},
            cache_position=torch.arange(prompt, device=device),
            use_cache=True,
            logits_to_keep=1,
        )
        tokens = torch.empty(batch, max_new_tokens, dtype=torch.long, device=device)
        margins = torch.zeros(batch, max_new_tokens, device=device) if with_margins else None

        def pick(logits: torch.Tensor, at: torch.Tensor) -> None:
            tokens.scatter_(1, at, logits.argmax(-1)[:, None])
            if margins is not None:
                top = logits.float().topk(2, dim=-1).values
                margins.scatter_(1, at, (top[:, :1] - top[:, 1:]))

        pick(out.logits[:, -1], torch.zeros(batch, 1, dtype=torch.long, device=device))
        if max_new_tokens == 1:
            return tokens, margins

        stops = torch.tensor(sorted(set(stop_ids)) or [-1], device=device)
        # static buffers the step reads and advances in place (so a CUDA graph can replay it)
        step = torch.zeros((), dtype=torch.long, device=device)  # index of the token being fed
        position = positions[:, -1:] + 1
        cache_position = torch.full((1,), prompt, dtype=torch.long, device=device)

        def decode_step() -> None:
            current = tokens.gather(1, step.view(1, 1).expand(batch, 1))
            seen = valid[:, None, None, :] & (slots <= cache_position)[None, None, None, :]
            logits = model(
                input_ids=current,
                attention_mask=as_mask(seen),
                position_ids=position,
                **{cache_arg: cache},
                cache_position=cache_position,
                use_cache=True,
            ).logits[:, -1]
            pick(logits, (step + 1).view(1, 1).expand(batch, 1))
            step.add_(1)
            position.add_(1)
            cache_position.add_(1)

        run = decode_step
        if cuda_graph or rehearse:  # rehearse: the graph path's warm-up and reset, without a graph
            # the warm-up steps advance every counter, ours and the cache layers' own write
            # positions (transformers keeps one per layer); all are put back before the replay
            counters = [step, position, cache_position] + [
                layer.cumulative_length
                for layer in getattr(cache, "layers", [])
                if isinstance(getattr(layer, "cumulative_length", None), torch.Tensor)
            ]
            saved = [c.clone() for c in counters]
            if cuda_graph:
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(2):  # warm-up outside the graph (allocations, autotuning)
                        decode_step()
                torch.cuda.current_stream().wait_stream(side)
            else:
                for _ in range(2):
                    decode_step()
            for buf, value in zip(counters, saved, strict=True):
                buf.copy_(value)
            if cuda_graph:
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    decode_step()
                for buf, value in zip(counters, saved, strict=True):
                    buf.copy_(value)
                run = graph.replay

        done = 1
        while done < max_new_tokens:
            run()
            done += 1
            if done % CHECK_EVERY == 0 and bool(torch.isin(tokens[:, :done], stops).any(-1).all()):
                break
        return tokens[:, :done], None if margins is None else margins[:, :done]
