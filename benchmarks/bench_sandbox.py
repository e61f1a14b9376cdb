"""Overhead of the sandbox against a bare interpreter start.

Three latencies, measured in the same loop so that machine noise hits all of them alike (the order
rotates each round):

* baseline: ``subprocess.run([python, "-c", "pass"])`` with the sandbox's own interpreter;
* cold: a sandbox started for the call (``pool_size=0``) running ``pass``;
* warm: a pre-started sandbox running ``pass`` (the pool is given time to refill between calls,
  and only the call is timed).

Then throughput: K back-to-back warm-pool calls with no pause (the pool cannot keep up, so this is
what a busy evaluator sees) against K back-to-back baseline subprocess calls.

The target is warm/baseline <= 2.0; the verdict is printed but the exit status is always 0.

    python benchmarks/bench_sandbox.py [--repeat 30] [--burst 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepcoder.config import SandboxConfig  # noqa: E402
from deepcoder.tools.sandbox import Sandbox  # noqa: E402

WARM_TARGET = 2.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": statistics.median(values) * 1000,
        "p90_ms": percentile(values, 0.9) * 1000,
        "min_ms": min(values) * 1000,
        "max_ms": max(values) * 1000,
        "n": len(values),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=30, help="rounds of (baseline, cold, warm); default 30")
    parser.add_argument("--burst", type=int, default=20, help="back-to-back calls for throughput; default 20")
    parser.add_argument("--settle", type=float, default=0.25,
                        help="seconds to let the pool refill before a timed warm call; default 0.25")
    parser.add_argument("--pool-size", type=int, default=2, help="warm pool size; default 2")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers here")
    args = parser.parse_args(argv)

    cold_sb = Sandbox(SandboxConfig(pool_size=0))
    warm_sb = Sandbox(SandboxConfig(pool_size=args.pool_size))
    python = cold_sb.python
    baseline_argv = [python, "-c", "pass"]

    def baseline() -> float:
        start = time.perf_counter()
        subprocess.run(baseline_argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start

    def sandboxed(sb: Sandbox) -> float:
        start = time.perf_counter()
        result = sb.run("pass")
        elapsed = time.perf_counter() - start
        if not result.ok:
            raise SystemExit(f"sandboxed run failed: exit {result.exit_code}: {result.stderr[-500:]}")
        return elapsed

    def cold() -> float:
        return sandboxed(cold_sb)

    def warm() -> float:
        time.sleep(args.settle)  # let the pool refill; not timed
        return sandboxed(warm_sb)

    try:
        # Warm-up round, not recorded: page cache, first bwrap, the pool.
        warm_sb.warm_up()
        time.sleep(args.settle)
        baseline(), cold(), warm()

        times: dict[str, list[float]] = {"baseline": [], "cold": [], "warm": []}
        kinds = [("baseline", baseline), ("cold", cold), ("warm", warm)]
        for i in range(args.repeat):
            for name, fn in kinds[i % 3:] + kinds[: i % 3]:
                times[name].append(fn())

        stats = {name: summary(values) for name, values in times.items()}
        base = stats["baseline"]["median_ms"]
        ratios = {
            "cold_over_baseline": stats["cold"]["median_ms"] / base,
            "warm_over_baseline": stats["warm"]["median_ms"] / base,
        }

        # Throughput: K calls back to back, no pause.
        time.sleep(args.settle * 2)
        start = time.perf_counter()
        for _ in range(args.burst):
            sandboxed(warm_sb)
        warm_rate = args.burst / (time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(args.burst):
            sandboxed(cold_sb)
        cold_rate = args.burst / (time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(args.burst):
            baseline()
        base_rate = args.burst / (time.perf_counter() - start)
        throughput = {
            "burst": args.burst,
            "baseline_calls_per_s": base_rate,
            "warm_pool_calls_per_s": warm_rate,
            "cold_calls_per_s": cold_rate,
            "warm_pool_over_baseline": warm_rate / base_rate,
        }
    finally:
        cold_sb.close()
        warm_sb.close()

    verdict = "PASS" if ratios["warm_over_baseline"] <= WARM_TARGET else "FAIL"
    print(f"sandbox overhead: {args.repeat} rounds, interpreter {python}, pool_size={args.pool_size}, "
          f"{platform.node()} ({platform.machine()}, {platform.release()})")
    print(f"{'':10} {'median':>9} {'p90':>9} {'min':>9} {'max':>9}")
    for name in ("baseline", "cold", "warm"):
        s = stats[name]
        print(f"{name:10} {s['median_ms']:7.1f}ms {s['p90_ms']:7.1f}ms {s['min_ms']:7.1f}ms {s['max_ms']:7.1f}ms")
    print(f"cold/baseline = {ratios['cold_over_baseline']:.2f}x   warm/baseline = {ratios['warm_over_baseline']:.2f}x")
    print(f"throughput ({args.burst} back-to-back calls): baseline {base_rate:.1f}/s, warm pool {warm_rate:.1f}/s "
          f"({throughput['warm_pool_over_baseline']:.2f}x), cold {cold_rate:.1f}/s")
    print(f"target warm/baseline <= {WARM_TARGET}: {verdict}")

    if args.json:
        out = {
            "repeat": args.repeat,
            "settle_s": args.settle,
            "pool_size": args.pool_size,
            "python": python,
            "host": {"node": platform.node(), "machine": platform.machine(), "kernel": platform.release()},
            "latency": stats,
            "ratios": ratios,
            "throughput": throughput,
            "target_warm_over_baseline": WARM_TARGET,
            "verdict": verdict,
            "raw_s": times,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
