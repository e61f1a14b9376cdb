"""Cluster-wide request and token budgets for the teacher API.

Every generation actor asks one named Ray actor for permission before each request, so the
whole cluster stays under the provider's RPM and TPM however many actors run. The budget is a
pair of token buckets used by *reservation*: a caller takes what it needs at once (the level may
go negative) and is told how long to wait, so callers queue fairly, the limiter never sleeps, and
an async actor method returns in microseconds. Responses feed it back: actual token usage
settles each reservation, ``x-ratelimit-remaining-*`` headers pull the buckets down when another
client shares the key, and a 429's ``retry-after`` blocks everyone until then.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import Mapping, Protocol

_DURATION = re.compile(r"(?:(?P<h>[\d.]+)h)?(?:(?P<m>[\d.]+)m(?!s))?(?:(?P<s>[\d.]+)s)?(?:(?P<ms>[\d.]+)ms)?$")


def parse_duration(text: str | None) -> float | None:
    """Seconds in a Go duration string as Groq sends them (``7.66s``, ``2m59.56s``, ``120ms``)."""
    if not text:
        return None
    text = text.strip()
    try:
        return float(text)  # retry-after is plain seconds
    except ValueError:
        pass
    m = _DURATION.match(text)
    if not m or not any(m.groupdict().values()):
        return None
    parts = {k: float(v) for k, v in m.groupdict().items() if v}
    return parts.get("h", 0) * 3600 + parts.get("m", 0) * 60 + parts.get("s", 0) + parts.get("ms", 0) / 1000


def format_duration(seconds: float) -> str:
    """The inverse, for the emulator's headers."""
    seconds = max(0.0, seconds)
    if seconds >= 60:
        return f"{int(seconds // 60)}m{seconds % 60:.2f}s"
    return f"{seconds:.2f}s"


@dataclass
class _Bucket:
    rate: float  # units per second
    capacity: float
    level: float
    updated: float

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_for_debt(self) -> float:
        return max(0.0, -self.level / self.rate)


@dataclass
class LimiterStats:
    reservations: int = 0
    tokens_reserved: int = 0
    tokens_settled: int = 0
    rate_limited: int = 0
    waited_s: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


class TokenBudget:
    """RPM and TPM buckets with reservations (plain Python: the Ray actor wraps it)."""

    def __init__(self, requests_per_minute: float, tokens_per_minute: float, burst_s: float = 1.0,
                 clock=time.monotonic, expected_completion: float = 256.0) -> None:
        self.clock = clock
        # Completion length is unknown when a request is sent: reserve the running mean and settle
        # the difference when the usage comes back. One mean for the cluster learns fastest.
        self.expected_completion = expected_completion
        now = clock()
        rps, tps = requests_per_minute / 60.0, tokens_per_minute / 60.0
        # A small burst keeps the pace even: a full minute of burst would let a fresh cluster
        # spend a minute's budget at once and then stall (or draw 429s from a stricter server).
        self.requests = _Bucket(rps, max(1.0, rps * burst_s), max(1.0, rps * burst_s), now)
        self.tokens = _Bucket(tps, max(1.0, tps * burst_s), max(1.0, tps * burst_s), now)
        self.blocked_until = 0.0
        self.stats = LimiterStats()

    def reserve(self, prompt_tokens: int) -> tuple[float, int]:
        """Take one request and its expected tokens now: (seconds to wait before sending, tokens reserved)."""
        tokens = int(prompt_tokens + self.expected_completion)
        now = self.clock()
        for bucket in (self.requests, self.tokens):
            bucket.refill(now)
        self.requests.level -= 1
        self.tokens.level -= tokens
        delay = max(self.requests.wait_for_debt(), self.tokens.wait_for_debt(), self.blocked_until - now)
        self.stats.reservations += 1
        self.stats.tokens_reserved += tokens
        self.stats.waited_s += delay
        return delay, tokens

    def settle(self, reserved: int, actual: int, completion: int | None = None) -> None:
        """Correct a reservation with the tokens the response really used."""
        self.tokens.level += reserved - actual
        self.stats.tokens_settled += actual
        if completion:
            self.expected_completion += 0.2 * (completion - self.expected_completion)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Follow the server: if it has fewer tokens/requests left than we think, believe it."""
        now = self.clock()
        for bucket, name in ((self.requests, "requests"), (self.tokens, "tokens")):
            remaining = headers.get(f"x-ratelimit-remaining-{name}")
            if remaining is None:
                continue
            try:
                value = float(remaining)
            except ValueError:
                continue
            bucket.refill(now)
            bucket.level = min(bucket.level, value)

    def penalize(self, retry_after_s: float) -> None:
        """A 429: nobody sends until the server said it would accept again."""
        self.stats.rate_limited += 1
        self.blocked_until = max(self.blocked_until, self.clock() + max(0.0, retry_after_s))

    def snapshot(self) -> dict:
        return asdict(self.stats)


class Limiter(Protocol):
    """What the teacher client needs from a limiter (local or the Ray actor)."""

    async def reserve(self, prompt_tokens: int) -> tuple[float, int]: ...

    async def settle(self, reserved: int, actual: int, completion: int | None,
                     headers: Mapping[str, str]) -> None: ...

    async def penalize(self, retry_after_s: float) -> None: ...


class LocalLimiter:
    """An in-process limiter for one process (scripts, tests)."""

    def __init__(self, requests_per_minute: float, tokens_per_minute: float, burst_s: float = 1.0) -> None:
        self.budget = TokenBudget(requests_per_minute, tokens_per_minute, burst_s)

    async def reserve(self, prompt_tokens: int) -> tuple[float, int]:
        return self.budget.reserve(prompt_tokens)

    async def settle(self, reserved: int, actual: int, completion: int | None,
                     headers: Mapping[str, str]) -> None:
        self.budget.settle(reserved, actual, completion)
        self.budget.observe(headers)

    async def penalize(self, retry_after_s: float) -> None:
        self.budget.penalize(retry_after_s)


class RateLimiterActor:
    """The named, cluster-wide limiter. Async methods that never sleep: each call is O(1)."""

    def __init__(self, requests_per_minute: float, tokens_per_minute: float, burst_s: float = 1.0) -> None:
        self.budget = TokenBudget(requests_per_minute, tokens_per_minute, burst_s)

    async def reserve(self, prompt_tokens: int) -> tuple[float, int]:
        return self.budget.reserve(prompt_tokens)

    async def settle(self, reserved: int, actual: int, completion: int | None, headers: dict[str, str]) -> None:
        self.budget.settle(reserved, actual, completion)
        self.budget.observe(headers)

    async def penalize(self, retry_after_s: float) -> None:
        self.budget.penalize(retry_after_s)

    async def stats(self) -> dict:
        return self.budget.snapshot()


class RayLimiter:
    """Client-side handle to the named actor, shaped like ``Limiter``."""

    def __init__(self, actor) -> None:
        self.actor = actor

    async def reserve(self, prompt_tokens: int) -> tuple[float, int]:
        return await self.actor.reserve.remote(prompt_tokens)

    async def settle(self, reserved: int, actual: int, completion: int | None,
                     headers: Mapping[str, str]) -> None:
        await self.actor.settle.remote(reserved, actual, completion, dict(headers))

    async def penalize(self, retry_after_s: float) -> None:
        await self.actor.penalize.remote(retry_after_s)


class PerProcessLangChainLimiter:
    """LangChain's ``InMemoryRateLimiter`` behind the ``Limiter`` interface, for comparison only.

    It paces requests within one process and knows nothing of tokens or of other processes, so
    N actors each holding one send N times the budget. ``benchmarks/bench_generation.py`` runs
    it against the shared actor."""

    def __init__(self, requests_per_minute: float) -> None:
        from langchain_core.rate_limiters import InMemoryRateLimiter

        self.limiter = InMemoryRateLimiter(requests_per_second=requests_per_minute / 60.0,
                                           check_every_n_seconds=0.01, max_bucket_size=1)

    async def reserve(self, prompt_tokens: int) -> tuple[float, int]:
        await self.limiter.aacquire()
        return 0.0, prompt_tokens

    async def settle(self, reserved: int, actual: int, completion: int | None,
                     headers: Mapping[str, str]) -> None:
        return None

    async def penalize(self, retry_after_s: float) -> None:
        return None


def get_rate_limiter(name: str, requests_per_minute: float, tokens_per_minute: float,
                     namespace: str | None = None):
    """The named limiter actor, created on first use (``num_cpus=0``: it must not take a CPU
    that Ray Data would count on)."""
    import ray

    actor_cls = ray.remote(num_cpus=0)(RateLimiterActor)
    return actor_cls.options(name=name, namespace=namespace, get_if_exists=True,
                             max_concurrency=1000).remote(requests_per_minute, tokens_per_minute)
