from __future__ import annotations

import copy
import shutil

from harness.chat import FALLBACK_STOP_STRINGS, prepare, render
from harness.models import ModelSpec, load


def test_qwen_style_template_with_thinking_off(tiny_tokenizer):
    text = render(tiny_tokenizer, "Calculate 1+1-1", system="Be brief.")
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nCalculate 1+1-1<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    thinking = tiny_tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert thinking.endswith("<|im_start|>assistant\n")


def test_stops_on_eos_generation_config_and_turn_end(random_model_dir):
    lm = load(ModelSpec("m", "path", str(random_model_dir)))
    assert set(lm.chat.stop_tokens) == {"<|im_end|>", "<|endoftext|>"}
    assert lm.chat.template_source == "tokenizer" and lm.chat.stop_strings == ()
    assert lm.tokenizer.padding_side == "left"
    # the checkpoint's own generation config is recorded, then emptied for plain greedy
    assert lm.describe()["shipped_generation_config"]["eos_token_id"] == [0]
    assert lm.model.generation_config.eos_token_id is None


def test_fallback_template_for_tokenizers_without_one(random_model_dir, tmp_path):
    folder = tmp_path / "no-template"
    shutil.copytree(random_model_dir, folder)
    (folder / "chat_template.jinja").unlink()
    lm = load(ModelSpec("plain", "path", str(folder)))
    assert lm.chat.template_source == "fallback"
    assert lm.chat.stop_strings == FALLBACK_STOP_STRINGS
    assert lm.chat.add_special_tokens
    assert render(lm.tokenizer, "Hi there", "Be nice.") == (
        "System: Be nice.\nUser: Hi there\nAssistant:"
    )


def test_override_template_wins(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)  # keep the session fixture untouched
    chat = prepare(tok, None, "{% for m in messages %}Q: {{ m['content'] }}\n{% endfor %}A:")
    assert chat.template_source == "override"
    assert render(tok, "2+2?") == "Q: 2+2?\nA:"
    assert chat.stop_tokens == ("<|im_end|>",)  # the tokenizer's eos; the override has no turn end
