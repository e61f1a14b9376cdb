"""Phase 2 on real Ray Data (2 CPUs): filtering with reasons, splits by problem, a self-describing output."""

from __future__ import annotations

import json

import pytest

from deepcoder.agent.prompts import system_prompt
from deepcoder.agent.types import Step, Task, Trajectory
from deepcoder.config import load_config
from deepcoder.data.build import build_dataset, verify_dataset
from deepcoder.data.collator import SADCollator


def make(i: int, sample: int = 0, **fields) -> Trajectory:
    steps = [Step(thought=f"compute {i}", action="python", tool_input={"code": f"print({i} * 2)"},
                  observation=str(i * 2)),
             Step(thought="done", action="finish", action_input=str(i * 2), tool_input={"answer": str(i * 2)})]
    base = dict(task=Task(id=f"math/{i}", kind="math", prompt=f"What is {i} times 2?", answer=str(i * 2)),
                system_prompt=system_prompt("- python(code): run code", ["python", "finish"]), steps=steps,
                status="finished", verified=True, final_answer=str(i * 2), sample=sample)
    return Trajectory(**{**base, **fields})


@pytest.fixture(scope="module")
def built(ray_cluster, tmp_path_factory, cache_dir):
    folder = tmp_path_factory.mktemp("phase2")
    source = folder / "trajectories.jsonl"
    good = [make(i, s) for i in range(40) for s in range(2)]
    bad = [make(100, status="max_steps"), make(101, verified=False),
           make(102, steps=[Step(thought="I just talk", error="no action in reply", raw="I just talk")])]
    lines = [t.model_dump_json() for t in good + bad] + ["{not json"]
    source.write_text("\n".join(lines) + "\n")
    config = load_config("demo", env={}, overrides={"paths": {"cache_dir": cache_dir},
                                                     "data": {"val_fraction": 0.25, "seed": 3, "tokenizer": "qwen2.5"}})
    out = folder / "dataset"
    stats = build_dataset(config, f"file://{source}", out)
    return out, stats, config


def test_counts_and_reasons(built) -> None:
    _, stats, _ = built
    assert stats["trajectories"] == 84
    assert stats["train"] + stats["validation"] == 80
    assert stats["dropped_by_reason"] == {"incomplete": 1, "unverified": 1, "malformed": 1, "unreadable": 1}
    assert 0 < stats["span_share"]["reason"] < 1 and 0 < stats["span_share"]["act"] < 1


def test_self_describing_output_and_splits_by_problem(built) -> None:
    import datasets

    out, stats, config = built
    for name in ("parquet", "hf", "tokenizer", "config.yaml", "stats.json", "stats.png"):
        assert (out / name).exists(), name
    assert json.loads((out / "stats.json").read_text())["train"] == stats["train"]
    assert "tokenizer: qwen2.5" in (out / "config.yaml").read_text()
    dataset = datasets.load_from_disk(str(out / "hf"))
    assert set(dataset) == {"train", "validation"} and len(dataset["validation"]) > 0
    train_ids, val_ids = set(dataset["train"]["problem_id"]), set(dataset["validation"]["problem_id"])
    assert not train_ids & val_ids  # both samples of a problem land in the same split
    row = dataset["train"][0]
    assert {"input_ids", "attention_mask", "labels", "reason_mask", "action_mask"} <= set(row)


def test_phase_two_check_passes_and_collates(built) -> None:
    import datasets
    from transformers import AutoTokenizer

    out, _, _ = built
    result = verify_dataset(out)
    assert result["rows_checked"] == 80 and result["problems"] == []
    tokenizer = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    rows = list(datasets.load_from_disk(str(out / "hf"))["train"].select(range(4)))
    batch = SADCollator(pad_token_id=tokenizer.pad_token_id)(rows)
    assert batch["input_ids"].shape == batch["reason_mask"].shape == batch["labels"].shape


def test_existing_output_is_not_overwritten_silently(built) -> None:
    out, _, config = built
    with pytest.raises(FileExistsError, match="--overwrite"):
        build_dataset(config, str(out / "missing.jsonl"), out)


def test_cli_phase_two(built) -> None:
    from deepcoder import cli

    out, _, _ = built
    assert cli.main(["verify", "--phase", "2", "--dataset", str(out)]) == 0
    assert cli.main(["verify", "--phase", "2", "--dataset", str(out.parent)]) == 2  # not a dataset folder
    assert cli.main(["verify", "--phase", "2", "--run", str(out.parent / "nothing-here")]) == 1
