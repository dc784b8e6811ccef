"""Fingerprints: what run.json records to tell one model's weights from another's.

A checkpoint on disk is hashed file by file; a model in memory, tensor by tensor.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

# Files whose bytes decide what a model outputs; the fingerprint hashes exactly these.
FINGERPRINT_SUFFIXES = {".safetensors", ".bin", ".gguf", ".model", ".tiktoken", ".jinja", ".txt"}
FINGERPRINT_JSON = {
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "model.safetensors.index.json",
    "adapter_config.json",
}


def fingerprint(folder: Path) -> str:
    """sha256 over the names and bytes of the weight, config and tokenizer files (or one file)."""
    digest = hashlib.sha256()
    if folder.is_file():
        folder, files = folder.parent, [folder]
    else:
        files = sorted(
            p
            for p in folder.rglob("*")
            if p.is_file()
            and (p.suffix in FINGERPRINT_SUFFIXES or p.name in FINGERPRINT_JSON)
            and not any(part.startswith("checkpoint-") for part in p.relative_to(folder).parts)
        )
    for path in files:
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def weights_fingerprint(model: Any, tokenizer: Any) -> str:
    """sha256 over a model's parameters and buffers (names, dtypes, shapes, bytes) and its
    tokenizer's vocabulary and chat template: the fingerprint of a model held in memory."""
    import torch

    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            t = tensor.detach().contiguous().cpu()
            digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}\0".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
    digest.update(vocab.encode() + str(getattr(tokenizer, "chat_template", "")).encode())
    return "sha256:" + digest.hexdigest()
