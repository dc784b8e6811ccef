"""Builds the embedded default model: a miniature Qwen3 "base" model with its own tokenizer.

It exists so that `harness run` works on a fresh machine with no download, and so that tests
exercise the real loading, templating and decoding code on a real (if tiny) Qwen3 checkpoint.
It is pre-trained on synthetic plain text (arithmetic facts, short sentences) and never sees the
chat format, so through its chat template it behaves like a real base model: it rambles and
rarely stops. Rebuild with `harness build-base --out models/base` (3,000 steps: about nine
minutes on two CPU cores); the build is seeded, and on the same torch build reproduces the
shipped weights.
"""

from __future__ import annotations

import math
import platform
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

from .files import write_json_atomic
from .logs import say

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END, "<think>", "</think>"]

# Qwen3's template, cut down: the assistant turn after the last user message carries an empty
# think block, and `enable_thinking=False` puts that block in the generation prompt, exactly as the
# real Qwen3 template does. `{% generation %}` marks what assistant-only loss trains on.
CHAT_TEMPLATE = (
    "{%- set ns = namespace(last_user=-1) -%}"
    "{%- for m in messages -%}{%- if m['role'] == 'user' -%}"
    "{%- set ns.last_user = loop.index0 -%}{%- endif -%}{%- endfor -%}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if loop.index0 > ns.last_user -%}{{- '<think>\\n\\n</think>\\n\\n' -}}{%- endif -%}"
    "{%- generation -%}{{- m['content'] + '<|im_end|>' -}}{%- endgeneration -%}"
    "{{- '\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)

# Measured on two CPU cores: 0.54M parameters learned sums in ~600 steps; 0.15M could not, and
# 1M+ did not converge within a CPU-friendly budget.
MODEL_SHAPE = dict(
    hidden_size=128,
    intermediate_size=512,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=32,
    max_position_embeddings=512,
    rope_theta=10000.0,
    tie_word_embeddings=True,
)

# --------------------------------------------------------------------------- synthetic text

_SENTENCES = [
    "A large language model, or LLM, is a neural network trained on a lot of text to predict the next word.",
    "An LLM is a language model that can answer questions and write text.",
    "Large language models learn patterns of language from huge amounts of text.",
    "A process is a running program with its own memory space.",
    "A thread is a unit of execution inside a process, and threads share the memory of their process.",
    "Threads are lighter than processes because they share memory.",
    "Processes are isolated from each other, while threads of one process share memory.",
    "Python is a popular programming language.",
    "The capital of France is Paris.",
    "The capital of Japan is Tokyo.",
    "The capital of Italy is Rome.",
    "Water boils at 100 degrees Celsius at sea level.",
    "Water freezes at 0 degrees Celsius.",
    "The sun is a star at the center of our solar system.",
    "The earth goes around the sun once a year.",
    "A week has seven days.",
    "A year has twelve months.",
    "The sky is blue on a clear day.",
    "Plants use sunlight to make food, a process called photosynthesis.",
    "A CPU is the part of a computer that runs instructions.",
    "A GPU is a processor that is good at parallel math.",
    "Memory stores data that a program is using right now.",
    "A function is a named block of code that can be called.",
    "A list holds items in order.",
    "Red, green and blue are colors.",
    "Cats and dogs are animals.",
    "A triangle has three sides.",
    "A square has four equal sides.",
    "Fine-tuning trains a model further on a smaller set of examples.",
    "Machine learning lets computers learn from data.",
    "A neural network is made of layers of simple units.",
    "Tokens are the small pieces of text a model reads.",
    "Greedy decoding always picks the most likely next token.",
    "The moon goes around the earth.",
    "Ice is frozen water.",
    "Light travels faster than sound.",
    "A byte has eight bits.",
    "Hello, how are you?",
    "Thank you very much.",
    "The dog runs in the park.",
]


def _arithmetic_line_of(kind: str, rng: random.Random) -> tuple[str, int]:
    if kind == "add":
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        return f"{a} + {b}", a + b
    if kind == "sub":
        a = rng.randint(0, 99)
        b = rng.randint(0, a)
        return f"{a} - {b}", a - b
    if kind == "mixed":
        a, b, c = rng.randint(0, 20), rng.randint(0, 20), rng.randint(0, 20)
        if rng.random() < 0.5:
            return f"{a} + {b} - {c}", a + b - c
        return f"{a} - {b} + {c}", a - b + c
    a, b = rng.randint(0, 12), rng.randint(0, 9)
    return f"{a} * {b}", a * b


def _arithmetic_line(rng: random.Random) -> str:
    kind = rng.choices(["add", "sub", "mixed", "mul"], weights=[4, 3, 2, 2])[0]
    expr, value = _arithmetic_line_of(kind, rng)
    form = rng.random()
    if form < 0.7:
        return f"{expr} = {value}"
    if form < 0.85:
        return f"{expr.replace(' ', '')}={value}"
    return f"{expr} is {value}."


def synthetic_corpus(n_docs: int, seed: int) -> list[str]:
    """Plain-text documents: blocks of arithmetic facts and of sentences; never the chat format.

    Documents are long (2 to 5 blocks), so <|endoftext|> is rare: like a real base model, this
    one seldom decides to stop by itself.
    """
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        blocks = []
        for _ in range(rng.randint(2, 5)):
            if rng.random() < 0.65:
                blocks.append("\n".join(_arithmetic_line(rng) for _ in range(rng.randint(3, 8))))
            else:
                blocks.append("\n".join(rng.sample(_SENTENCES, rng.randint(2, 4))))
        docs.append("\n".join(blocks))
    return docs


# --------------------------------------------------------------------------- tokenizer and model


def build_tokenizer(texts: list[str], vocab_size: int = 384) -> PreTrainedTokenizerFast:
    """Byte-level BPE with every digit its own token, as Qwen's tokenizer does."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # padding_side must be given to the constructor: set afterwards it is not saved.
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
        model_max_length=MODEL_SHAPE["max_position_embeddings"],
    )


def build_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> Qwen3ForCausalLM:
    """A randomly initialised Qwen3 of the embedded shape (tests use it untrained)."""
    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids(ENDOFTEXT),
        pad_token_id=tokenizer.pad_token_id,
        **MODEL_SHAPE,
    )
    model = Qwen3ForCausalLM(config)
    # A base model's generation config knows only its document end, as Qwen3-Base's does; the
    # chat turn end (<|im_end|>) is the runner's job to add (harness/chat.py).
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.convert_tokens_to_ids(ENDOFTEXT)],
        pad_token_id=tokenizer.pad_token_id,
    )
    return model


def _packed_batches(
    ids: torch.Tensor, batch: int, seq_len: int, rng: torch.Generator
) -> Iterator[torch.Tensor]:
    n_chunks = (len(ids) - 1) // seq_len
    chunks = ids[: n_chunks * seq_len].view(n_chunks, seq_len)
    while True:
        order = torch.randperm(n_chunks, generator=rng)
        for start in range(0, n_chunks - batch + 1, batch):
            yield chunks[order[start : start + batch]]


def pretrain(
    model: Qwen3ForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    docs: list[str],
    *,
    steps: int,
    batch: int = 32,
    seq_len: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    log: Callable[[str], None] = say,
) -> list[float]:
    """Next-token training on packed documents joined by <|endoftext|>; returns the loss curve."""
    eot = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    stream: list[int] = []
    for doc in docs:
        stream.extend(tokenizer(doc, add_special_tokens=False)["input_ids"])
        stream.append(eot)
    ids = torch.tensor(stream, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    batches = _packed_batches(ids, batch, seq_len, gen)
    optim = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    warmup = max(1, steps // 20)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(optim, schedule)
    model.train()
    losses = []
    start = time.time()
    for step in range(steps):
        x = next(batches).to(next(model.parameters()).device)
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        sched.step()
        optim.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            log(f"step {step:4d}/{steps}  loss {loss.item():.3f}  {time.time() - start:5.1f}s")
    model.eval()
    return losses


def plain_text_accuracy(
    model: Qwen3ForCausalLM, tokenizer: PreTrainedTokenizerFast, n: int = 200, seed: int = 12345
) -> dict[str, float]:
    """Greedy completion of "a + b =" style prompts in plain text: what the base model knows."""
    rng = random.Random(seed)
    result = {}
    device = next(model.parameters()).device
    for kind in ("add", "sub", "mixed", "mul"):
        prompts, answers = [], []
        for _ in range(n):
            line = _arithmetic_line_of(kind, rng)
            expr, value = line
            prompts.append(f"{expr} =")
            answers.append(str(value))
        enc = tokenizer(prompts, return_tensors="pt", padding=True).to(device)
        with torch.no_grad():
            out = model.generate(
                **enc, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        texts = tokenizer.batch_decode(
            out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True
        )
        ok = sum(t.strip().split("\n")[0].strip() == a for t, a in zip(texts, answers, strict=True))
        result[kind] = round(ok / n, 3)
    return result


def build(
    out: Path, *, seed: int = 0, steps: int = 3000, n_docs: int = 4000, device: str = "cpu"
) -> dict:
    """Build, pre-train and save the embedded base model; returns what build.json records."""
    start = time.time()
    torch.manual_seed(seed)
    docs = synthetic_corpus(n_docs, seed)
    tokenizer = build_tokenizer(docs)
    model = build_model(tokenizer, seed).to(device)
    losses = pretrain(model, tokenizer, docs, steps=steps, seed=seed)
    model.to("cpu")
    accuracy = plain_text_accuracy(model, tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    info = {
        "what": "embedded default base model for harness (see harness/tiny.py)",
        "seed": seed,
        "steps": steps,
        "documents": n_docs,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4),
        "plain_text_arithmetic_accuracy": accuracy,
        "device": device,
        "seconds": round(time.time() - start, 1),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    write_json_atomic(out / "build.json", info)
    return info
