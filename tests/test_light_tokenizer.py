"""The light tokenizer used in Ray Data actors renders and encodes exactly as transformers does."""

from __future__ import annotations

import random

import pytest

from deepcoder.agent.prompts import build_messages, system_prompt
from deepcoder.agent.types import Task
from deepcoder.data.light_tokenizer import LightTokenizer, TokenizerSpec
from deepcoder.data.tokenizers import load_tokenizer

from test_format import _random_steps


@pytest.mark.parametrize("name", ["qwen2.5", "smollm2"])
def test_same_text_ids_offsets_and_decoding(name, cache_dir) -> None:
    hf = load_tokenizer(name, cache_dir=cache_dir)
    light = LightTokenizer(TokenizerSpec.from_hf(hf))
    assert light.eos_token == hf.eos_token and light.pad_token_id == hf.pad_token_id
    assert set(light.all_special_ids) == set(hf.all_special_ids)
    rng = random.Random(3)
    system = system_prompt("- python(code): run code", ["python", "finish"])
    for case in range(100):
        messages = build_messages(system, Task(id=f"t/{case}", prompt=f"task {case} é 中文"), _random_steps(rng))
        text = hf.apply_chat_template(messages, tokenize=False)
        assert light.apply_chat_template(messages) == text
        want = hf(text, add_special_tokens=False, return_offsets_mapping=True)
        got = light(text, add_special_tokens=False, return_offsets_mapping=True)
        assert got["input_ids"] == want["input_ids"]
        assert [tuple(o) for o in got["offset_mapping"]] == [tuple(o) for o in want["offset_mapping"]]
        assert light.decode(got["input_ids"]) == hf.decode(want["input_ids"])


def test_spec_refuses_tokenizers_it_cannot_serve(cache_dir) -> None:
    hf = load_tokenizer("qwen2.5", cache_dir=cache_dir)
    broken = type("NoTemplate", (), {"is_fast": True, "chat_template": None})()
    with pytest.raises(ValueError, match="chat template"):
        TokenizerSpec.from_hf(broken)
    with pytest.raises(ValueError, match="fast"):
        TokenizerSpec.from_hf(type("Slow", (), {"is_fast": False})())
    assert TokenizerSpec.from_hf(hf).special_tokens["eos_token"] == "<|im_end|>"
