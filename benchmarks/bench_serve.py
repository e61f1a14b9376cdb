"""Load test of the agent app on loopback, and the cost of Serve over the bare agent loop.

The model is the scripted stand-in (``deepcoder.serve.testing.ScriptedModel``), so the model's
cost is fixed (``--model-delay``) and what is measured is the serving path: HTTP proxy, ingress
(auth, rate limit, validation, metrics), handle calls to the model, sandbox and session
deployments. Each run is the same two-step episode: ``python`` (a real sandbox run) then
``finish``. The baseline runs the very same ``Agent`` loop in this process with a
``ScriptedPolicy`` giving the same replies and the local sandbox.

    .venv/bin/python benchmarks/bench_serve.py [--requests 64] [--concurrency 1 8 32] [--out runs/bench_serve.json]

Reports p50/p99 latency and throughput per concurrency, the count of 5xx answers (must be 0),
and the p50 overhead of Serve at concurrency 1 (target <= 20 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path

import httpx

KEY = "bench-key-0123456789"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def load(url: str, concurrency: int, requests: int) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    bad: list[str] = []
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        for i in counter:
            body = {"prompt": f"six times seven (request {i})", "kind": "math", "model": "scripted"}
            t0 = time.perf_counter()
            response = await client.post("/v1/agent/runs", json=body)
            latencies.append(time.perf_counter() - t0)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 200 and response.json().get("final_answer") != "42":
                bad.append(response.text[:300])

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits,
                                 headers={"Authorization": f"Bearer {KEY}"}) as client:
        started = time.perf_counter()
        await asyncio.gather(*[worker(client) for _ in range(concurrency)])
        elapsed = time.perf_counter() - started
    return {"concurrency": concurrency, "requests": len(latencies), "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000, "mean_ms": statistics.fmean(latencies) * 1000,
            "throughput_rps": len(latencies) / elapsed, "statuses": statuses,
            "errors_5xx": sum(n for s, n in statuses.items() if s >= 500), "wrong_answers": len(bad),
            "wrong_examples": bad[:3]}


FINISH_ONLY = 'SCRIPT:["Thought: known\\nAction: finish\\nAction Input: 42"]'


async def overhead(url: str, config, requests: int, delay_s: float, script: str = "") -> dict:
    """Serve vs the bare loop, interleaved (one of each per round) so both see the same machine load."""
    served, bare, wrong = [], [], []
    run_direct = await direct_runner(config, delay_s, script)
    async with httpx.AsyncClient(base_url=url, timeout=120, headers={"Authorization": f"Bearer {KEY}"}) as client:
        for i in range(requests):
            body = {"prompt": f"six times seven (overhead {i}) {script}", "kind": "math", "model": "scripted"}
            t0 = time.perf_counter()
            response = await client.post("/v1/agent/runs", json=body)
            served.append(time.perf_counter() - t0)
            if response.status_code != 200 or response.json().get("final_answer") != "42":
                wrong.append(response.text[:300])
            bare.append(await run_direct(i))
    diffs = [a - b for a, b in zip(served, bare)]
    return {"requests": requests, "serve_p50_ms": percentile(served, 50) * 1000,
            "serve_p99_ms": percentile(served, 99) * 1000, "direct_p50_ms": percentile(bare, 50) * 1000,
            "direct_p99_ms": percentile(bare, 99) * 1000,
            "overhead_p50_ms": (percentile(served, 50) - percentile(bare, 50)) * 1000,
            "paired_overhead_median_ms": statistics.median(diffs) * 1000, "wrong_answers": len(wrong),
            "wrong_examples": wrong[:3]}


async def direct_runner(config, delay_s: float, script: str = ""):
    """The same episode through the same Agent loop, in process: no HTTP, no handles."""
    from deepcoder.agent.loop import Agent, AgentLimits
    from deepcoder.agent.policy import PolicyOutput
    from deepcoder.agent.types import Task
    from deepcoder.serve.testing import scripted_reply
    from deepcoder.tools.registry import build_tools
    from deepcoder.tools.sandbox import get_sandbox

    class Policy:
        name = "scripted"

        async def agenerate(self, messages, *, stop=()):
            if delay_s:
                await asyncio.sleep(delay_s)
            return PolicyOutput(text=scripted_reply(messages))

    get_sandbox(config.sandbox).warm_up()
    tools = build_tools(config)

    async def run(i: int) -> float:
        agent = Agent(Policy(), tools, AgentLimits(max_steps=config.serve.max_steps))
        t0 = time.perf_counter()
        trajectory = await agent.arun(Task(id=f"d{i}", kind="math", prompt=f"six times seven (overhead {i}) {script}"))
        elapsed = time.perf_counter() - t0
        assert trajectory.final_answer == "42", trajectory.error
        return elapsed

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=64, help="requests per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--model-delay", type=float, default=0.0, help="fixed seconds per scripted model call")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--out", default="runs/bench_serve.json")
    args = parser.parse_args()

    # The in-process baseline forks sandboxes from this Ray driver: same gRPC setting as the
    # ToolSandbox replicas (see deepcoder/serve/sandbox_app.py).
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
    import ray
    from ray import serve

    from deepcoder.config import load_config
    from deepcoder.serve.app import build_app
    from deepcoder.serve.smoke import wait_ready
    from deepcoder.serve.testing import ScriptedModel

    config = load_config("demo", env={}, overrides={"serve": {
        "api_keys": [KEY], "requests_per_minute": 1_000_000, "cache_ttl_s": 0, "max_steps": 4}})
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    small = {"AgentIngress": {"ray_actor_options": {"num_cpus": 0.1}},
             "ToolSandbox": {"ray_actor_options": {"num_cpus": 0.2}},
             "Retriever": {"ray_actor_options": {"num_cpus": 0.1}}}
    serve.run(build_app(config, models={"scripted": ScriptedModel.bind(delay_s=args.model_delay)},
                        actor_options=small), name="agent", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    if not wait_ready(url, 120):
        raise SystemExit("the app did not become ready within 120 s")
    try:
        asyncio.run(load(url, 4, 16))  # warm-up: connections, replicas, sandbox pool
        rows = [asyncio.run(load(url, c, args.requests)) for c in args.concurrency]
        baseline = asyncio.run(overhead(url, config, args.requests, args.model_delay))
        finish_only = asyncio.run(overhead(url, config, args.requests, args.model_delay, FINISH_ONLY))
    finally:
        serve.shutdown()
        ray.shutdown()
    extra = baseline["overhead_p50_ms"]
    errors = sum(r["errors_5xx"] for r in rows)
    result = {"rows": rows, "overhead": baseline, "overhead_finish_only": finish_only,
              "serve_overhead_p50_ms": extra,
              "errors_5xx": errors, "target_overhead_ms": 20.0,
              "episode": "scripted model: python (real sandbox run) then finish",
              "model_delay_s": args.model_delay, "num_cpus": args.num_cpus}
    print(f"{'clients':>8} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'5xx':>5}")
    for r in rows:
        print(f"{r['concurrency']:>8} {r['requests']:>8} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
              f"{r['throughput_rps']:>8.1f} {r['errors_5xx']:>5}")
    print(f"1 client, interleaved: Serve p50 {baseline['serve_p50_ms']:.1f} ms, direct agent loop (same episode, "
          f"in process) p50 {baseline['direct_p50_ms']:.1f} ms (p99 {baseline['serve_p99_ms']:.1f} / "
          f"{baseline['direct_p99_ms']:.1f} ms)")
    print(f"Serve overhead: {extra:+.1f} ms p50 (paired median {baseline['paired_overhead_median_ms']:+.1f} ms; "
          f"target <= 20 ms); 5xx: {errors}")
    print(f"finish-only episode (one model call, no sandbox): Serve p50 {finish_only['serve_p50_ms']:.1f} ms vs "
          f"direct {finish_only['direct_p50_ms']:.1f} ms: overhead {finish_only['overhead_p50_ms']:+.1f} ms")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    wrong = sum(r["wrong_answers"] for r in rows) + baseline["wrong_answers"] + finish_only["wrong_answers"]
    print(f"wrong answers: {wrong}")
    return 0 if errors == 0 and wrong == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
