"""Phase 2 throughput: Ray Data against a single-process loop, on synthetic trajectories.

Both paths do the same work per trajectory (parse and validate the JSON, quality filter,
segment, render with the chat template, tokenize with offsets, build the masks) and write
Parquet; they are timed in the same run on the same file. Ray Data: ``read_text`` ->
``map_batches`` with the stateful tokenizer class on an ``ActorPoolStrategy`` pool ->
``write_parquet``. Ray is started and settled before timing (a cluster is long-lived: its
prestarted workers and Ray Data's per-cluster stats and autoscaling actors exist already); the
pipeline's own actor start-up and tokenizer loading are timed.
Peak RSS is sampled over the driver and every process under it (Ray's workers included).

    python benchmarks/bench_masks.py [--n 10000] [--json out.json]

Target: Ray Data at least 1.6x the single-process rate on 2 CPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = ("the", "list", "value", "index", "sum", "check", "loop", "string", "count", "result", "tests", "edge",
         "case", "empty", "input", "sorted", "return", "first", "last", "number")


def synthetic(n: int, seed: int = 0):
    """Trajectories shaped like the teacher's: 2-5 steps of thought, code, output; then finish."""
    from deepcoder.agent.prompts import system_prompt
    from deepcoder.agent.types import Step, Task, Trajectory

    rng = random.Random(seed)
    system = system_prompt("- python(code): run code\n- retrieve(query, k): search docs\n- finish(answer): end",
                           ["python", "retrieve", "finish"])

    def words(k: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(k))

    for i in range(n):
        steps = []
        for s in range(rng.randint(1, 4)):
            code = "\n".join(f"x{j} = [{', '.join(str(rng.randint(0, 99)) for _ in range(6))}]"
                             for j in range(rng.randint(2, 8))) + "\nprint(sum(x0))"
            steps.append(Step(thought=words(rng.randint(15, 60)), action="python", tool_input={"code": code},
                              observation=str(rng.randint(0, 10**6))))
        steps.append(Step(thought=words(20), action="finish", action_input="done", tool_input={"answer": "done"}))
        yield Trajectory(task=Task(id=f"synthetic/{i}", kind="code", prompt=words(30), tests=["assert True"]),
                         system_prompt=system, steps=steps, status="finished", verified=True, final_answer="done")


class PeakRSS:
    """Samples the RSS of this process and all its descendants (Ray's raylet and workers)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(0.5)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def single_process(path: Path, out: Path, kwargs: dict) -> float:
    import pyarrow.parquet as pq

    from deepcoder.data.build import TokenizeTrajectories, rows_to_table

    started = time.perf_counter()
    worker = TokenizeTrajectories(**kwargs)
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            rows.append(worker.process(line))
            if len(rows) == 1000:
                pq.write_table(rows_to_table(rows), out / f"part-{time.perf_counter_ns()}.parquet")
                rows = []
    if rows:
        pq.write_table(rows_to_table(rows), out / f"part-{time.perf_counter_ns()}.parquet")
    return time.perf_counter() - started


def ray_data(path: Path, out: Path, kwargs: dict, batch_size: int) -> float:
    import ray

    from deepcoder.data.build import TokenizeTrajectories, _pool_size

    actors, per_actor = _pool_size(float(ray.cluster_resources().get("CPU", 1)))
    started = time.perf_counter()
    ds = ray.data.read_text(str(path), num_cpus=0.25, override_num_blocks=actors * 16)
    ds = ds.map_batches(TokenizeTrajectories, fn_constructor_kwargs=kwargs, batch_size=batch_size,
                        batch_format="numpy", zero_copy_batch=True, compute=ray.data.ActorPoolStrategy(size=actors),
                        num_cpus=per_actor)
    ds.write_parquet(str(out), ray_remote_args={"num_cpus": 0.25})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import ray

    from deepcoder.config import load_config

    from deepcoder.data.light_tokenizer import TokenizerSpec
    from deepcoder.data.tokenizers import load_tokenizer

    config = load_config("demo", env={})
    spec = TokenizerSpec.from_hf(load_tokenizer(config.data.tokenizer, cache_dir=config.paths.cache_dir))
    kwargs = {"spec": spec, "max_seq_len": config.data.max_seq_len, "truncation": config.data.truncation,
              "seed": 0, "val_fraction": 0.1}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = tmp / "trajectories.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for t in synthetic(args.n):
                handle.write(t.model_dump_json() + "\n")
        size_mb = path.stat().st_size / 2**20
        (tmp / "single").mkdir()
        with PeakRSS() as single_rss:
            single_s = single_process(path, tmp / "single", kwargs)
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        # The cluster is long-lived in real use: let its own start-up (prestarted workers importing
        # Ray, Ray Data's per-cluster stats and autoscaling actors) finish before the clock starts,
        # as it has on any running cluster. The pipeline's own actors still start inside the timing.
        ray.get(ray.remote(lambda: None).remote())
        ray.data.range(8).map_batches(lambda batch: batch).materialize()
        time.sleep(3)
        with PeakRSS() as ray_rss:
            ray_s = ray_data(path, tmp / "ray", kwargs, args.batch_size)
        ray.shutdown()
    result = {
        "trajectories": args.n, "input_mb": round(size_mb, 1), "cpus": args.cpus,
        "single_process_s": round(single_s, 2), "single_process_per_s": round(args.n / single_s, 1),
        "ray_data_s": round(ray_s, 2), "ray_data_per_s": round(args.n / ray_s, 1),
        "speedup": round(single_s / ray_s, 2),
        "peak_rss_single_mb": round(single_rss.peak / 2**20), "peak_rss_ray_mb": round(ray_rss.peak / 2**20),
        "machine": f"{platform.machine()} {platform.release()}, {os.cpu_count()} CPUs",
    }
    print(f"phase 2 masks: {args.n} synthetic trajectories ({size_mb:.1f} MB), {args.cpus} CPUs for Ray")
    print(f"single process : {result['single_process_per_s']:>8.1f} traj/s  ({single_s:.1f} s, peak RSS "
          f"{result['peak_rss_single_mb']} MB)")
    print(f"Ray Data       : {result['ray_data_per_s']:>8.1f} traj/s  ({ray_s:.1f} s, peak RSS over driver + "
          f"workers {result['peak_rss_ray_mb']} MB)")
    print(f"speedup {result['speedup']:.2f}x (target >= 1.6x): {'PASS' if result['speedup'] >= 1.6 else 'FAIL'}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
