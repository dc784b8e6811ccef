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
from collections.abc import Callable, Iterator
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


def _cache_argument(model: Any) -> str:
    """The forward's keyword for the KV cache: `cache` in transformers 5.2x, else
    `past_key_values`."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _mask_format(model: Any, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """Boolean attention masks as the model's attention takes them: eager adds a float mask
    (dtype minimum where masked); SDPA and the GQA-aware SDPA take the booleans."""
    if getattr(model.config, "_attn_implementation", "sdpa") != "eager":
        return lambda m: m
    return lambda m: torch.zeros(m.shape, dtype=model.dtype, device=device).masked_fill(
        ~m, torch.finfo(model.dtype).min
    )


class _StaticDecode:
    """One batch's greedy decode over buffers allocated once: the KV cache, the output tokens
    (and margins), and the counters the step reads and advances in place, so that a CUDA graph
    captured from one step replays every later one."""

    def __init__(
        self,
        model: Any,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        max_new_tokens: int,
        with_margins: bool,
    ) -> None:
        from transformers import StaticCache

        device = input_ids.device
        batch, prompt = input_ids.shape
        total = prompt + max_new_tokens
        self.model, self.input_ids, self.batch, self.prompt = model, input_ids, batch, prompt
        self.cache = StaticCache(config=model.config, max_cache_len=total)
        self.cache_kwargs = {_cache_argument(model): self.cache}
        self.valid, self.positions = _masks(attention_mask, total)
        self.slots = torch.arange(total, device=device)
        self.as_mask = _mask_format(model, device)
        self.tokens = torch.empty(batch, max_new_tokens, dtype=torch.long, device=device)
        self.margins = torch.zeros(batch, max_new_tokens, device=device) if with_margins else None
        self.step = torch.zeros((), dtype=torch.long, device=device)  # index of the token fed
        self.position = self.positions[:, -1:] + 1
        self.cache_position = torch.full((1,), prompt, dtype=torch.long, device=device)

    def pick(self, logits: torch.Tensor, at: torch.Tensor) -> None:
        """Write the greedy token (and its margin) of each row at column `at`."""
        self.tokens.scatter_(1, at, logits.argmax(-1)[:, None])
        if self.margins is not None:
            top = logits.float().topk(2, dim=-1).values
            self.margins.scatter_(1, at, (top[:, :1] - top[:, 1:]))

    def prefill(self) -> None:
        """The prompt into the cache, causal with padding masked, and the first token picked."""
        device = self.input_ids.device
        causal = self.slots[None, :] <= torch.arange(self.prompt, device=device)[:, None]
        mask = (causal[None] & self.valid[:, None, :])[:, None]  # [batch, 1, prompt, total]
        out = self.model(
            input_ids=self.input_ids,
            attention_mask=self.as_mask(mask),
            position_ids=self.positions,
            **self.cache_kwargs,
            cache_position=torch.arange(self.prompt, device=device),
            use_cache=True,
            logits_to_keep=1,
        )
        self.pick(out.logits[:, -1], torch.zeros(self.batch, 1, dtype=torch.long, device=device))

    def decode_step(self) -> None:
        """Feed the token at `step`, pick the next, advance every counter by one."""
        current = self.tokens.gather(1, self.step.view(1, 1).expand(self.batch, 1))
        written = self.slots <= self.cache_position  # slots filled so far and this step's
        seen = self.valid[:, None, None, :] & written[None, None, None, :]
        logits = self.model(
            input_ids=current,
            attention_mask=self.as_mask(seen),
            position_ids=self.position,
            **self.cache_kwargs,
            cache_position=self.cache_position,
            use_cache=True,
        ).logits[:, -1]
        self.pick(logits, (self.step + 1).view(1, 1).expand(self.batch, 1))
        self.step.add_(1)
        self.position.add_(1)
        self.cache_position.add_(1)

    def counters(self) -> list[torch.Tensor]:
        """Every tensor a step advances: ours and the cache layers' own write positions
        (transformers keeps one per layer)."""
        return [self.step, self.position, self.cache_position] + [
            layer.cumulative_length
            for layer in getattr(self.cache, "layers", [])
            if isinstance(getattr(layer, "cumulative_length", None), torch.Tensor)
        ]

    def result(self, done: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        margins = None if self.margins is None else self.margins[:, :done]
        return self.tokens[:, :done], margins


def _warm_up(decode: _StaticDecode, cuda_graph: bool) -> None:
    """Two steps before capture (allocations, autotuning), on a side stream under `cuda_graph`,
    then every counter put back: the steps that follow start where they would without them."""
    counters = decode.counters()
    saved = [c.clone() for c in counters]
    if cuda_graph:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                decode.decode_step()
        torch.cuda.current_stream().wait_stream(side)
    else:
        for _ in range(2):
            decode.decode_step()
    _restore(counters, saved)


def _captured(decode: _StaticDecode) -> Callable[[], None]:
    """The step captured as a CUDA graph (capturing runs it once: the counters are put back);
    returns its replay."""
    counters = decode.counters()
    saved = [c.clone() for c in counters]
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        decode.decode_step()
    _restore(counters, saved)
    return graph.replay


def _restore(counters: list[torch.Tensor], saved: list[torch.Tensor]) -> None:
    for buf, value in zip(counters, saved, strict=True):
        buf.copy_(value)


def _decode_until_stopped(
    run: Callable[[], None], tokens: torch.Tensor, stop_ids: list[int], max_new_tokens: int
) -> int:
    """Run steps until `max_new_tokens` tokens or until every row holds a stop token (looked at
    every CHECK_EVERY steps: one host sync each); returns the tokens made."""
    stops = torch.tensor(sorted(set(stop_ids)) or [-1], device=tokens.device)
    done = 1
    while done < max_new_tokens:
        run()
        done += 1
        if done % CHECK_EVERY == 0 and bool(torch.isin(tokens[:, :done], stops).any(-1).all()):
            break
    return done


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
    and, with `with_margins`, each step's gap between the best and second-best logit.

    `cuda_graph` (default: on CUDA) replays the step as a CUDA graph; `rehearse` runs the graph
    path's warm-up and reset without a graph, so that a CPU can check they change nothing."""
    with _shared_kv_heads(model):
        cuda_graph = input_ids.device.type == "cuda" if cuda_graph is None else cuda_graph
        decode = _StaticDecode(model, input_ids, attention_mask, max_new_tokens, with_margins)
        decode.prefill()
        if max_new_tokens == 1:
            return decode.result(1)
        cuda_graph &= max_new_tokens > 2  # the warm-up's two steps need room for two tokens
        if cuda_graph or (rehearse and max_new_tokens > 2):
            _warm_up(decode, cuda_graph)
        run = _captured(decode) if cuda_graph else decode.decode_step
        return decode.result(_decode_until_stopped(run, decode.tokens, stop_ids, max_new_tokens))
