"""The back-end deployments the agent ingress composes: the student, the retriever, the sessions.

(The sandbox deployment is ``deepcoder.serve.sandbox_app.ToolSandbox``.) Each answers plain
Python calls through a ``DeploymentHandle``; none is exposed over HTTP on its own. Failures the
caller should branch on come back as data (``{"error": ...}``), so they survive Ray's exception
wrapping unchanged.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any, AsyncIterator, Sequence

from ray import serve

from deepcoder.config import Config


def model_id(source: str) -> str:
    """The served id of a model source: ``smollm2``, or the folder / file name."""
    path = Path(source)
    return path.name if (path.is_dir() or path.suffix == ".gguf") and path.name else source


@serve.deployment(
    ray_actor_options={"num_cpus": 1},
    max_ongoing_requests=8,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 2},
    health_check_period_s=10,
)
class StudentModel:
    """The distilled student (``StudentPolicy``): transformers on CPU, vLLM where it is installed
    and a GPU is assigned (``ray_actor_options: {num_gpus: 1}``). Loads ``smollm2``, a merged
    export folder, or a LoRA adapter folder on ``base``."""

    def __init__(self, source: str = "smollm2", *, base: str | None = None, tokenizer: str | None = None,
                 name: str | None = None, max_new_tokens: int = 256, backend: str = "auto") -> None:
        from deepcoder.agent.student import StudentPolicy

        self.name = name or model_id(source)
        self.source = source
        self.policy = StudentPolicy.load(source, base=base, tokenizer=tokenizer, name=self.name,
                                         backend=backend, max_new_tokens=max_new_tokens)

    def info(self) -> dict[str, Any]:
        return {"id": self.name, "source": self.source, "backend": self.policy.backend, "loaded": True,
                "deterministic": self.policy.temperature == 0, "max_new_tokens": self.policy.max_new_tokens}

    async def generate(self, messages: list[dict[str, str]], stop: Sequence[str] = ()) -> dict[str, Any]:
        """One agent turn (the Policy call). Raises ``PolicyError`` when the model cannot answer."""
        out = await self.policy.agenerate(messages, stop=stop)
        return {"text": out.text, "usage": out.usage, "finish_reason": out.finish_reason}

    async def chat(self, messages: list[dict[str, str]], *, n: int = 1, stop: Sequence[str] = (),
                   temperature: float = 0.0, max_tokens: int | None = None) -> list[dict[str, Any]]:
        """Raw chat completions (the OpenAI-compatible endpoint)."""
        prompt = self.policy.chat_prompt(messages)
        [group] = await asyncio.to_thread(self.policy.complete, [prompt], n=n, stop=list(stop),
                                          temperature=temperature, max_new_tokens=max_tokens)
        return [asdict(c) for c in group]

    async def stream_chat(self, messages: list[dict[str, str]], *, stop: Sequence[str] = (),
                          temperature: float = 0.0, max_tokens: int | None = None) -> AsyncIterator[dict]:
        """Text deltas as they are generated, then ``{"finish_reason", "usage"}``."""
        if self.policy.backend != "transformers":  # pragma: no cover - GPU (vLLM): one chunk
            [c] = await self.chat(messages, stop=stop, temperature=temperature, max_tokens=max_tokens)
            yield {"delta": c["text"]}
            yield {"finish_reason": c["finish_reason"], "usage": _usage(c["prompt_tokens"], c["completion_tokens"])}
            return
        async for item in _stream_hf(self.policy, self.policy.chat_prompt(messages), list(stop), temperature,
                                     max_tokens or self.policy.max_new_tokens):
            yield item


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _stream_hf(policy: Any, prompt: str, stop: list[str], temperature: float,
                     max_new: int) -> AsyncIterator[dict]:
    """transformers ``generate`` with a ``TextIteratorStreamer``, under the policy's lock."""
    import torch
    from transformers import TextIteratorStreamer

    from deepcoder.agent.student import cut_at_stop

    tok = policy.tokenizer
    enc = tok([prompt], return_tensors="pt", add_special_tokens=False)
    device = next(policy.model.parameters()).device
    enc = {k: v.to(device) for k, v in enc.items()}
    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True, timeout=600)
    kwargs: dict[str, Any] = dict(max_new_tokens=max_new, do_sample=temperature > 0, pad_token_id=tok.pad_token_id,
                                  streamer=streamer)
    if temperature > 0:
        kwargs.update(temperature=temperature, top_p=policy.top_p)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    if stop:
        kwargs.update(stop_strings=stop, tokenizer=tok)
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            with policy._lock, torch.inference_mode():
                result["out"] = policy.model.generate(**enc, **kwargs)
        except Exception as exc:  # noqa: BLE001 - reported to the caller below
            result["error"] = exc
            streamer.end()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    text, sent = "", 0
    it = iter(streamer)
    while True:
        piece = await asyncio.to_thread(next, it, None)
        if piece is None:
            break
        text += piece
        cut, stopped = cut_at_stop(text, stop)
        # hold back a tail that could be the start of a stop string
        hold = 0 if stopped else max((len(s) - 1 for s in stop), default=0)
        upto = max(sent, len(cut) - hold)
        if upto > sent:
            yield {"delta": cut[sent:upto]}
            sent = upto
        if stopped:
            break
    await asyncio.to_thread(thread.join)
    if "error" in result:
        raise RuntimeError(f"generation failed: {type(result['error']).__name__}: {result['error']}")
    cut, stopped = cut_at_stop(text, stop)
    if len(cut) > sent:
        yield {"delta": cut[sent:]}
    prompt_tokens = int(enc["input_ids"].shape[1])
    generated = result["out"][0][prompt_tokens:].tolist()
    eos = {t for t in (tok.eos_token_id, tok.pad_token_id) if t is not None}
    ids = list(generated)
    while ids and ids[-1] in eos:
        ids.pop()
    ended = stopped or len(ids) < len(generated) or len(generated) < max_new
    yield {"finish_reason": "stop" if ended else "length", "usage": _usage(prompt_tokens, len(ids))}


@serve.deployment(
    ray_actor_options={"num_cpus": 0.25},
    max_ongoing_requests=32,
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 8},
)
class Retriever:
    """The BM25 index (``deepcoder.tools.retrieval``) as a shared deployment."""

    def __init__(self, config: Config) -> None:
        from deepcoder.tools.retrieval import get_index

        self.config = config
        self.index = get_index(config)

    def info(self) -> dict[str, Any]:
        return {"passages": len(self.index), "loaded": True}

    async def search(self, query: str, k: int | None = None) -> dict[str, Any]:
        from deepcoder.tools.retrieval import RetrievalError

        try:
            passages = await asyncio.to_thread(self.index.search, query, k)
        except RetrievalError as exc:
            return {"error": str(exc)}
        return {"passages": [p.model_dump() for p in passages]}


@serve.deployment(ray_actor_options={"num_cpus": 0}, num_replicas=1, max_ongoing_requests=256)
class SessionStore:
    """Multi-turn session state shared by every ingress replica (one replica: in-memory state)."""

    def __init__(self, max_sessions: int = 10000) -> None:
        from deepcoder.serve.sessions import SessionStore as Store

        self.store = Store(max_sessions)

    def call(self, method: str, *args: Any) -> dict[str, Any]:
        from deepcoder.serve.sessions import SessionError

        if method not in ("create", "get", "begin_turn", "end_turn", "delete", "count"):
            return {"error": [400, f"unknown session operation {method!r}"]}
        try:
            return {"ok": getattr(self.store, method)(*args)}
        except SessionError as exc:
            return {"error": [exc.status, exc.message]}
