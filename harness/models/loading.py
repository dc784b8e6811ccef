"""Loading a checkpoint from disk: weights, tokenizer, chat template and the device and dtype
they run in, ready for decoding."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..chat import ChatFormat, prepare
from ..errors import InputError
from .sources import SOURCES, Located
from .spec import ModelSpec

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")


@dataclass
class LoadedModel:
    spec: ModelSpec
    model: Any
    tokenizer: Any
    chat: ChatFormat
    folder: Path
    fingerprint: str
    dtype: str
    device: str
    info: dict[str, Any] = field(default_factory=dict)
    peft: Any = None  # the PeftModel holding the adapters loaded onto this model's weights
    adapter: str | None = None  # the one this model is (None: the base itself)

    def decoding(self) -> AbstractContextManager[None]:
        """The weights as this model's outputs need them: an adapter merged in, or none."""
        if self.peft is None:
            return nullcontext()
        from ..adapters import merged

        return merged(self.peft, self.adapter)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def describe(self) -> dict[str, Any]:
        """What run.json records about this model."""
        return {
            "source": self.spec.source,
            "location": self.spec.location,
            "folder": str(self.folder),
            "fingerprint": self.fingerprint,
            "dtype": self.dtype,
            "device": self.device,
            "class": type(self.model).__name__,
            "parameters": self.n_params,
            "chat": self.chat.to_dict(),
            **self.info,
        }


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(
            f"{device}: no CUDA device is available on this machine", argument="device"
        )
    index = device[5:] if device.startswith("cuda:") else ""
    if index.isdigit() and int(index) >= torch.cuda.device_count():
        found = torch.cuda.device_count()
        raise InputError(f"{device}: this machine has {found} CUDA device(s)", argument="device")
    return device


def pick_dtype(requested: str, spec_dtype: str, device: str) -> str:
    """--dtype wins over the registry; auto is float32 on CPU and bfloat16 on a GPU."""
    choice = requested if requested != "auto" else spec_dtype
    if choice == "auto":
        return "bfloat16" if device.startswith("cuda") else "float32"
    return choice


def load(
    spec: ModelSpec, *, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False
) -> LoadedModel:
    """Load weights and tokenizer, put the chat template in place, work out stop tokens; the
    spec's source says where they are, and loads them itself where it has its own way (an
    adapter comes loaded onto its base)."""
    found = SOURCES[spec.source]
    if found.load is not None:
        return found.load(spec, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
    return load_located(
        spec, found.locate(spec), device=device, dtype=dtype, trust_remote_code=trust_remote_code
    )


def load_located(
    spec: ModelSpec,
    located: Located,
    *,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load, with transformers, the checkpoint a source found for `spec`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    folder, extra = located.folder, located.load_kwargs()
    where = folder / located.gguf_file if located.gguf_file else folder
    device = pick_device(device)
    dtype = pick_dtype(dtype, spec.dtype, device)
    trust = trust_remote_code or spec.trust_remote_code
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust, **extra)
    except ValueError as exc:
        raise InputError(
            f"model '{spec.name}': the config of {where} is not usable: {exc}"
        ) from None
    if (
        not located.gguf_file
        and not any((folder / name).exists() for name in TOKENIZER_FILES)
        and not any(folder.glob("*.tiktoken"))
    ):
        # transformers 5 would quietly build an empty tokenizer from config.json alone
        raise InputError(
            f"model '{spec.name}': no tokenizer files in {folder} (looked for "
            f"{', '.join(TOKENIZER_FILES)}); save the tokenizer with the model"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust, **extra)
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(
            f"model '{spec.name}': no usable tokenizer in {where} ({exc}); save the tokenizer "
            "with the model (tokenizer.save_pretrained)"
        ) from None
    if not hasattr(tokenizer, "apply_chat_template") or len(tokenizer) < 2:
        raise InputError(f"model '{spec.name}': the tokenizer in {where} has no vocabulary")
    try:
        model = AutoModelForCausalLM.from_pretrained(
            folder, dtype=getattr(torch, dtype), trust_remote_code=trust, **extra
        )
    except ValueError as exc:
        raise InputError(
            f"model '{spec.name}': {where} is not a causal language model "
            f"({type(config).__name__}): {str(exc).splitlines()[0]}"
        ) from None
    except OSError as exc:
        raise InputError(f"model '{spec.name}': no usable weights in {where}: {exc}") from None
    if located.gguf_file:
        _dequantized(model)
    model.to(device).eval()
    chat = prepare(tokenizer, model.generation_config, spec.chat_template)
    # generate() fills every unset option from the model's generation_config (sampling,
    # repetition_penalty, ...); harness decodes plain greedy, so that config is recorded and
    # replaced by an empty one.
    shipped = {
        k: v
        for k, v in model.generation_config.to_diff_dict().items()
        if k not in ("transformers_version", "_from_model_config")
    }
    model.generation_config = GenerationConfig()
    info: dict[str, Any] = {"shipped_generation_config": shipped}
    if training := _trainer_state(folder):
        info["training"] = training
    return LoadedModel(
        spec, model, tokenizer, chat, where, located.fingerprint(), dtype, device, info
    )


def _trainer_state(folder: Path) -> dict[str, Any] | None:
    """A Trainer checkpoint's step, epoch, last logged loss and learning rate (its folder holds
    trainer_state.json): what makes a run over checkpoints a curve."""
    path = folder / "trainer_state.json"
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    logged = state.get("log_history", [])
    last = lambda key: next((h[key] for h in reversed(logged) if key in h), None)  # noqa: E731
    parent = folder.parent.parent if folder.parent.name == "checkpoints" else folder.parent
    return {
        "step": state.get("global_step", 0),
        "epoch": state.get("epoch"),
        "learning_rate": last("learning_rate"),
        "loss": last("loss"),
        "run": parent.resolve().name,
    }


def _dequantized(model: Any) -> None:
    """transformers de-quantizes GGUF weights to plain tensors but keeps calling the model
    quantized, and Trainer then refuses to fine-tune it; drop the stale marks."""
    model.hf_quantizer = None
    model.is_quantized = False
    model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
