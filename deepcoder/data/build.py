"""Phase 2 on Ray Data: trajectory JSONL -> tokenized examples with REASON/ACT masks.

Streaming: ``read_text`` (local or any fsspec path) -> ``map_batches`` with a stateful class that
holds the student's tokenizer, on an ``ActorPoolStrategy`` pool -> ``write_parquet``. Each
trajectory is validated, filtered (the quality-control reasons), segmented with the shared
``segment``, rendered with the student's chat template and tokenized with offsets; the masks
follow ``deepcoder.data.masks``. Then the driver builds a ``datasets.DatasetDict`` (train and
validation, split by problem id with a seed) from the Parquet shards (memory-mapped), and writes
the tokenizer, the resolved config, ``stats.json`` and a plot beside it, so the output folder
describes itself.

CPU budget: the pool's actors take ``num_cpus`` below one each and the read and write tasks a
quarter, so on a 2-CPU node reading, tokenizing and writing always have room (an actor pool that
reserves every CPU makes Ray Data wait forever for a slot to read in).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from deepcoder.cluster import init_ray
from deepcoder.config import Config

logger = logging.getLogger(__name__)

COLUMNS = ("input_ids", "attention_mask", "labels", "reason_mask", "action_mask", "observation_mask")
KEPT = ("train", "validation")


class TokenizeTrajectories:
    """Ray Data ``map_batches`` callable: one tokenizer per actor, built once from its spec
    (a ``LightTokenizer``: no transformers/torch import, so an actor starts in a fraction of a second)."""

    def __init__(self, spec, max_seq_len: int, truncation: str, seed: int, val_fraction: float) -> None:
        from deepcoder.data.light_tokenizer import LightTokenizer

        self.tokenizer = LightTokenizer(spec)
        self.max_seq_len = max_seq_len
        self.truncation = truncation
        self.seed = seed
        self.val_fraction = val_fraction

    def __call__(self, batch: dict[str, Any]):
        return rows_to_table([self.process(line) for line in batch["text"]])

    def process(self, line: str) -> dict[str, Any]:
        from pydantic import ValidationError

        from deepcoder.agent.types import Trajectory
        from deepcoder.data.masks import Dropped, build_example, split_of
        from deepcoder.data.quality import assess

        try:
            trajectory = Trajectory.model_validate_json(line)
        except (ValidationError, ValueError):
            return _dropped_row("unreadable")
        verdict = assess(trajectory, max_tokens=None)
        if not verdict.keep:
            return _dropped_row(verdict.reasons[0], trajectory)
        example = build_example(trajectory, self.tokenizer, self.max_seq_len, self.truncation)  # type: ignore[arg-type]
        if isinstance(example, Dropped):
            return _dropped_row(example.reason, trajectory)
        row = example.to_row()
        row["split"] = split_of(trajectory.problem_id, self.seed, self.val_fraction)
        row["drop_reason"] = ""
        row["reason_tokens"] = sum(example.reason_mask)
        row["act_tokens"] = sum(example.action_mask)
        row["observation_tokens"] = sum(example.observation_mask)
        return row


def _schema():
    """Compact Arrow types: int32 ids, int8 masks (a quarter of int64's bytes to move and store)."""
    import pyarrow as pa

    ids, flags = pa.list_(pa.int32()), pa.list_(pa.int8())
    return pa.schema([
        ("input_ids", ids), ("attention_mask", flags), ("labels", ids), ("reason_mask", flags),
        ("action_mask", flags), ("observation_mask", flags), ("problem_id", pa.string()),
        ("trajectory_id", pa.string()), ("source", pa.string()), ("steps", pa.int32()),
        ("truncated_steps", pa.int32()), ("length", pa.int32()), ("split", pa.string()),
        ("drop_reason", pa.string()), ("reason_tokens", pa.int32()), ("act_tokens", pa.int32()),
        ("observation_tokens", pa.int32()),
    ])


def rows_to_table(rows: list[dict[str, Any]]):
    import pyarrow as pa

    schema = _schema()
    return pa.Table.from_pydict({name: [row[name] for row in rows] for name in schema.names}, schema=schema)


def _dropped_row(reason: str, trajectory=None) -> dict[str, Any]:
    return {key: [] for key in COLUMNS} | {
        "problem_id": trajectory.problem_id if trajectory else "", "trajectory_id": trajectory.id if trajectory else "",
        "source": trajectory.source if trajectory else "", "steps": len(trajectory.steps) if trajectory else 0,
        "truncated_steps": 0, "length": 0, "split": "dropped", "drop_reason": reason,
        "reason_tokens": 0, "act_tokens": 0, "observation_tokens": 0,
    }


def _pool_size(num_cpus: float) -> tuple[int, float]:
    """(actors, CPUs per actor): leave a quarter CPU each for reading and writing."""
    actors = max(1, int(num_cpus))
    per_actor = max(0.1, min(1.0, (num_cpus - 0.5) / actors))
    return actors, per_actor


def build_dataset(config: Config, trajectories: str, out: str | Path, *, batch_size: int = 256,
                  overwrite: bool = False) -> dict[str, Any]:
    """Run phase 2 and write ``out``; returns the stats (also in ``out/stats.json``)."""
    import ray

    from deepcoder.data.light_tokenizer import TokenizerSpec
    from deepcoder.data.tokenizers import load_tokenizer

    out = Path(out)
    if (out / "stats.json").exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a dataset; pass --overwrite to rebuild it")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    started = time.monotonic()
    tokenizer = load_tokenizer(config.data.tokenizer, cache_dir=config.paths.cache_dir)
    spec = TokenizerSpec.from_hf(tokenizer)
    started_ray = init_ray(config, log_to_driver=False)
    try:
        cpus = float(ray.cluster_resources().get("CPU", 1))
        actors, per_actor = _pool_size(cpus)
        # Enough blocks to keep every actor busy and balanced even when the input is one file.
        ds = ray.data.read_text(trajectories, num_cpus=0.25, override_num_blocks=actors * 16)
        ds = ds.map_batches(
            TokenizeTrajectories,
            fn_constructor_kwargs={"spec": spec, "max_seq_len": config.data.max_seq_len,
                                   "truncation": config.data.truncation, "seed": config.data.seed,
                                   "val_fraction": config.data.val_fraction},
            batch_size=batch_size, batch_format="numpy", zero_copy_batch=True,
            compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=per_actor,
        )
        ds.write_parquet(str(out / "parquet"), ray_remote_args={"num_cpus": 0.25})
    finally:
        if started_ray:
            ray.shutdown()
    seconds = time.monotonic() - started
    stats = _finish(config, out, tokenizer, seconds)
    logger.info("dataset: %d train, %d validation, %d dropped in %.1fs", stats["train"], stats["validation"],
                stats["dropped"], seconds)
    return stats


def _finish(config: Config, out: Path, tokenizer, seconds: float) -> dict[str, Any]:
    """DatasetDict, tokenizer, resolved config, stats and plot beside the Parquet shards."""
    import datasets
    import pyarrow.dataset as pads

    shards = pads.dataset(str(out / "parquet"), format="parquet")
    meta = shards.to_table(columns=["split", "drop_reason", "length", "reason_tokens", "act_tokens",
                                    "observation_tokens", "truncated_steps", "source"]).to_pylist()
    files = sorted(str(p) for p in (out / "parquet").glob("*.parquet"))
    full = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(out / ".hf-cache"))
    splits = {}
    for name in KEPT:
        part = full.filter(lambda split: split == name, input_columns="split")
        splits[name] = part.remove_columns(["split", "drop_reason"])
    datasets.DatasetDict(splits).save_to_disk(str(out / "hf"))
    shutil.rmtree(out / ".hf-cache", ignore_errors=True)
    tokenizer.save_pretrained(str(out / "tokenizer"))
    (out / "config.yaml").write_text(yaml.safe_dump(config.masked_dict(), sort_keys=False), encoding="utf-8")
    stats = compute_stats(meta, seconds)
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    plot_stats(meta, out / "stats.png")
    return stats


def compute_stats(meta: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    kept = [m for m in meta if m["split"] in KEPT]
    lengths = sorted(m["length"] for m in kept)
    reason = sum(m["reason_tokens"] for m in kept)
    act = sum(m["act_tokens"] for m in kept)
    obs = sum(m["observation_tokens"] for m in kept)
    total = sum(lengths)
    dropped: dict[str, int] = {}
    for m in meta:
        if m["split"] == "dropped":
            dropped[m["drop_reason"]] = dropped.get(m["drop_reason"], 0) + 1

    def pct(q: float) -> int:
        return lengths[min(len(lengths) - 1, math.ceil(q * len(lengths)) - 1)] if lengths else 0

    return {
        "trajectories": len(meta),
        "train": sum(m["split"] == "train" for m in kept),
        "validation": sum(m["split"] == "validation" for m in kept),
        "dropped": sum(dropped.values()),
        "dropped_by_reason": dropped,
        "truncated_at_step_boundary": sum(1 for m in kept if m["truncated_steps"]),
        "tokens": {"total": total, "min": lengths[0] if lengths else 0, "median": pct(0.5), "p90": pct(0.9),
                   "max": lengths[-1] if lengths else 0, "mean": total / len(lengths) if lengths else 0},
        "span_share": {kind: (n / total if total else 0.0) for kind, n in
                       (("reason", reason), ("act", act), ("observation", obs), ("untrained_other", total - reason - act - obs))},
        "trained_tokens": reason + act,
        "by_source": {s: sum(1 for m in kept if m["source"] == s) for s in sorted({m["source"] for m in kept})},
        "seconds": round(seconds, 2),
    }


def plot_stats(meta: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kept = [m for m in meta if m["split"] in KEPT]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.hist([m["length"] for m in kept] or [0], bins=30, color="#4c72b0")
    left.set(title="Tokens per example", xlabel="tokens", ylabel="examples")
    shares = [sum(m[k] for m in kept) for k in ("reason_tokens", "act_tokens", "observation_tokens")]
    other = sum(m["length"] for m in kept) - sum(shares)
    right.bar(["REASON", "ACT", "OBSERVATION", "other\n(untrained)"], shares + [other],
              color=["#55a868", "#c44e52", "#8172b2", "#937860"])
    right.set(title="Tokens by span kind", ylabel="tokens")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def verify_dataset(out: str | Path, limit: int | None = None) -> dict[str, Any]:
    """The phase-2 check: load the saved DatasetDict and its tokenizer, and verify every row."""
    import datasets
    from transformers import AutoTokenizer

    from deepcoder.data.masks import verify_row

    out = Path(out)
    tokenizer = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    dataset = datasets.load_from_disk(str(out / "hf"))
    checked, problems = 0, []
    for name, split in dataset.items():
        for index, row in enumerate(split):
            if limit is not None and checked >= limit:
                break
            checked += 1
            for problem in verify_row(row, tokenizer):
                problems.append(f"{name}[{index}] {row['problem_id']}: {problem}")
    return {"rows_checked": checked, "problems": problems}
