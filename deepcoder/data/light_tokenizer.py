"""A start-up-cheap stand-in for a HF fast tokenizer, for Ray Data actors.

Importing transformers pulls in torch, which costs a dataset actor about 2.5 s before it can
tokenize anything; on a 2-CPU node that start-up was most of Ray Data's overhead. The dataset
builder only needs four things from the tokenizer, and the Rust ``tokenizers`` library plus
``jinja2`` provide them: the chat template rendered to text, encoding with offsets, decoding,
and the special tokens. ``TokenizerSpec.from_hf`` captures a loaded HF tokenizer once in the
driver (its ``tokenizer.json`` string, chat template and special tokens) and each actor rebuilds
a ``LightTokenizer`` from it, on any node, without reading the driver's files.

``tests/test_light_tokenizer.py`` checks that it renders and encodes exactly as transformers does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer


@dataclass(frozen=True)
class TokenizerSpec:
    """Everything needed to rebuild the tokenizer elsewhere (plain strings: cheap to ship)."""

    tokenizer_json: str
    chat_template: str
    special_tokens: dict[str, str] = field(default_factory=dict)  # bos_token, eos_token, pad_token, ...
    all_special_tokens: tuple[str, ...] = ()

    @classmethod
    def from_hf(cls, tokenizer) -> "TokenizerSpec":
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("a fast (Rust) tokenizer is needed for offsets")
        template = tokenizer.chat_template
        if not isinstance(template, str) or not template:
            raise ValueError("the tokenizer has no chat template")
        specials = {name: str(getattr(tokenizer, name)) for name in
                    ("bos_token", "eos_token", "unk_token", "pad_token") if getattr(tokenizer, name, None)}
        return cls(tokenizer.backend_tokenizer.to_str(), template, specials, tuple(tokenizer.all_special_tokens))


def _tojson(value: Any, indent: int | None = None, ensure_ascii: bool = False, sort_keys: bool = False) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys)


def _raise(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


class LightTokenizer:
    """The subset of the HF tokenizer API that ``deepcoder.data.masks`` uses."""

    def __init__(self, spec: TokenizerSpec) -> None:
        self._tokenizer = Tokenizer.from_str(spec.tokenizer_json)
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        self._template = env.from_string(spec.chat_template)
        self._specials = dict(spec.special_tokens)
        self.all_special_tokens = list(spec.all_special_tokens)
        self.all_special_ids = [i for i in (self._tokenizer.token_to_id(t) for t in self.all_special_tokens)
                                if i is not None]
        self.eos_token = self._specials.get("eos_token")
        pad = self._specials.get("pad_token")
        self.pad_token_id = self._tokenizer.token_to_id(pad) if pad else None
        self.is_fast = True

    def apply_chat_template(self, messages: Sequence[dict[str, str]], tokenize: bool = False,
                            add_generation_prompt: bool = False) -> str:
        if tokenize:
            raise NotImplementedError("render to text, then call the tokenizer")
        return self._template.render(messages=list(messages), add_generation_prompt=add_generation_prompt,
                                     tools=None, documents=None, **self._specials)

    def __call__(self, text: str, add_special_tokens: bool = False,
                 return_offsets_mapping: bool = False) -> dict[str, list]:
        encoding = self._tokenizer.encode(text, add_special_tokens=add_special_tokens)
        out: dict[str, list] = {"input_ids": encoding.ids, "attention_mask": [1] * len(encoding.ids)}
        if return_offsets_mapping:
            out["offset_mapping"] = encoding.offsets
        return out

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)
