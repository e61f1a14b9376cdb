"""Prometheus metrics of one ingress replica, and the quality signal over time.

Scrape ``GET /metrics`` (Prometheus text). With several ingress replicas each keeps its own
counters; scrape every replica (or sum across them) as usual for per-process exporters. The
quality signal is the share of runs that end with a *valid finish* (finished with a non-empty
answer that passed the request's tests, when it had any), per served model id (its version
label): a lifetime counter pair, a sliding-window gauge, and hourly buckets in ``/v1/stats``.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
QUALITY_WINDOW = 100  # runs
BUCKET_S = 3600


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("deepcoder_http_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("deepcoder_http_request_duration_seconds", "End-to-end request latency",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.tool_calls = Counter("deepcoder_tool_calls", "Agent tool calls by tool and outcome",
                                  ["tool", "outcome"], registry=r)
        self.sandbox_failures = Counter("deepcoder_sandbox_failures",
                                        "Sandbox calls that failed for infrastructure reasons (not the code)",
                                        ["reason"], registry=r)
        self.runs = Counter("deepcoder_agent_runs", "Agent runs by model and final status",
                            ["model", "status"], registry=r)
        self.valid_finishes = Counter("deepcoder_agent_valid_finishes", "Runs ending with a valid finish",
                                      ["model"], registry=r)
        self.valid_share = Gauge("deepcoder_agent_valid_finish_ratio",
                                 f"Share of the last {QUALITY_WINDOW} runs ending with a valid finish",
                                 ["model"], registry=r)
        self.cache = Counter("deepcoder_cache_lookups", "Response cache lookups", ["result"], registry=r)
        self.rate_limited = Counter("deepcoder_rate_limited", "Requests refused with 429", registry=r)
        self.sessions = Gauge("deepcoder_sessions_active", "Live sessions (as last seen)", registry=r)
        self._lock = threading.Lock()
        self._window: dict[str, deque[bool]] = defaultdict(lambda: deque(maxlen=QUALITY_WINDOW))
        self._totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self._hourly: dict[str, dict[int, list[int]]] = defaultdict(dict)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def observe_run(self, model: str, status: str, valid: bool, now: float | None = None) -> None:
        self.runs.labels(model, status).inc()
        if valid:
            self.valid_finishes.labels(model).inc()
        hour = int((now or time.time()) // BUCKET_S) * BUCKET_S
        with self._lock:
            window = self._window[model]
            window.append(valid)
            self.valid_share.labels(model).set(sum(window) / len(window))
            totals = self._totals[model]
            totals[0] += 1
            totals[1] += int(valid)
            bucket = self._hourly[model].setdefault(hour, [0, 0])
            bucket[0] += 1
            bucket[1] += int(valid)
            for old in sorted(self._hourly[model])[:-168]:  # keep a week
                del self._hourly[model][old]

    def stats(self) -> dict:
        with self._lock:
            models = {}
            for model, (runs, valid) in self._totals.items():
                window = self._window[model]
                models[model] = {
                    "runs": runs, "valid_finishes": valid,
                    "valid_finish_share": valid / runs if runs else None,
                    "window_runs": len(window),
                    "window_valid_finish_share": sum(window) / len(window) if window else None,
                    "hourly": [{"start": start, "runs": n, "valid_finishes": v, "valid_finish_share": v / n}
                               for start, (n, v) in sorted(self._hourly[model].items())],
                }
        return {"window": QUALITY_WINDOW, "bucket_s": BUCKET_S, "models": models}

    def render(self) -> bytes:
        return generate_latest(self.registry)
