"""Masks: exact alignment on hundreds of random trajectories, the straddle rule, truncation."""

from __future__ import annotations

import random

import pytest

from deepcoder.agent.prompts import system_prompt
from deepcoder.agent.types import Step, Task, Trajectory
from deepcoder.data.masks import (IGNORE_INDEX, CharSpan, Dropped, assign_tokens, build_example, split_of,
                                  verify_example, verify_row)
from deepcoder.data.tokenizers import load_tokenizer

from test_format import _random_steps


@pytest.fixture(scope="module", params=["qwen2.5", "smollm2"])
def tokenizer(request, cache_dir):
    return load_tokenizer(request.param, cache_dir=cache_dir)


def trajectory(steps: list[Step], task_id: str = "t/1") -> Trajectory:
    return Trajectory(task=Task(id=task_id, kind="code", prompt="Write f.", tests=["assert f() == 1"]),
                      system_prompt=system_prompt("- python(code): run code", ["python", "finish"]),
                      steps=steps, status="finished", verified=True, final_answer="x")


def test_alignment_round_trips_on_random_trajectories(tokenizer) -> None:
    rng = random.Random(7)
    checked = spans = 0
    for case in range(300):
        t = trajectory(_random_steps(rng), task_id=f"t/{case}")
        example = build_example(t, tokenizer, max_seq_len=100_000)
        assert not isinstance(example, Dropped)
        problems = verify_example(example, tokenizer) + verify_row(example.to_row(), tokenizer)
        assert problems == [], (case, problems, example.text)
        checked += 1
        spans += len(example.spans)
    assert checked == 300 and spans > 1000


def test_what_is_trained(tokenizer) -> None:
    t = trajectory([
        Step(thought="compute", action="python", tool_input={"code": "print(1)"}, observation="1"),
        Step(thought="done", action="finish", action_input="1", tool_input={"answer": "1"}),
    ])
    example = build_example(t, tokenizer, 100_000)
    trained = tokenizer.decode([i for i, label in zip(example.input_ids, example.labels) if label != IGNORE_INDEX])
    assert trained.startswith("Thought: compute\nAction: python")
    assert "Observation" not in trained and "Write f." not in trained and "run code" not in trained
    assert trained.count(tokenizer.eos_token) == 2  # each assistant turn learns to stop
    observed = tokenizer.decode([i for i, m in zip(example.input_ids, example.observation_mask) if m])
    assert observed == "Observation: 1"
    kinds = [s.kind for s in example.spans]
    assert kinds == ["reason", "act", "observation", "reason", "act"]
    assert example.to_row()["attention_mask"] == [1] * len(example.input_ids)


def test_straddling_token_rule() -> None:
    spans = [CharSpan("reason", 5, 10), CharSpan("act", 10, 20)]
    offsets = [(0, 5), (3, 7), (8, 12), (12, 20), (20, 21), (21, 21)]
    # (3,7) starts in no span and ends in the reason span -> reason; (8,12) starts in reason -> reason
    assert assign_tokens(offsets, spans) == [-1, 0, 0, 1, -1, -1]


def test_truncation_at_step_boundary_and_drop(tokenizer) -> None:
    steps = [Step(thought=f"step {i} " + "word " * 40, action="python", tool_input={"code": f"print({i})"},
                  observation=str(i)) for i in range(6)]
    steps.append(Step(thought="done", action="finish", action_input="5", tool_input={"answer": "5"}))
    t = trajectory(steps)
    full = build_example(t, tokenizer, 100_000)
    limit = len(full.input_ids) - 60
    cut = build_example(t, tokenizer, limit, "step_boundary")
    assert not isinstance(cut, Dropped) and len(cut.input_ids) <= limit and cut.truncated_steps >= 1
    assert verify_example(cut, tokenizer) == []
    assert cut.input_ids == full.input_ids[:len(cut.input_ids)] or cut.steps < len(steps)
    dropped = build_example(t, tokenizer, limit, "drop")
    assert isinstance(dropped, Dropped) and dropped.reason == "too_long"
    assert isinstance(build_example(t, tokenizer, 50, "step_boundary"), Dropped)


def test_split_is_by_problem_and_seeded() -> None:
    assert split_of("mbpp/601", 0, 0.5) == split_of("mbpp/601", 0, 0.5)
    splits = {split_of(f"p/{i}", 0, 0.2) for i in range(200)}
    assert splits == {"train", "validation"}
    share = sum(split_of(f"p/{i}", 0, 0.2) == "validation" for i in range(2000)) / 2000
    assert 0.15 < share < 0.25
    assert [split_of(f"p/{i}", 1, 0.2) for i in range(50)] != [split_of(f"p/{i}", 2, 0.2) for i in range(50)]


def test_verify_row_catches_misaligned_masks(tokenizer) -> None:
    t = trajectory([Step(thought="a", action="finish", action_input="1", tool_input={"answer": "1"})])
    row = build_example(t, tokenizer, 100_000).to_row()
    assert verify_row(row, tokenizer) == []
    shifted = dict(row)
    shifted["reason_mask"] = [0] + row["reason_mask"][:-1]  # off by one token
    shifted["labels"] = [i if r or a else IGNORE_INDEX for i, r, a in
                         zip(row["input_ids"], shifted["reason_mask"], row["action_mask"])]
    assert verify_row(shifted, tokenizer)
    wrong_labels = dict(row)
    wrong_labels["labels"] = list(row["input_ids"])
    assert verify_row(wrong_labels, tokenizer)
