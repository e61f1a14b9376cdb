"""Student loading: CPU LoRA on a tiny Qwen2 from a config, the shipped SmolLM2 GGUF, export and inference."""

from __future__ import annotations

import pytest
import torch

from deepcoder.config import load_config
from deepcoder.data.tokenizers import load_tokenizer
from deepcoder.train.model import ModelLoadError, export_student, load_for_inference, load_student


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, cache_dir):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = load_tokenizer("qwen2.5", cache_dir=cache_dir)
    folder = tmp_path_factory.mktemp("tiny-qwen2")
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         tie_word_embeddings=True))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def config_for(source, cache_dir, tokenizer="qwen2.5"):
    return load_config("demo", env={}, overrides={
        "paths": {"cache_dir": cache_dir}, "data": {"tokenizer": tokenizer},
        "student": {"model_name_or_path": str(source), "target_modules": ["q_proj", "v_proj"]}})


def test_cpu_lora_trains_only_the_adapter_and_exports(tiny_folder, cache_dir, tmp_path) -> None:
    loaded = load_student(config_for(tiny_folder, cache_dir))
    assert loaded.path == "cpu-lora"
    trainable = [n for n, p in loaded.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    loaded.model(input_ids=ids, labels=ids).loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in loaded.model.named_parameters()
               if "lora_B" in n or "lora_A" in n)
    paths = export_student(loaded.model, loaded.tokenizer, tmp_path / "export")
    merged = load_for_inference(paths["merged"])
    adapter = load_for_inference(paths["adapter"], base=str(tiny_folder))
    with torch.no_grad():
        a = merged.model(input_ids=ids).logits
        b = adapter.model(input_ids=ids).logits
    assert torch.allclose(a, b, atol=0.05)  # the merged copy is stored in bfloat16
    text = merged.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                                add_generation_prompt=True)
    out = merged.model.generate(**merged.tokenizer(text, return_tensors="pt"), max_new_tokens=3, do_sample=False)
    assert out.shape[1] > 3


def test_embedded_smollm2_gguf_is_rebuilt_without_its_quantizer(cache_dir, tmp_path) -> None:
    loaded = load_student(config_for("smollm2", cache_dir, tokenizer="smollm2"))
    base = loaded.model.get_base_model()
    assert getattr(base, "hf_quantizer", None) is None
    assert not hasattr(base.config, "quantization_config")
    ids = loaded.tokenizer("Thought: test", return_tensors="pt")["input_ids"]
    loaded.model(input_ids=ids, labels=ids).loss.backward()  # trainable
    loaded.model.save_pretrained(tmp_path / "adapter")  # and savable
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()


def test_bad_sources_are_clear_errors(cache_dir, tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="nothing is downloaded"):
        load_student(config_for("some-org/not-cached-model", cache_dir))
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        load_student(config_for(tmp_path / "missing.gguf", cache_dir))
    with pytest.raises(ModelLoadError, match="adapter"):
        from deepcoder.train.model import load_for_inference as load

        (tmp_path / "a").mkdir()
        (tmp_path / "a" / "adapter_config.json").write_text("{}")
        load(tmp_path / "a")
