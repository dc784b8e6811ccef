"""Prompt rendering through the tokenizer's chat template, and every way a turn can end.

Base models are the trap here: Qwen base models end documents with <|endoftext|> while the chat
template ends turns with <|im_end|>, so a runner that stops on only one of them reports an SFT
model that "never stops". harness stops on the union of the tokenizer's eos, the generation
config's eos ids and the template's own turn-end token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# The tutorial's plain-text format, for tokenizers that ship no chat template. A model answering
# in this format starts the next turn with "User:", so that is a stop string.
FALLBACK_TEMPLATE = (
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' -%}{{ 'System: ' + m['content'] + '\\n' }}"
    "{%- elif m['role'] == 'user' -%}{{ 'User: ' + m['content'] + '\\n' }}"
    "{%- else -%}{{ 'Assistant: ' + m['content'] + '\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'Assistant:' }}{%- endif -%}"
)
FALLBACK_STOP_STRINGS = ("\nUser:", "\nSystem:")
_SENTINEL = "\u2063HARNESS_END_PROBE\u2063"


@dataclass(frozen=True)
class ChatFormat:
    """How prompts are rendered for one model, recorded in run.json."""

    template_source: str  # "tokenizer", "override" or "fallback"
    stop_token_ids: tuple[int, ...]
    stop_tokens: tuple[str, ...]
    stop_strings: tuple[str, ...]
    add_special_tokens: bool  # True only for the fallback, which has no BOS of its own

    def to_dict(self) -> dict[str, Any]:
        return {
            "template_source": self.template_source,
            "stop_token_ids": list(self.stop_token_ids),
            "stop_tokens": list(self.stop_tokens),
            "stop_strings": list(self.stop_strings),
            "add_special_tokens": self.add_special_tokens,
        }


def messages_for(
    prompt: str, system: str | None = None, history: Sequence[tuple[str, str]] = ()
) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": role, "content": content} for role, content in history]
    return messages + [{"role": "user", "content": prompt}]


def render(
    tokenizer: Any,
    prompt: str,
    system: str | None = None,
    history: Sequence[tuple[str, str]] = (),
) -> str:
    """The prompt as the model sees it: chat template (earlier turns first), generation prompt,
    thinking off."""
    return tokenizer.apply_chat_template(
        messages_for(prompt, system, history),
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=False,
    )


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, list | tuple) else [int(value)]


def _template_turn_end(tokenizer: Any) -> list[int]:
    """The special token the template writes right after an assistant message, if any."""
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _SENTINEL}],
            tokenize=False,
        )
    except Exception:  # a template that refuses this shape simply has no detectable turn end
        return []
    if _SENTINEL not in text:
        return []
    tail = text.split(_SENTINEL, 1)[1]
    ids = tokenizer(tail, add_special_tokens=False)["input_ids"] if tail else []
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}))
    return ids[:1] if ids and ids[0] in special else []


def prepare(tokenizer: Any, generation_config: Any, override: str | None = None) -> ChatFormat:
    """Install the template to use on `tokenizer` and work out where generation stops."""
    if override:
        tokenizer.chat_template = override
        source = "override"
    elif getattr(tokenizer, "chat_template", None):
        source = "tokenizer"
    else:
        tokenizer.chat_template = FALLBACK_TEMPLATE
        source = "fallback"
    if tokenizer.pad_token_id is None:  # batched left padding needs one; eos is never attended
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    ids = _as_list(tokenizer.eos_token_id) + _as_list(
        getattr(generation_config, "eos_token_id", None)
    )
    if source != "fallback":
        ids += _template_turn_end(tokenizer)
    stop_ids = tuple(dict.fromkeys(ids))
    return ChatFormat(
        template_source=source,
        stop_token_ids=stop_ids,
        stop_tokens=tuple(tokenizer.convert_ids_to_tokens(list(stop_ids))),
        stop_strings=FALLBACK_STOP_STRINGS if source == "fallback" else (),
        add_special_tokens=source == "fallback",
    )
