"""The batch-invariant decoder: same greedy function as transformers, the same tokens at every
batch size. On a machine without a GPU the Triton kernels run in Triton's interpreter (float32;
conftest sets TRITON_INTERPRET), which checks their indexing, masking and reductions; on a GPU
they run for real, in bfloat16 too."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from harness.chat import render
from harness.errors import InputError
from harness.invariant import InvariantDecoder, Unsupported, layout_of
from harness.invariant import reference as ref
from harness.invariant.tiles import DECODE, PREFILL
from harness.models import ModelSpec, load
from harness.runner import Request, choose_decoder, generate

from .conftest import PROJECT
from .test_runner import PROMPTS, assert_close_margins, without_margins

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"


def _triton_or_skip():
    try:
        import triton  # noqa: F401
    except ImportError:
        if os.environ.get("HARNESS_REQUIRE_TRITON"):
            raise
        pytest.skip("triton is not installed (.ci/run installs it)")
    from harness.invariant import kernels

    return kernels


SHAPE = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, head_dim=16)


def tiny(arch: str, vocab: int = 384, seed: int = 0):
    """Random tiny models of each family the decoder reads: Qwen3 (q/k norms), Llama (a
    query/key-value group of 3), Qwen2 (q/k/v biases)."""
    torch.manual_seed(seed)
    if arch == "qwen3":
        cfg = Qwen3Config(vocab_size=vocab, num_attention_heads=4, num_key_value_heads=2, **SHAPE)
        model = Qwen3ForCausalLM(cfg)
    elif arch == "llama":
        shape = {**SHAPE, "hidden_size": 96}  # 6 heads of 16
        cfg = LlamaConfig(vocab_size=vocab, num_attention_heads=6, num_key_value_heads=2, **shape)
        model = LlamaForCausalLM(cfg)
    else:
        cfg = Qwen2Config(vocab_size=vocab, num_attention_heads=4, num_key_value_heads=4, **SHAPE)
        model = Qwen2ForCausalLM(cfg)
        with torch.no_grad():  # random, visible biases (transformers initialises them to 0)
            for layer in model.model.layers:
                for proj in (
                    layer.self_attn.q_proj,
                    layer.self_attn.k_proj,
                    layer.self_attn.v_proj,
                ):
                    proj.bias.normal_(0, 0.5)
    return model.eval()


def prompts(n: int, vocab: int = 384, seed: int = 1, longest: int = 14) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, longest + 1, (n,), generator=g)
    return [torch.randint(0, vocab, (int(k),), generator=g).tolist() for k in lengths]


def hf_alone(model, ids: list[int], steps: int) -> list[int]:
    """transformers' own greedy decoding of one unpadded prompt."""
    with torch.inference_mode():
        out = model.generate(
            input_ids=torch.tensor([ids]),
            max_new_tokens=steps,
            min_new_tokens=steps,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )
    return out[0, len(ids) :].tolist()


# --------------------------------------------------------------------------- the function


@pytest.mark.parametrize("arch", ["qwen3", "llama", "qwen2"])
def test_reference_decoder_computes_transformers_greedy(arch):
    model = tiny(arch)
    batch = prompts(7)
    out = InvariantDecoder(model, backend="torch").generate(batch, 10, [])
    assert out.tokens.shape == (7, 10)
    for row, ids in enumerate(batch):
        assert out.tokens[row].tolist() == hf_alone(model, ids, 10), (arch, row)
    assert (out.margins >= 0).all()


def _ends(tokens: list[int], limit: int, stops: set[int]) -> list[int]:
    """A row's output as the runner reads it: up to and with its first stop token, or its limit."""
    tokens = tokens[:limit]
    end = next((i for i, t in enumerate(tokens) if t in stops), None)
    return tokens if end is None else tokens[: end + 1]


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_rows_leave_the_batch_at_their_own_limit_or_stop_with_the_tokens_they_get_alone(
    backend, monkeypatch
):
    """Per-row limits; rows that stop or reach their limit leave the batch (checks every 2 steps,
    a shrink whenever a row has left), and every row's output is what it gets decoded alone."""
    if backend == "triton":
        _triton_or_skip()
    from harness.invariant import decoder as dec

    monkeypatch.setattr(dec, "CHECK_EVERY", 2)
    monkeypatch.setattr(dec, "RETIRE_AT", 0.99)
    monkeypatch.setattr(dec, "RETIRE_MIN_STEPS", 1)
    shrinks = []
    retire = dec._Batch.retire
    monkeypatch.setattr(
        dec._Batch,
        "retire",
        lambda self, keep, cache: (shrinks.append(len(keep)), retire(self, keep, cache)),
    )
    model = tiny("qwen3").to(DEVICE)
    batch = prompts(9, seed=5)
    limits = [3, 17, 5, 12, 1, 9, 17, 4, 8]
    decoder = InvariantDecoder(model, backend=backend)
    free = decoder.generate(batch, 17, [], cuda_graph=False).tokens.tolist()
    stops = sorted({free[0][6], free[3][2]})  # two rows stop early, at tokens of their own
    out = decoder.generate(batch, limits, stops, pad_id=7, cuda_graph=False)
    assert shrinks and shrinks == sorted(shrinks, reverse=True) and shrinks[-1] < len(batch)
    assert out.tokens.shape[1] <= 17
    for row, (ids, limit) in enumerate(zip(batch, limits, strict=True)):
        alone = decoder.generate([ids], limit, stops, cuda_graph=False).tokens[0].tolist()
        got = out.tokens[row].tolist()
        assert _ends(got, limit, set(stops)) == _ends(alone, limit, set(stops)), row
        assert _ends(got, limit, set(stops)) == _ends(free[row], limit, set(stops)), row
        ended = len(_ends(got, limit, set(stops)))
        assert got[ended:].count(7) >= len(got) - ended - 2, row  # pad once it has left
    if CUDA:  # the same with a CUDA graph recaptured at every shrink
        graphed = decoder.generate(batch, limits, stops, pad_id=7, cuda_graph=True)
        for row, limit in enumerate(limits):
            assert _ends(graphed.tokens[row].tolist(), limit, set(stops)) == _ends(
                out.tokens[row].tolist(), limit, set(stops)
            )


def test_runner_invariant_decoder_equals_generate_on_cpu(chat_model_dir):
    lm = load(ModelSpec("chat", "path", str(chat_model_dir)), device="cpu", dtype="float32")
    reqs = [Request(str(i), render(lm.tokenizer, p), 20) for i, p in enumerate(PROMPTS)]
    hf = {g.id: g for b in generate(lm, reqs, batch_size=5, decoder="hf") for g in b}
    inv = {g.id: g for b in generate(lm, reqs, batch_size=5, decoder="invariant") for g in b}
    assert without_margins(inv) == without_margins(hf)
    assert_close_margins(inv, hf)
    assert {g.finish_reason for g in inv.values()} == {"eos"}  # the trained model stops


def test_stop_strings_count_tokens_to_the_stop_string():
    """Decoders that run every row to its limit cut at a stop string as generate does."""
    lm = load(ModelSpec("base", "path", str(PROJECT / "models/base")), device="cpu")
    reqs = [Request(str(i), render(lm.tokenizer, p), 30) for i, p in enumerate(PROMPTS[:6])]
    plain = {g.id: g for b in generate(lm, reqs, batch_size=6, decoder="hf") for g in b}
    # a piece of one rambling answer (no newline, so it cannot overlap the prompt's end)
    stop = next(g.output[6:9] for g in plain.values() if "\n" not in g.output[6:9])
    lm = dataclasses.replace(lm, chat=dataclasses.replace(lm.chat, stop_strings=(stop,)))
    hf = {g.id: g for b in generate(lm, reqs, batch_size=6, decoder="hf") for g in b}
    inv = {g.id: g for b in generate(lm, reqs, batch_size=6, decoder="invariant") for g in b}
    assert "stop" in {g.finish_reason for g in hf.values()}
    assert without_margins(inv) == without_margins(hf)


# --------------------------------------------------------------------------- which models


def test_unsupported_models_fall_back_with_the_reason_and_explicit_requests_fail(
    random_model_dir,
):
    lm = load(ModelSpec("r", "path", str(random_model_dir)), device="cpu", dtype="float32")
    lm.model.config.hidden_act = "gelu"  # something the decoder does not compute
    with pytest.raises(Unsupported, match="activation 'gelu'"):
        layout_of(lm.model)
    with pytest.raises(InputError, match="decoder: invariant: model 'r' has activation 'gelu'"):
        choose_decoder(lm, "invariant")
    lm.device = "cuda"  # what auto would do on a GPU, without one
    choice = choose_decoder(lm, "auto")
    assert (choice.name, choice.batch_invariant) == ("static", False)
    assert "activation 'gelu'" in choice.detail["note"]


def test_auto_is_generate_on_cpu_and_says_so(random_model_dir):
    lm = load(ModelSpec("r", "path", str(random_model_dir)), device="cpu", dtype="float32")
    choice = choose_decoder(lm, "auto")
    assert choice.name == "hf" and not choice.batch_invariant
    assert "not by construction" in choice.to_dict()["note"]


# --------------------------------------------------------------------------- Triton kernels


@dataclasses.dataclass(frozen=True)
class Out:
    i: int


def _rand(*shape, dtype=torch.float32):
    return torch.randn(*shape, device=DEVICE).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32] + ([torch.bfloat16] if CUDA else []))
def test_triton_kernels_compute_what_the_reference_computes(dtype):
    k = _triton_or_skip()
    torch.manual_seed(0)
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else dict(atol=3e-2, rtol=3e-2)

    def both(fn_name, *args, outs):
        """Run the kernel and its reference on copies of `outs` (`Out(i)` in `args` stands for
        outs[i]) and compare every output."""
        mine = [o.clone() for o in outs]
        theirs = [o.clone() for o in outs]
        getattr(k, fn_name)(*[mine[a.i] if isinstance(a, Out) else a for a in args])
        getattr(ref, fn_name)(*[theirs[a.i] if isinstance(a, Out) else a for a in args])
        for a, b in zip(mine, theirs, strict=True):
            torch.testing.assert_close(a.float(), b.float(), **tol)

    # a product with rows, columns and depth that fill no tile evenly, into a column slice
    x, w, b = _rand(70, 200, dtype=dtype), _rand(130, 200, dtype=dtype), _rand(130, dtype=dtype)
    out = torch.zeros(70, 150, device=DEVICE, dtype=dtype)
    for tiles in (PREFILL, DECODE):
        mine, theirs = out.clone(), out.clone()
        k.linear(x, w, b, mine[:, 10:140], tiles)
        ref.linear(x, w, b, theirs[:, 10:140], tiles)
        torch.testing.assert_close(mine.float(), theirs.float(), **tol)
        assert (mine[:, :10] == 0).all() and (mine[:, 140:] == 0).all()  # nothing else written

    h, delta, weight = _rand(9, 72, dtype=dtype), _rand(9, 72, dtype=dtype), _rand(72, dtype=dtype)
    both("add_rms_norm", delta, weight, 1e-6, Out(0), Out(1), outs=[torch.empty_like(h), h])
    both("add_rms_norm", h, weight, 1e-6, Out(0), outs=[torch.empty_like(h)])
    act = torch.empty(9, 40, device=DEVICE, dtype=dtype)
    both("silu_mul", _rand(9, 2 * 40, dtype=dtype), Out(0), outs=[act])

    # rotary + per-head norms into the cache, for a prefill of 2 rows x 5 tokens (GQA 6 / 2)
    hq, hkv, d, slots = 6, 2, 16, 9
    qkv = _rand(10, (hq + 2 * hkv) * d, dtype=dtype)
    pos = torch.arange(5, device=DEVICE).repeat(2)
    cos, sin = _rand(slots, d, dtype=dtype), _rand(slots, d, dtype=dtype)
    qn, kn = _rand(d, dtype=dtype), _rand(d, dtype=dtype)
    q = torch.empty(10, hq, d, device=DEVICE, dtype=dtype)
    cache = torch.zeros(2, hkv, slots, d, device=DEVICE, dtype=dtype)
    for norms in ((qn, kn), (None, None)):
        args = (qkv, pos, 5, cos, sin, *norms, 1e-6, Out(0), Out(1), Out(2))
        both("rope_into_cache", *args, outs=[q, cache, cache.clone()])

    # attention: prefill over 2 rows of 5 tokens, then one decode step at uneven positions
    kc, vc = _rand(2, hkv, slots, d, dtype=dtype), _rand(2, hkv, slots, d, dtype=dtype)
    att = torch.empty(10, hq, d, device=DEVICE, dtype=dtype)
    both("prefill_attention", _rand(10, hq, d, dtype=dtype), kc, vc, 0.25, Out(0), outs=[att])
    at = torch.tensor([3, 8], device=DEVICE)
    q1 = _rand(2, hq, d, dtype=dtype)
    both("decode_attention", q1, kc, vc, at, 0.25, Out(0), outs=[att[:2]])

    # the greedy pick across several blocks of the vocabulary, with a tie and a near-tie
    logits = torch.randn(4, 5000, device=DEVICE)
    logits[0, [17, 4001]] = 50.0  # a tie: the lower index wins, margin 0
    logits[1, 3000], logits[1, 10] = 40.0, 39.5  # best and second in different blocks
    tokens, margins = torch.empty(4, dtype=torch.long, device=DEVICE), torch.empty(4, device=DEVICE)
    k.top2(logits, tokens, margins)
    assert tokens[:2].tolist() == [17, 3000]
    assert margins[0].item() == 0.0 and margins[1].item() == pytest.approx(0.5)
    both("top2", logits, Out(0), Out(1), outs=[tokens, margins])


@pytest.mark.parametrize("dtype", [torch.float32] + ([torch.bfloat16] if CUDA else []))
@pytest.mark.parametrize("arch", ["qwen3", "llama"])
def test_triton_decoder_is_batch_invariant(arch, dtype):
    """The same tokens and margins, bit for bit, for a prompt alone and inside a batch."""
    _triton_or_skip()
    model = tiny(arch).to(DEVICE, dtype)
    batch = prompts(5, longest=9, seed=3)
    decoder = InvariantDecoder(model, backend="triton")
    together = decoder.generate(batch, 6, [], cuda_graph=False)
    for row, ids in enumerate(batch):
        alone = decoder.generate([ids], 6, [], cuda_graph=False)
        assert torch.equal(alone.tokens[0], together.tokens[row]), (arch, row)
        assert torch.equal(alone.margins[0], together.margins[row]), (arch, row)
    again = decoder.generate(list(reversed(batch)), 6, [], cuda_graph=False)
    assert torch.equal(again.tokens.flip(0), together.tokens)
    if dtype == torch.float32:  # in bf16 the reference's roundings differ in the last bit
        reference = InvariantDecoder(model, backend="torch").generate(batch, 6, [])
        assert torch.equal(reference.tokens, together.tokens)
    if CUDA:  # the CUDA graph replays exactly what the eager steps compute
        graphed = decoder.generate(batch, 6, [], cuda_graph=True)
        assert torch.equal(graphed.tokens, together.tokens)


HOPPER_SCRIPT = Path(__file__).with_name("hopper_compile.py")


def test_triton_kernels_compile_for_hopper():
    """Every kernel lowers to sm_90 code, the bf16 products to Hopper's wgmma: the build a GPU
    run would do, without a GPU (Triton's compiler and ptxas ship in its wheel)."""
    _triton_or_skip()
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, str(HOPPER_SCRIPT)], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    assert lines["linear bf16 prefill"] == "wgmma" and lines["linear bf16 decode"] == "wgmma"
    assert len(lines) >= 12
