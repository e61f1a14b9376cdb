"""API keys (kept only as SHA-256 digests, compared in constant time) and per-key rate limits.

A key's *id* is the first 12 hex digits of its digest: safe to log, to label metrics with and to
name in ``serve.key_requests_per_minute``. Limits are token buckets per key in each ingress
replica (with R ingress replicas a key can reach R times its limit cluster-wide).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from dataclasses import dataclass
from typing import Iterable, Mapping

from deepcoder.config import ServeConfig

KEY_ID_CHARS = 12


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_id(key_or_digest: str, *, is_digest: bool = False) -> str:
    return (key_or_digest if is_digest else digest(key_or_digest))[:KEY_ID_CHARS]


class AuthError(Exception):
    """No usable credentials (401)."""


class KeyStore:
    """Accepted keys as digests. ``check`` hashes the presented key and compares with every digest."""

    def __init__(self, digests: Iterable[str]) -> None:
        self._digests = sorted({d.strip().lower() for d in digests if d and d.strip()})
        for d in self._digests:
            if len(d) != 64 or any(c not in "0123456789abcdef" for c in d):
                raise ValueError("serve.api_key_hashes: each entry must be a SHA-256 hex digest (64 hex digits)")

    @classmethod
    def from_config(cls, config: ServeConfig, env: Mapping[str, str] | None = None) -> "KeyStore":
        env = os.environ if env is None else env
        raw = [k.strip() for k in env.get(config.api_keys_env, "").split(",") if k.strip()]
        raw += [k.get_secret_value() for k in config.api_keys if k.get_secret_value()]
        return cls([digest(k) for k in raw] + list(config.api_key_hashes))

    def __len__(self) -> int:
        return len(self._digests)

    def check(self, authorization: str | None) -> str:
        """The key id for an ``Authorization: Bearer <key>`` header; raises ``AuthError``."""
        if not authorization:
            raise AuthError("missing API key: send 'Authorization: Bearer <key>'")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("malformed Authorization header: use 'Bearer <key>'")
        presented = digest(token)
        match = None
        for d in self._digests:  # no early exit: time does not depend on which digest matched
            if hmac.compare_digest(presented, d):
                match = d
        if match is None:
            raise AuthError("invalid API key")
        return key_id(match, is_digest=True)


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token bucket per key: ``rpm`` requests per minute, bursts up to ``rpm`` (one minute's worth)."""

    def __init__(self, default_rpm: int, overrides: Mapping[str, int] | None = None,
                 clock=time.monotonic) -> None:
        self.default_rpm = default_rpm
        self.overrides = dict(overrides or {})
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def rpm(self, key: str) -> int:
        return self.overrides.get(key, self.default_rpm)

    def acquire(self, key: str) -> float:
        """0.0 when the request may go ahead, else the seconds until it may (for retry-after)."""
        rate = self.rpm(key) / 60.0
        capacity = float(self.rpm(key))
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(capacity, now)
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / rate
