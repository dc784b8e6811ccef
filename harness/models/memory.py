"""Models already in memory (a notebook, a training loop), evaluated without saving them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..chat import prepare
from ..errors import InputError
from .fingerprints import weights_fingerprint
from .loading import LoadedModel
from .spec import ModelSpec


def from_memory(
    model: Any,
    tokenizer: Any,
    name: str = "model",
    chat_template: str | None = None,
    *,
    fingerprint: str | None = None,
    info: dict[str, Any] | None = None,
    dtype: str | None = None,
) -> LoadedModel:
    """A model and tokenizer already in memory (a notebook, a training loop), evaluated as they
    are: nothing saved or reloaded, the caller's tokenizer left untouched (a copy is prepared).
    The fingerprint hashes the weights unless the caller names the model otherwise (a training
    run: its base, data, settings and step); `info` joins what run.json records. `dtype`: the
    dtype to decode in where the decoder can cast (the invariant kernels; others decode in the
    weights' own, and run.json says which)."""
    import copy

    if not hasattr(model, "generate") or not hasattr(model, "config"):
        raise InputError(
            f"model '{name}': expected a transformers causal language model, got "
            f"{type(model).__name__}",
            argument="models",
        )
    if not hasattr(tokenizer, "apply_chat_template"):
        raise InputError(
            f"model '{name}': expected its tokenizer, got {type(tokenizer).__name__}",
            argument="models",
        )
    tokenizer = copy.deepcopy(tokenizer)
    chat = prepare(tokenizer, model.generation_config, chat_template)
    param = next(model.parameters())
    shipped = {
        k: v
        for k, v in model.generation_config.to_diff_dict().items()
        if k not in ("transformers_version", "_from_model_config")
    }
    weights = str(param.dtype).removeprefix("torch.")
    spec = ModelSpec(name, "memory", "in memory", dtype or weights)
    return LoadedModel(
        spec,
        model,
        tokenizer,
        chat,
        Path("<in memory>"),
        fingerprint or weights_fingerprint(model, tokenizer),
        spec.dtype,
        str(param.device),
        {"shipped_generation_config": shipped, "weights_dtype": weights, **(info or {})},
    )


@contextmanager
def evaluation_mode(model: Any) -> Iterator[None]:
    """Eval mode and an empty generation config while decoding, put back afterwards: a model
    being trained goes on training as it was (see `load`, which empties the config for good)."""
    from transformers import GenerationConfig

    training, config = model.training, model.generation_config
    model.eval()
    model.generation_config = GenerationConfig()
    try:
        yield
    finally:
        model.generation_config = config
        model.train(training)
