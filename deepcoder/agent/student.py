"""The student as a policy: a local causal LM behind the same ``Policy`` interface as the teacher.

One implementation for evaluation and serving. Two back ends:

* transformers ``generate`` (CPU, or GPU without vLLM): batched, with stop strings cut on the host;
* vLLM, when it is installed and a CUDA GPU is present (``backend="auto"``): continuous batching.

Model sources are what ``deepcoder.train.model`` loads: ``smollm2`` (the embedded CPU default),
a local folder (a merged export, or a LoRA adapter folder with ``base``), a cached HF id, or a GGUF.
Generation holds a lock: one transformers model is not safe to drive from two threads at once.
"""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from deepcoder.agent.policy import Message, PolicyError, PolicyOutput, SyncPolicy

Backend = Literal["auto", "transformers", "vllm"]


@dataclass
class Completion:
    """One sampled continuation of one prompt."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (a stop string or end of turn) or "length"


@dataclass
class GenerationStats:
    """Totals across calls, for the efficiency report (tokens/s, latency)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds else 0.0


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the earliest stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _adapter_base(path: Path) -> str | None:
    cfg = path / "adapter_config.json"
    if not cfg.is_file():
        return None
    return json.loads(cfg.read_text()).get("base_model_name_or_path")


def vllm_usable() -> bool:
    """vLLM needs both the package and a CUDA GPU; otherwise transformers is used."""
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


class StudentPolicy(SyncPolicy):
    """A local model that answers agent turns (``generate``) and raw prompts (``complete``)."""

    def __init__(self, model: Any, tokenizer: Any, *, name: str = "student", max_new_tokens: int = 384,
                 temperature: float = 0.0, top_p: float = 0.95, backend: str = "transformers") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.backend = backend
        self.stats = GenerationStats()
        self._lock = threading.Lock()
        if tokenizer is not None and getattr(tokenizer, "pad_token", None) is None:
            tokenizer.pad_token = tokenizer.eos_token

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def load(cls, source: str, *, base: str | None = None, name: str | None = None,
             backend: Backend = "auto", tokenizer: str | None = None, **kwargs: Any) -> "StudentPolicy":
        """Load ``source`` for inference. ``tokenizer`` overrides the source's own (``smollm2``,
        ``qwen2.5`` or a folder); a source without one (a GGUF) takes ``smollm2``'s."""
        from deepcoder.train.model import ModelLoadError

        name = name or source
        if backend == "vllm" or (backend == "auto" and vllm_usable() and not Path(source, "adapter_config.json").is_file()):
            return cls._load_vllm(source, name=name, **kwargs)
        import torch

        from deepcoder.data.tokenizers import load_tokenizer
        from deepcoder.train.model import _load_plain, load_for_inference

        path = Path(source)
        try:
            if path.is_dir():
                loaded = load_for_inference(path, base=base or _adapter_base(path))
                model, tok = loaded.model, loaded.tokenizer
            else:
                model, tok = _load_plain(source, torch.float32), None
                model.eval()
        except (OSError, ValueError) as exc:
            if isinstance(exc, ModelLoadError):
                raise
            raise ModelLoadError(f"cannot load student {source!r}: {exc}") from None
        if tokenizer is not None:
            tok = load_tokenizer(tokenizer)
        elif tok is None and (source == "smollm2" or path.suffix == ".gguf"):
            tok = load_tokenizer("smollm2")
        elif tok is None:  # a cached HF id: its own tokenizer, from the cache only
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(source, local_files_only=True)
        if torch.cuda.is_available():  # pragma: no cover - GPU
            model = model.to("cuda")
        return cls(model, tok, name=name, backend="transformers", **kwargs)

    @classmethod
    def _load_vllm(cls, source: str, *, name: str, **kwargs: Any) -> "StudentPolicy":  # pragma: no cover - GPU
        from vllm import LLM

        llm = LLM(model=source, dtype="bfloat16", enable_prefix_caching=True)
        return cls(llm, llm.get_tokenizer(), name=name, backend="vllm", **kwargs)

    # -- generation ------------------------------------------------------------------------------

    def chat_prompt(self, messages: Sequence[Message]) -> str:
        return self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)

    def generate(self, messages: Sequence[Message], *, stop: Sequence[str] = ()) -> PolicyOutput:
        """One agent turn (greedy unless ``temperature`` > 0)."""
        try:
            [[out]] = self.complete([self.chat_prompt(messages)], stop=stop)
        except PolicyError:
            raise
        except Exception as exc:  # a model that cannot generate at all ends the episode cleanly
            raise PolicyError(f"{self.name}: generation failed: {type(exc).__name__}: {exc}") from exc
        usage = {"prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens,
                 "total_tokens": out.prompt_tokens + out.completion_tokens}
        return PolicyOutput(text=out.text, usage=usage, finish_reason=out.finish_reason)

    def complete(self, prompts: Sequence[str], *, n: int = 1, stop: Sequence[str] = (),
                 temperature: float | None = None, max_new_tokens: int | None = None,
                 batch_size: int = 8) -> list[list[Completion]]:
        """``n`` continuations of each raw prompt, cut at the first stop string."""
        temperature = self.temperature if temperature is None else temperature
        max_new = max_new_tokens or self.max_new_tokens
        started = time.monotonic()
        with self._lock:
            if self.backend == "vllm":  # pragma: no cover - GPU
                results = self._complete_vllm(prompts, n, stop, temperature, max_new)
            else:
                results = []
                for i in range(0, len(prompts), max(1, batch_size // max(1, n))):
                    results += self._complete_hf(prompts[i:i + max(1, batch_size // max(1, n))], n, stop,
                                                 temperature, max_new)
        elapsed = time.monotonic() - started
        self.stats.calls += 1
        self.stats.seconds += elapsed
        self.stats.latencies.append(elapsed)
        for group in results:
            for c in group:
                self.stats.prompt_tokens += c.prompt_tokens
                self.stats.completion_tokens += c.completion_tokens
        return results

    def _complete_hf(self, prompts: Sequence[str], n: int, stop: Sequence[str], temperature: float,
                     max_new: int) -> list[list[Completion]]:
        import torch

        tok = self.tokenizer
        tok.padding_side = "left"
        enc = tok(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
        device = next(self.model.parameters()).device
        enc = {k: v.to(device) for k, v in enc.items()}
        sample = temperature > 0
        kwargs: dict[str, Any] = dict(max_new_tokens=max_new, do_sample=sample, num_return_sequences=n,
                                      pad_token_id=tok.pad_token_id)
        if sample:
            kwargs.update(temperature=temperature, top_p=self.top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if stop:
            kwargs.update(stop_strings=[s for s in stop if s], tokenizer=tok)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        width = enc["input_ids"].shape[1]
        eos = {t for t in [tok.eos_token_id, tok.pad_token_id] if t is not None}
        results: list[list[Completion]] = []
        for i in range(len(prompts)):
            prompt_tokens = int(enc["attention_mask"][i].sum())
            group = []
            for j in range(n):
                generated = out[i * n + j][width:].tolist()
                ids = list(generated)
                while ids and ids[-1] in eos:
                    ids.pop()
                text, stopped = cut_at_stop(tok.decode(ids, skip_special_tokens=True), stop)
                ended = stopped or len(ids) < len(generated) or len(generated) < max_new
                group.append(Completion(text, prompt_tokens, len(ids), "stop" if ended else "length"))
            results.append(group)
        return results

    def _complete_vllm(self, prompts, n, stop, temperature, max_new):  # pragma: no cover - GPU
        from vllm import SamplingParams

        params = SamplingParams(n=n, temperature=temperature, top_p=self.top_p if temperature > 0 else 1.0,
                                max_tokens=max_new, stop=[s for s in stop if s] or None)
        outs = self.model.generate(list(prompts), params, use_tqdm=False)
        return [[Completion(c.text, len(o.prompt_token_ids), len(c.token_ids),
                            "length" if c.finish_reason == "length" else "stop") for c in o.outputs] for o in outs]
