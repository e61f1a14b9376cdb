"""Cost of the SAD loss against plain SFT (transformers' causal-LM loss): step time and peak memory.

Same model (a Qwen2 built from a config, with Qwen2.5's real 151,936-token vocabulary, since the
logits dominate a loss's cost), same batch, same optimizer; a full training step each (forward,
loss, backward, AdamW step). Each variant runs in its own child process so peak RSS is its own;
they alternate so machine noise hits both. Medians of the step times.

    python benchmarks/bench_loss.py [--steps 12] [--batch 2] [--seq 512] [--rounds 3] [--json out.json]

Targets: SAD / SFT <= 1.05x time and <= 1.10x peak memory.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(variant: str, steps: int, batch: int, seq: int) -> dict:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    sys.path.insert(0, str(ROOT))
    from deepcoder.train.loss import IGNORE_INDEX, sad_loss

    torch.manual_seed(0)
    torch.set_num_threads(2)
    config = Qwen2Config(vocab_size=151936, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         tie_word_embeddings=True)
    model = Qwen2ForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, config.vocab_size, (batch, seq), generator=g)
    reason = torch.zeros_like(ids)
    action = torch.zeros_like(ids)
    reason[:, seq // 4: seq // 2] = 1
    action[:, seq // 2: seq * 3 // 4] = 1
    labels = torch.where((reason + action).bool(), ids, torch.full_like(ids, IGNORE_INDEX))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        if variant == "sft":
            loss = model(input_ids=ids, labels=labels).loss
        else:
            # as SADTrainer.compute_loss does: no reference to the logits outlives the loss call,
            # so autograd can free them during backward exactly as in the SFT path
            loss, _ = sad_loss(model(input_ids=ids).logits, labels, reason, action, lambda_reason=0.5,
                               lambda_act=1.0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return {"variant": variant, "step_s": statistics.median(times[2:]),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps, args.batch, args.seq)))
        return
    runs: dict[str, list[dict]] = {"sft": [], "sad": []}
    for _ in range(args.rounds):
        for variant in ("sft", "sad"):
            out = subprocess.run([sys.executable, __file__, "--child", variant, "--steps", str(args.steps),
                                  "--batch", str(args.batch), "--seq", str(args.seq)],
                                 capture_output=True, text=True, check=True)
            runs[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    summary = {v: {"step_s": statistics.median(r["step_s"] for r in rs),
                   "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in rs)} for v, rs in runs.items()}
    time_ratio = summary["sad"]["step_s"] / summary["sft"]["step_s"]
    memory_ratio = summary["sad"]["peak_rss_mb"] / summary["sft"]["peak_rss_mb"]
    print(f"SAD vs SFT loss: Qwen2 (vocab 151936, 2 layers), batch {args.batch} x {args.seq} tokens, "
          f"{args.rounds} rounds x {args.steps} steps, {platform.machine()} {platform.release()}")
    for variant in ("sft", "sad"):
        print(f"  {variant}: step {summary[variant]['step_s'] * 1000:.0f} ms, peak RSS "
              f"{summary[variant]['peak_rss_mb']:.0f} MB")
    ok = time_ratio <= 1.05 and memory_ratio <= 1.10
    print(f"time {time_ratio:.3f}x (target <= 1.05), memory {memory_ratio:.3f}x (target <= 1.10): "
          f"{'PASS' if ok else 'FAIL'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "summary": summary, "time_ratio": time_ratio,
                                               "memory_ratio": memory_ratio, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
