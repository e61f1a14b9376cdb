"""Does generation use the provider's budget fully without tripping its rate limits?

Runs phase 1 for ``--seconds`` against the loopback Groq emulator set to ``--rpm`` / ``--tpm``
(Groq-style: the budget refills continuously and holds one minute's worth), through the real
groq client and Ray actors, twice in one run:

* **shared**: our cluster-wide rate-limiter actor (one budget for all actors, RPM and TPM);
* **baseline**: LangChain's ``InMemoryRateLimiter``, one per actor, each set to the full RPM
  (it cannot share a budget across processes, and it has no notion of tokens).

For each it prints the achieved request and token rates over the emulator's own clock divided by
the allowed rates, the utilisation of whichever limit binds, the share of requests answered 429,
and episodes lost. Targets for the shared limiter: utilisation >= 0.95, 429s <= 1%, lost = 0.

    python benchmarks/bench_generation.py [--seconds 60] [--rpm 300] [--tpm 60000] [--actors 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_once(kind: str, args: argparse.Namespace, tasks) -> dict:
    from deepcoder.config import load_config
    from deepcoder.teacher.generate import generate

    config = load_config("demo", env={}, overrides={
        "generation": {"num_actors": args.actors, "episodes_per_actor": args.per_actor,
                       "requests_per_minute": args.rpm, "tokens_per_minute": args.tpm, "max_problems": None},
        "emulator": {"window_s": 60.0, "latency_s": args.latency},
        "logging": {"level": "WARNING"},
    })
    holder = {}
    with tempfile.TemporaryDirectory() as tmp:
        summary = generate(config, Path(tmp) / "t.jsonl", tasks=tasks, deadline_s=args.seconds,
                           limiter_kind=kind, on_emulator=lambda emu: holder.setdefault("emu", emu),
                           show_progress=False)
    stats = holder["emu"].stats
    window = max(1e-9, (stats.last_request or 0) - (stats.first_request or 0))
    tokens = stats.prompt_tokens + stats.completion_tokens
    request_util = stats.completions / window / (args.rpm / 60)
    token_util = tokens / window / (args.tpm / 60)
    return {
        "limiter": kind,
        "window_s": round(window, 1),
        "requests": stats.requests,
        "completions": stats.completions,
        "rate_limited": stats.rate_limited,
        "share_429": stats.rate_limited / max(1, stats.requests),
        "request_utilisation": request_util,
        "token_utilisation": token_util,
        "binding_utilisation": max(request_util, token_util),
        "binding_limit": "requests" if request_util >= token_util else "tokens",
        "episodes_written": summary.written,
        "episodes_verified": summary.verified,
        "episodes_lost": summary.lost,
        "episodes_failed": summary.failed_episodes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rpm", type=float, default=300.0)
    parser.add_argument("--tpm", type=float, default=60000.0)
    parser.add_argument("--actors", type=int, default=4)
    parser.add_argument("--per-actor", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.2, help="emulator seconds per completion")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from deepcoder.data.problems import load_mbpp

    tasks = load_mbpp("train")  # 374 problems: more than a minute's budget can use
    results = [run_once("shared", args, tasks)]
    if not args.skip_baseline:
        results.append(run_once("langchain-per-actor", args, tasks))

    print(f"generation under rate limits: {args.seconds:g}s runs, {args.rpm:g} RPM / {args.tpm:g} TPM, "
          f"{args.actors} actors x {args.per_actor} episodes, {platform.machine()} {platform.release()}")
    header = f"{'limiter':<22}{'req util':>9}{'tok util':>9}{'binding':>9}{'429 share':>10}{'done':>6}{'lost':>6}"
    print(header)
    for r in results:
        print(f"{r['limiter']:<22}{r['request_utilisation']:>9.3f}{r['token_utilisation']:>9.3f}"
              f"{r['binding_utilisation']:>9.3f}{r['share_429']:>10.2%}{r['episodes_written']:>6}"
              f"{r['episodes_lost']:>6}")
    shared = results[0]
    ok = shared["binding_utilisation"] >= 0.95 and shared["share_429"] <= 0.01 and shared["episodes_lost"] == 0
    print(f"targets (shared): utilisation >= 0.95 of the binding {shared['binding_limit']} limit, "
          f"429s <= 1%, lost = 0: {'PASS' if ok else 'FAIL'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
