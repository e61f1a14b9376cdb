"""Parser, segmenter and renderer: the labelled gold set, round trips, and robustness."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from deepcoder.agent.format import parse_steps, render, segment
from deepcoder.agent.types import Step

GOLD = Path(__file__).parent / "data" / "segmentation_gold.jsonl"


def _gold() -> list[dict]:
    return [json.loads(line) for line in GOLD.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_gold_set_is_large_and_varied() -> None:
    examples = _gold()
    assert len(examples) >= 40
    assert len({e["style"] for e in examples}) >= 10


def test_span_identification_accuracy_on_gold_set() -> None:
    """A gold span is found when a predicted span of the same kind has the same stripped text."""
    found = total = extra = 0
    misses = []
    for example in _gold():
        predicted = {(kind, text.strip()) for kind, text in segment(example["text"]).texts()}
        gold = [(s["kind"], s["text"].strip()) for s in example["spans"]]
        for span in gold:
            total += 1
            if span in predicted:
                found += 1
            else:
                misses.append((example["id"], span[0], span[1][:60]))
        extra += len(predicted - set(gold))
    accuracy = found / total
    print(f"span identification accuracy: {found}/{total} = {accuracy:.4f}; extra spans: {extra}")
    assert accuracy >= 0.98, misses
    assert extra <= 0.02 * total


def test_spans_are_ordered_disjoint_and_trimmed_on_gold_set() -> None:
    for example in _gold():
        text = example["text"]
        seg = segment(text)
        previous_end = 0
        for span in seg:
            assert previous_end <= span.start < span.end <= len(text)
            assert not text[span.end - 1].isspace()
            previous_end = span.end


# ---------------------------------------------------------------------------------- examples


def test_canonical_trajectory() -> None:
    text = ("Thought: compute it\nAction: python\nAction Input: ```python\nprint(6*7)\n```\n"
            "Observation: 42\nThought: done\nAction: finish\nAction Input: 42")
    seg = segment(text)
    assert [s.kind for s in seg] == ["reason", "act", "observation", "reason", "act"]
    assert seg.problems == []
    steps = parse_steps(text).steps
    assert steps[0].tool_input == {"code": "print(6*7)"} and steps[0].observation == "42"
    assert steps[1].action == "finish" and steps[1].tool_input == {"answer": "42"}


def test_marker_text_inside_fences_and_think_does_not_split() -> None:
    text = ("<think>\nAction: not yet\nObservation: imagined\n</think>\nAction: python\nAction Input:\n"
            "```python\nprint('Thought: no')\n```\nObservation: ```output\nThought: no\n```")
    seg = segment(text)
    assert [s.kind for s in seg] == ["reason", "act", "observation"]
    step = parse_steps(text).steps[0]
    assert step.observation == "Thought: no"
    assert "Action: not yet" in step.thought


def test_r1_reply_that_only_closes_think() -> None:
    text = "The user wants 2+2.\nIt is 4.\n</think>\n\nFinal Answer: 4"
    seg = segment(text)
    assert [(s.kind, s.label) for s in seg] == [("reason", "think"), ("act", "final_answer")]
    step = parse_steps(text).steps[0]
    assert step.thought == "The user wants 2+2.\nIt is 4." and step.tool_input == {"answer": "4"}


def test_numbered_react_inline_actions_and_crlf() -> None:
    text = "Thought 1: look it up\r\nAction 1: Search[Python GIL]\r\nObservation 1: a lock\r\nAction 2: Finish[yes]"
    steps = parse_steps(text).steps
    assert steps[0].action == "retrieve" and steps[0].tool_input == {"query": "Python GIL"}
    assert steps[0].observation == "a lock"
    assert steps[1].action == "finish" and steps[1].tool_input == {"answer": "yes"}


def test_markdown_and_heading_markers() -> None:
    text = ("**Thought:** use python\n__Action__: python\n**Action Input**: `print(1)`\n"
            "### Observation\n1\n## Final Answer\n1")
    assert [s.kind for s in segment(text)] == ["reason", "act", "observation", "act"]
    steps = parse_steps(text).steps
    assert steps[0].tool_input == {"code": "print(1)"} and steps[1].tool_input == {"answer": "1"}


def test_json_inputs() -> None:
    text = 'Action: retrieve\nAction Input: {"query": "heapq nlargest", "k": 2}'
    assert parse_steps(text).steps[0].tool_input == {"query": "heapq nlargest", "k": 2}
    text = 'Action: python\nAction Input: {"code": "print(1)"}'
    assert parse_steps(text).steps[0].tool_input == {"code": "print(1)"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<think>\nstill thinking about", "unclosed <think>"),
        ("Thought: x\nAction: python\nAction Input: ```python\nprint(1)", "unclosed code fence"),
        ("Thought:\nAction: finish\nAction Input: 1", "empty thought"),
        ("Action Input: 3", "Action Input without an Action"),
        ("Thought: go\nAction: python", "python action without code"),
        ("Action: finish\nAction Input:", "finish without an answer"),
        ("   \n  ", "empty text"),
    ],
)
def test_malformed_text_gives_problems_not_exceptions(text: str, problem: str) -> None:
    result = parse_steps(text)
    assert any(problem in p for p in result.problems), result.problems


# ---------------------------------------------------------------------------------- round trip

_WORDS = ("the", "list", "Thought", "action", "observation:", "sum", "é", "中文", "`x`", "{", "}", "[1]", "->",
          "Final", "answer", "def", "print", "<think>", "**", "#", "\\n", "'", '"')


def _random_text(rng: random.Random, lines: int) -> str:
    return "\n".join(" ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 8))) for _ in range(lines))


def _random_code(rng: random.Random) -> str:
    pieces = ["x = 1", "print('Thought: inside a string')", "s = '''\nAction: nope\n'''", "for i in range(3):\n    print(i)",
              "raise ValueError('bad')", "print('```')", "# Observation: comment", "y = {'a': [1, 2]}"]
    return "\n".join(rng.sample(pieces, rng.randint(1, 4)))


def _random_observation(rng: random.Random) -> str:
    options = [
        "42",
        "Traceback (most recent call last):\n  File \"main.py\", line 3, in <module>\nValueError: bad",
        "Thought: printed by the program\nAction: also printed",
        "```\nfenced output\n```",
        "  leading spaces",
        "[1] stdlib:math.gcd — math.gcd(*integers)\nReturn the greatest common divisor",
        "<think> tag in output",
        _random_text(rng, rng.randint(1, 3)),
    ]
    return rng.choice(options)


def _random_steps(rng: random.Random) -> list[Step]:
    steps = []
    for index in range(rng.randint(1, 5)):
        last = index == 0 and rng.random() < 0.2
        thought = _random_text(rng, rng.randint(1, 3)) if rng.random() < 0.9 else None
        tool = "finish" if last else rng.choice(["python", "python", "retrieve"])
        if tool == "python":
            step = Step(thought=thought, action="python", tool_input={"code": _random_code(rng)},
                        observation=_random_observation(rng))
        elif tool == "retrieve":
            query = f"how to use {rng.choice(['heapq', 'bisect', 'itertools'])} {rng.randint(1, 99)}"
            step = Step(thought=thought, action="retrieve", action_input=query, tool_input={"query": query},
                        observation=_random_observation(rng))
        else:
            step = Step(thought=thought, action="finish", action_input="done", tool_input={"answer": "done"})
        steps.append(step)
        if last:
            break
    if steps[-1].action != "finish" and rng.random() < 0.7:
        steps.append(Step(thought="finishing", action="finish", action_input="42", tool_input={"answer": "42"}))
    return steps


def test_render_parse_round_trip_on_random_trajectories() -> None:
    rng = random.Random(1234)
    for case in range(400):
        steps = _random_steps(rng)
        text = render(steps)
        parsed = parse_steps(text)
        assert parsed.problems == [], (case, text, parsed.problems)
        assert len(parsed.steps) == len(steps), (case, text)
        for want, got in zip(steps, parsed.steps):
            assert got.thought == want.thought, (case, text)
            assert got.action == want.action, (case, text)
            assert got.tool_input == want.tool_input, (case, text)
            assert got.observation == want.observation, (case, text)
        kinds = [s.kind for s in segment(text)]
        expected = []
        for step in steps:
            expected += (["reason"] if step.thought is not None else []) + ["act"]
            expected += ["observation"] if step.observation is not None else []
        assert kinds == expected, (case, text)


def test_segmenter_never_raises_on_noise() -> None:
    rng = random.Random(99)
    alphabet = ["Thought:", "Action:", "Action Input:", "Observation:", "Final Answer:", "```", "~~~", "<think>",
                "</think>", "\n", "\r\n", "  ", "**", "#", "x", "1", "é", "\t", "[", "]", "{", "}", "\x00"]
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        seg = segment(text)
        previous = 0
        for span in seg:
            assert previous <= span.start < span.end <= len(text)
            previous = span.end
        parse_steps(text)
    assert segment(None).problems  # type: ignore[arg-type]
