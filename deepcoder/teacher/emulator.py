"""A Groq-compatible chat-completions server on loopback, for tests and the keyless demo.

It speaks the same JSON as Groq's OpenAI-compatible API (``/openai/v1/chat/completions``, and
``/v1/chat/completions`` for OpenAI-style clients), sends Groq's rate-limit headers, answers 429
with ``retry-after`` when its RPM/TPM budget is spent, and honours ``reasoning_format``. Its
completions come from a pluggable policy; the built-in one is the reference teacher, an honest
offline stand-in that says so in every response (``system_fingerprint``).

Token counts are estimates (``estimate_tokens``: about four characters a token), the same
estimate the client's rate limiter uses, so both sides agree on what a request costs.
"""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from deepcoder.agent.format import parse_steps
from deepcoder.agent.policy import PolicyError

DECOMMISSIONED = {"deepseek-r1-distill-llama-70b": "2025-10-02"}
DEFAULT_MODELS = ("openai/gpt-oss-120b", "openai/gpt-oss-20b", "qwen/qwen3-32b", "deepseek-reasoner")
FINGERPRINT = "deepcoder-emulator/reference-teacher"

PolicyFn = Callable[[Sequence[dict[str, str]]], str]


def estimate_tokens(text: str) -> int:
    """About four characters a token (both the emulator and the client limiter use this)."""
    return max(1, math.ceil(len(text) / 4))


def prompt_tokens(messages: Sequence[dict[str, Any]]) -> int:
    return sum(estimate_tokens(str(m.get("content") or "")) + 4 for m in messages)


class _Bucket:
    """Groq-style budget: refills continuously, holds at most one window's worth."""

    def __init__(self, per_minute: float, window_s: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = self.rate * window_s
        self.level = self.capacity
        self.updated = time.monotonic()

    def refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_for(self, amount: float) -> float:
        return 0.0 if self.level >= amount else (amount - self.level) / self.rate

    def reset_s(self) -> float:
        return (self.capacity - self.level) / self.rate


@dataclass
class EmulatorStats:
    requests: int = 0
    completions: int = 0
    rate_limited: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_request: float | None = None
    last_request: float | None = None
    faults: list[int] = field(default_factory=list)


def split_reasoning(text: str) -> tuple[str, str]:
    """(reasoning, the rest) of a ReAct reply: reasoning spans become the provider's reasoning."""
    parsed = parse_steps(text)
    if not any(step.action for step in parsed.steps):  # a plain answer (no ReAct step) stays content
        return "", text.strip()
    reasoning = "\n\n".join(step.thought for step in parsed.steps if step.thought)
    rest = "\n".join(s.text_of(text) for s in parsed.segmentation.spans if s.kind != "reason")
    return reasoning.strip(), rest.strip()


def _error(status: int, message: str, code: str, kind: str = "invalid_request_error",
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": code}}, status_code=status,
                        headers=headers)


def create_app(policy: PolicyFn, *, requests_per_minute: float = 1e6, tokens_per_minute: float = 1e9,
               window_s: float = 60.0, latency_s: float = 0.0, api_key: str | None = None,
               models: Sequence[str] = DEFAULT_MODELS) -> FastAPI:
    """The emulator's FastAPI app. ``api_key`` None accepts any non-empty key."""
    app = FastAPI(title="DeepCoder Groq emulator")
    stats = EmulatorStats()
    requests = _Bucket(requests_per_minute, window_s)
    tokens = _Bucket(tokens_per_minute, window_s)
    lock = asyncio.Lock()
    app.state.stats = stats

    def limit_headers() -> dict[str, str]:
        from deepcoder.teacher.ratelimit import format_duration

        return {
            "x-ratelimit-limit-requests": str(int(requests_per_minute)),
            "x-ratelimit-limit-tokens": str(int(tokens_per_minute)),
            "x-ratelimit-remaining-requests": str(max(0, int(requests.level))),
            "x-ratelimit-remaining-tokens": str(max(0, int(tokens.level))),
            "x-ratelimit-reset-requests": format_duration(requests.reset_s()),
            "x-ratelimit-reset-tokens": format_duration(tokens.reset_s()),
        }

    def authorised(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        key = header.removeprefix("Bearer ").strip()
        return bool(key) and (api_key is None or key == api_key)

    @app.get("/openai/v1/models")
    @app.get("/v1/models")
    async def list_models(request: Request) -> JSONResponse:
        if not authorised(request):
            return _error(401, "Invalid API Key", "invalid_api_key")
        return JSONResponse({"object": "list", "data": [{"id": m, "object": "model", "owned_by": "deepcoder"}
                                                        for m in models]})

    @app.get("/emulator/stats")
    async def get_stats() -> dict:
        return stats.__dict__

    @app.post("/emulator/faults")
    async def add_faults(request: Request) -> dict:
        """Test hook: the next requests answer with these HTTP status codes."""
        stats.faults.extend(int(code) for code in (await request.json()).get("statuses", []))
        return {"pending": stats.faults}

    @app.post("/openai/v1/chat/completions")
    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> JSONResponse:
        now = time.time()
        stats.requests += 1
        stats.first_request = stats.first_request or now
        stats.last_request = now
        if not authorised(request):
            return _error(401, "Invalid API Key", "invalid_api_key")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "request body is not valid JSON", "invalid_json")
        model = body.get("model")
        if model in DECOMMISSIONED:
            return _error(400, f"The model `{model}` has been decommissioned and is no longer supported "
                          f"(since {DECOMMISSIONED[model]}).", "model_decommissioned")
        if model not in models:
            return _error(404, f"The model `{model}` does not exist or you do not have access to it.",
                          "model_not_found")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "'messages' must be a non-empty array", "invalid_messages")
        if stats.faults:
            status = stats.faults.pop(0)
            stats.errors += 1
            return _error(status, f"injected fault {status}", "emulator_fault", "server_error")
        try:
            text = policy(messages)
        except PolicyError as exc:
            return _error(400, str(exc), "unknown_task")
        max_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or 8192)
        finish_reason = "stop"
        for stop in body.get("stop") or []:
            if stop and stop in text:
                text = text[:text.index(stop)]
        if estimate_tokens(text) > max_tokens:
            text, finish_reason = text[:max_tokens * 4], "length"
        reasoning_format = body.get("reasoning_format") or "raw"
        reasoning, rest = split_reasoning(text)
        message: dict[str, Any] = {"role": "assistant"}
        if reasoning_format == "parsed":
            message["content"], message["reasoning"] = rest, reasoning
        elif reasoning_format == "hidden":
            message["content"] = rest
        else:
            message["content"] = (f"<think>\n{reasoning}\n</think>\n" if reasoning else "") + rest
        p_tokens, c_tokens = prompt_tokens(messages), estimate_tokens(text)
        async with lock:
            requests.refill()
            tokens.refill()
            wait = max(requests.wait_for(1), tokens.wait_for(p_tokens + c_tokens))
            if wait > 0:
                stats.rate_limited += 1
                headers = {**limit_headers(), "retry-after": f"{max(1, math.ceil(wait))}"}
                return _error(429, f"Rate limit reached for model `{model}`: please try again in "
                              f"{wait:.2f}s.", "rate_limit_exceeded", "tokens", headers)
            requests.level -= 1
            tokens.level -= p_tokens + c_tokens
            headers = limit_headers()
        if latency_s:
            await asyncio.sleep(latency_s)
        stats.completions += 1
        stats.prompt_tokens += p_tokens
        stats.completion_tokens += c_tokens
        return JSONResponse({
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(now),
            "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": p_tokens, "completion_tokens": c_tokens,
                      "total_tokens": p_tokens + c_tokens, "queue_time": 0.0,
                      "prompt_time": 0.0, "completion_time": latency_s, "total_time": latency_s},
            "x_groq": {"id": f"req_{uuid.uuid4().hex[:26]}"},
        }, headers=headers)

    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmulatorServer:
    """Runs the emulator with uvicorn in a background thread; a context manager."""

    def __init__(self, app: FastAPI, port: int | None = None) -> None:
        self.app = app
        self.port = port or free_port()
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                     access_log=False, lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, name="groq-emulator", daemon=True)

    @property
    def base_url(self) -> str:
        """What the groq SDK takes as base_url (it appends /openai/v1/...)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def stats(self) -> EmulatorStats:
        return self.app.state.stats

    def start(self, timeout_s: float = 20.0) -> "EmulatorServer":
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the Groq emulator did not start on 127.0.0.1:{self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> "EmulatorServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def reference_app(tasks, **limits) -> FastAPI:
    """The emulator with the reference teacher for ``tasks`` as its policy."""
    from deepcoder.teacher.reference import ReferencePolicy

    return create_app(ReferencePolicy(tasks).reply, **limits)
