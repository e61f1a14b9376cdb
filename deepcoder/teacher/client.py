"""The teacher: a chat-completions endpoint as a ``Policy`` for the agent loop.

Groq goes through the official ``groq`` SDK; DeepSeek's API, vLLM and other OpenAI-compatible
servers through the ``openai`` SDK (``teacher.provider: openai``). Both SDKs' own retries are off:
this client retries 429, 5xx, timeouts and connection errors itself with exponential backoff and
full jitter, honours ``retry-after``, and tells the shared rate limiter what happened. A bad key,
an unknown or decommissioned model and any other 4xx fail at once with the server's message.

Wherever the provider puts the reasoning (``message.reasoning`` on Groq with
``reasoning_format: parsed``, ``reasoning_content`` on DeepSeek and vLLM, or a ``<think>`` block
in the content) it becomes the step's Thought.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Sequence

from deepcoder.agent.policy import Message, PolicyError, PolicyOutput
from deepcoder.config import TeacherConfig
from deepcoder.teacher.emulator import prompt_tokens
from deepcoder.teacher.ratelimit import Limiter, parse_duration

logger = logging.getLogger(__name__)

DEFAULT_BASE_URLS = {"groq": "https://api.groq.com", "openai": "https://api.deepseek.com"}


class TeacherError(PolicyError):
    """The endpoint refuses the request for a reason retrying cannot fix."""


class TeacherUnavailable(PolicyError):
    """Retries ran out (rate limits, server errors or network) without an answer."""


@dataclass
class CallStats:
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _sdk_errors(provider: str):
    if provider == "groq":
        import groq as sdk
    else:
        import openai as sdk
    return sdk


def _describe(exc: Exception) -> str:
    """The server's own message (never the request, which may carry the key)."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(exc).split("\n")[0][:300]


class TeacherClient:
    """Policy over Groq or any OpenAI-compatible endpoint, sync (``generate``) and async."""

    def __init__(self, config: TeacherConfig, *, base_url: str | None = None, limiter: Limiter | None = None,
                 name: str | None = None) -> None:
        if config.api_key is None:
            raise TeacherError(f"no API key: set {config.api_key_env} (or use the demo profile, which needs none)")
        self.config = config
        self.base_url = base_url or config.base_url or DEFAULT_BASE_URLS[config.provider]
        self.limiter = limiter
        self.name = name or f"{config.provider}:{config.model}"
        self.stats = CallStats()
        self._sdk = _sdk_errors(config.provider)
        key = config.api_key.get_secret_value()
        common = {"api_key": key, "base_url": self.base_url, "max_retries": 0, "timeout": config.timeout_s}
        if config.provider == "groq":
            self._sync = self._sdk.Groq(**common)
            self._async = self._sdk.AsyncGroq(**common)
        else:
            self._sync = self._sdk.OpenAI(**common)
            self._async = self._sdk.AsyncOpenAI(**common)

    def __repr__(self) -> str:  # never show the key
        return f"TeacherClient(provider={self.config.provider!r}, model={self.config.model!r}, base_url={self.base_url!r})"

    # ------------------------------------------------------------------ request / response

    def _request(self, messages: Sequence[Message], stop: Sequence[str]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": list(messages),
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        }
        if stop:
            body["stop"] = list(stop)[:4]  # the API takes at most four
        if self.config.reasoning_format is not None:
            if self.config.provider == "groq":
                body["reasoning_format"] = self.config.reasoning_format
            else:
                body["extra_body"] = {"reasoning_format": self.config.reasoning_format}
        return body

    @staticmethod
    def _parse(completion: Any) -> PolicyOutput:
        if not completion.choices:
            return PolicyOutput(text="", finish_reason="empty")
        choice = completion.choices[0]
        message = choice.message
        extra = getattr(message, "model_extra", None) or {}
        reasoning = getattr(message, "reasoning", None) or extra.get("reasoning") or extra.get("reasoning_content")
        usage = {}
        if completion.usage is not None:
            usage = {"prompt_tokens": int(completion.usage.prompt_tokens or 0),
                     "completion_tokens": int(completion.usage.completion_tokens or 0),
                     "total_tokens": int(completion.usage.total_tokens or 0)}
        return PolicyOutput(text=message.content or "", reasoning=reasoning, usage=usage,
                            finish_reason=choice.finish_reason)

    def _classify(self, exc: Exception) -> tuple[bool, float | None]:
        """(retryable, server-requested wait) for an SDK exception; raises TeacherError if fatal."""
        sdk = self._sdk
        if isinstance(exc, (sdk.APITimeoutError, sdk.APIConnectionError)):
            return True, None
        if isinstance(exc, sdk.APIStatusError):
            status = exc.status_code
            retry_after = parse_duration(exc.response.headers.get("retry-after")) if exc.response else None
            if status == 429:
                self.stats.rate_limited += 1
                return True, retry_after
            if status >= 500:
                self.stats.server_errors += 1
                return True, retry_after
            hint = {401: " (check the key in " + self.config.api_key_env + ")",
                    404: " (check teacher.model; the provider may have decommissioned it)"}.get(status, "")
            raise TeacherError(f"{self.config.provider} answered HTTP {status}: {_describe(exc)}{hint}") from None
        raise exc

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full jitter on an exponential ceiling, but never sooner than the server asked."""
        ceiling = min(60.0, 0.5 * 2 ** attempt)
        wait = random.uniform(0, ceiling)
        return max(wait, retry_after or 0.0)

    def _account(self, reserved: int, output: PolicyOutput) -> int:
        self.stats.prompt_tokens += output.usage.get("prompt_tokens", 0)
        self.stats.completion_tokens += output.usage.get("completion_tokens", 0)
        return output.usage.get("total_tokens") or reserved

    # ------------------------------------------------------------------ async

    async def agenerate(self, messages: Sequence[Message], *, stop: Sequence[str] = ()) -> PolicyOutput:
        body = self._request(messages, stop)
        last_error = "no attempt"
        prompt = prompt_tokens(messages)
        for attempt in range(self.config.max_retries + 1):
            reserved = prompt
            if self.limiter is not None:
                delay, reserved = await self.limiter.reserve(prompt)
                if delay > 0:
                    await asyncio.sleep(delay)
            self.stats.requests += 1
            try:
                raw = await self._async.chat.completions.with_raw_response.create(**body)
            except Exception as exc:  # noqa: BLE001 - classified below
                retryable, retry_after = self._classify(exc)
                last_error = _describe(exc)
                if self.limiter is not None:
                    await self.limiter.settle(reserved, 0, None, {})
                    if retry_after is not None and getattr(exc, "status_code", None) == 429:
                        await self.limiter.penalize(retry_after)
                if attempt == self.config.max_retries:
                    break
                self.stats.retries += 1
                await asyncio.sleep(self._backoff(attempt, retry_after))
                continue
            output = self._parse(await raw.parse())
            actual = self._account(reserved, output)
            if self.limiter is not None:
                await self.limiter.settle(reserved, actual, output.usage.get("completion_tokens"), dict(raw.headers))
            return output
        raise TeacherUnavailable(f"no answer after {self.config.max_retries + 1} attempts: {last_error}")

    # ------------------------------------------------------------------ sync

    def generate(self, messages: Sequence[Message], *, stop: Sequence[str] = ()) -> PolicyOutput:
        """Blocking variant (no shared limiter: for scripts and notebooks)."""
        body = self._request(messages, stop)
        last_error = "no attempt"
        for attempt in range(self.config.max_retries + 1):
            self.stats.requests += 1
            try:
                raw = self._sync.chat.completions.with_raw_response.create(**body)
            except Exception as exc:  # noqa: BLE001 - classified below
                _, retry_after = self._classify(exc)
                last_error = _describe(exc)
                if attempt == self.config.max_retries:
                    break
                self.stats.retries += 1
                time.sleep(self._backoff(attempt, retry_after))
                continue
            output = self._parse(raw.parse())
            self._account(0, output)
            return output
        raise TeacherUnavailable(f"no answer after {self.config.max_retries + 1} attempts: {last_error}")

    def list_models(self) -> list[str]:
        """The models the endpoint serves (fails fast on a bad key)."""
        try:
            return [m.id for m in self._sync.models.list().data]
        except Exception as exc:  # noqa: BLE001
            self._classify(exc)
            raise TeacherUnavailable(f"cannot list models: {_describe(exc)}") from None


def langchain_chat_model(config: TeacherConfig, *, base_url: str | None = None):
    """A LangChain ``ChatGroq`` built from the same config, for users who live in LangChain."""
    from langchain_groq import ChatGroq

    if config.api_key is None:
        raise TeacherError(f"no API key: set {config.api_key_env}")
    kwargs: dict[str, Any] = {
        "model": config.model, "temperature": config.temperature, "max_tokens": config.max_tokens,
        "api_key": config.api_key.get_secret_value(), "timeout": config.timeout_s,
        "max_retries": config.max_retries,
    }
    if base_url or config.base_url:
        kwargs["base_url"] = base_url or config.base_url
    if config.reasoning_format is not None:
        kwargs["reasoning_format"] = config.reasoning_format
    return ChatGroq(**kwargs)

