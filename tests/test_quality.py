"""Trajectory quality: reasons, stats, the filter and the report, on hand-built trajectories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepcoder.agent.loop import FORMAT_REMINDER, step_from_output
from deepcoder.agent.policy import PolicyOutput
from deepcoder.agent.types import Step, Task, Trajectory
from deepcoder.data.quality import (
    MALFORMED_STEP_ERRORS,
    REASONS,
    BadRecord,
    assess,
    assess_file,
    count_tokens,
    filter_trajectories,
    read_trajectories,
    round_trip_problems,
    summarise,
)
from deepcoder.data.report import PLOTS, write_report

MAX_TOKENS = 1000


def math_task(task_id: str = "math/1", answer: str = "42") -> Task:
    return Task(id=task_id, kind="math", prompt="What is six times seven?", answer=answer,
                meta={"source": "math"})


def python_step(code: str = "print(6 * 7)", observation: str = "42", error: str | None = None) -> Step:
    raw = f"Thought: compute it\nAction: python\nAction Input: ```python\n{code}\n```"
    return Step(thought="compute it", action="python", action_input=f"```python\n{code}\n```",
                tool_input={"code": code}, observation=observation, raw=raw, error=error,
                usage={"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120})


def finish_step(answer: str = "42", prompt_tokens: int = 150) -> Step:
    return Step(thought="done", action="finish", action_input=answer, tool_input={"answer": answer},
                raw=f"Thought: done\nAction: finish\nAction Input: {answer}",
                usage={"prompt_tokens": prompt_tokens, "completion_tokens": 10, "total_tokens": prompt_tokens + 10})


def trajectory(task: Task | None = None, steps: list[Step] | None = None, *, status: str = "finished",
               verified: bool | None = True, answer: str | None = "42", usage: dict | None = None,
               source: str = "") -> Trajectory:
    steps = steps if steps is not None else [python_step(), finish_step(answer or "")]
    return Trajectory(task=task or math_task(), steps=steps, status=status, verified=verified,
                      final_answer=answer if status == "finished" else None, source=source,
                      usage=usage if usage is not None else {"prompt_tokens": 250, "completion_tokens": 30,
                                                             "total_tokens": 280})


@pytest.fixture
def cases() -> dict[str, Trajectory]:
    """One trajectory per outcome; names say what is wrong with them."""
    no_action = step_from_output(PolicyOutput("I think the answer is 42."))
    no_action.observation = FORMAT_REMINDER
    return {
        "good": trajectory(),
        "good_with_tool_failure": trajectory(
            math_task("math/2"),
            [python_step("1/0", "ZeroDivisionError", error="exit code 1"), python_step(), finish_step()],
            source="mbpp"),
        "unfinished": trajectory(math_task("math/3"), [python_step()], status="max_steps", verified=False,
                                 answer=None),
        "malformed": trajectory(math_task("math/4"), [no_action, python_step(), finish_step()]),
        "unverified": trajectory(math_task("math/5"), [python_step(), finish_step("41")], verified=False,
                                 answer="41"),
        "too_long": trajectory(math_task("math/6"), [python_step(), finish_step(prompt_tokens=MAX_TOKENS)]),
    }


def write_jsonl(path: Path, items: list[Trajectory], torn_tail: bool = True) -> list[bytes]:
    lines = [(t.model_dump_json() + "\n").encode() for t in items]
    with open(path, "wb") as handle:
        handle.writelines(lines)
        if torn_tail:  # a writer killed mid-line
            handle.write(lines[0][: len(lines[0]) // 2])
    return lines


# ------------------------------------------------------------------------------------ assess


def test_reasons_per_trajectory(cases: dict[str, Trajectory]) -> None:
    reasons = {name: assess(t, max_tokens=MAX_TOKENS).reasons for name, t in cases.items()}
    assert reasons == {
        "good": [],
        "good_with_tool_failure": [],
        "unfinished": ["incomplete", "unverified"],
        "malformed": ["malformed"],
        "unverified": ["unverified"],
        "too_long": ["too_long"],
    }
    assert set(r for rs in reasons.values() for r in rs) <= set(REASONS)


def test_numbers_of_one_trajectory(cases: dict[str, Trajectory]) -> None:
    a = assess(cases["good_with_tool_failure"], max_tokens=MAX_TOKENS)
    assert a.keep and a.format_valid
    assert (a.steps, a.tool_calls, a.failed_tool_calls) == (3, 2, 1)
    assert a.tool_ok == {"python": 1} and a.tool_failed == {"python": 1}
    assert (a.tokens, a.tokens_estimated) == (160, False)
    assert a.source == "mbpp" and a.kind == "math"

    malformed = assess(cases["malformed"], max_tokens=MAX_TOKENS)
    assert not malformed.format_valid
    assert malformed.format_problems == ["step 1: no action in reply"]
    assert malformed.tool_calls == 1  # the step without an action is not a tool call


def test_no_length_limit(cases: dict[str, Trajectory]) -> None:
    assert assess(cases["too_long"], max_tokens=None).keep


def test_parse_problems_in_raw_output_are_malformed() -> None:
    """Records from other writers may not carry ``problems``; the raw text is parsed again."""
    step = python_step()
    step.raw = "Thought: compute it\nAction: python\nAction Input: ```python\nprint(6 * 7)\n"  # unclosed fence
    a = assess(trajectory(steps=[step, finish_step()]), max_tokens=MAX_TOKENS)
    assert a.reasons == ["malformed"]
    assert "unclosed code fence" in a.format_problems[0]


def test_truncated_reply_is_malformed_and_not_a_tool_call() -> None:
    from deepcoder.agent import loop

    truncated = getattr(loop, "TRUNCATED", None)
    if truncated is not None:  # the loop's wording and ours must stay the same
        assert truncated in MALFORMED_STEP_ERRORS
    step = python_step(observation="Error: your reply was cut at the token limit.",
                       error="over-long output: the reply hit the max_tokens limit")
    a = assess(trajectory(steps=[step, python_step(), finish_step()]), max_tokens=None)
    assert a.reasons == ["malformed"] and (a.tool_calls, a.failed_tool_calls) == (1, 0)


def test_steps_that_do_not_round_trip_are_malformed() -> None:
    # A thought that closes a think block and holds a marker line renders as "Thought:" and splits.
    step = Step(thought="plan </think>\nAction: python", action="finish", action_input="42",
                tool_input={"answer": "42"})
    assert round_trip_problems([step])
    assert "malformed" in assess(trajectory(steps=[step]), max_tokens=None).reasons
    assert round_trip_problems([python_step(), finish_step()]) == []


def test_tokens_estimated_without_usage() -> None:
    steps = [python_step(), finish_step()]
    for step in steps:
        step.usage = None
    t = trajectory(steps=steps, usage={})
    tokens, estimated = count_tokens(t)
    assert estimated and 0 < tokens < 200
    t.task.prompt = "x" * 4 * MAX_TOKENS
    a = assess(t, max_tokens=MAX_TOKENS)
    assert a.tokens_estimated and a.reasons == ["too_long"]


def test_length_is_the_last_requests_prompt_plus_completion() -> None:
    """The last request held the whole conversation; summing per-step usage would recount it."""
    assert count_tokens(trajectory()) == (160, False)
    assert count_tokens(trajectory(usage={"total_tokens": 10**6})) == (160, False)


def test_reverify_uses_the_checker() -> None:
    right_but_flagged_wrong = trajectory(verified=False)
    wrong_but_flagged_right = trajectory(steps=[python_step(), finish_step("41")], answer="41", verified=True)
    assert assess(right_but_flagged_wrong, max_tokens=None).reasons == ["unverified"]
    fixed = assess(right_but_flagged_wrong, max_tokens=None, reverify=True)
    assert fixed.keep and fixed.verified is True and fixed.reverified
    caught = assess(wrong_but_flagged_right, max_tokens=None, reverify=True)
    assert caught.reasons == ["unverified"] and "expected 42" in (caught.verification or "")


# ------------------------------------------------------------------------------------ file level


def test_torn_line_is_reported_not_raised(tmp_path: Path, cases: dict[str, Trajectory]) -> None:
    path = tmp_path / "t.jsonl"
    write_jsonl(path, list(cases.values()))
    items = list(read_trajectories(path))
    assert [isinstance(i, Trajectory) for i in items] == [True] * len(cases) + [False]
    bad = items[-1]
    assert isinstance(bad, BadRecord) and bad.line_no == len(cases) + 1 and bad.error
    last = [a for _, a in assess_file(path, max_tokens=MAX_TOKENS)][-1]
    assert last.reasons == ["unreadable"] and not last.keep


def test_summary_counts_and_rates(tmp_path: Path, cases: dict[str, Trajectory]) -> None:
    path = tmp_path / "t.jsonl"
    write_jsonl(path, list(cases.values()))
    stats = summarise((a for _, a in assess_file(path, max_tokens=MAX_TOKENS)), max_tokens=MAX_TOKENS)
    assert (stats.total, stats.readable, stats.kept, stats.dropped) == (7, 6, 2, 5)
    assert stats.reasons == {"unreadable": 1, "incomplete": 1, "malformed": 1, "unverified": 2, "too_long": 1}
    assert stats.verified == 4 and stats.verified_rate == pytest.approx(4 / 6)
    assert stats.format_valid == 5 and stats.format_validity_rate == pytest.approx(5 / 6)
    # tool calls: 1 + 2 (one failed) + 1 + 1 + 1 + 1
    assert (stats.tool_calls, stats.failed_tool_calls) == (7, 1)
    assert stats.tool_success_rate == pytest.approx(6 / 7)
    assert stats.tools == {"python": {"ok": 6, "failed": 1}}
    assert stats.steps.min == 1 and stats.steps.max == 3 and stats.steps.count == 6
    assert stats.tokens.max == MAX_TOKENS + 10
    assert set(stats.by_source) == {"math", "mbpp", "(unreadable)"}
    assert stats.by_source["mbpp"].kept == 1 and stats.by_source["math"].total == 5
    data = json.loads(json.dumps(stats.to_dict()))
    assert data["kept"] == 2 and data["by_source"]["math"]["reasons"]["too_long"] == 1


def test_empty_file_has_no_rates(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    stats = filter_trajectories(path, tmp_path / "out.jsonl", max_tokens=None)
    assert stats.total == 0 and stats.kept_rate is None and stats.tool_success_rate is None
    assert (tmp_path / "out.jsonl").read_bytes() == b""


def test_filter_keeps_exactly_the_good_lines(tmp_path: Path, cases: dict[str, Trajectory]) -> None:
    src, dst = tmp_path / "in.jsonl", tmp_path / "out" / "kept.jsonl"
    lines = write_jsonl(src, list(cases.values()))
    stats = filter_trajectories(src, dst, max_tokens=MAX_TOKENS)
    assert dst.read_bytes() == lines[0] + lines[1]  # unchanged bytes, in order
    assert stats.kept == 2 and stats.total == 7
    assert [p.name for p in dst.parent.iterdir()] == ["kept.jsonl"]  # no temp file left behind

    # In place, with re-verification: the wrongly flagged unverified one is still wrong (41).
    stats = filter_trajectories(dst, dst, max_tokens=MAX_TOKENS, reverify=True, progress=True)
    assert dst.read_bytes() == lines[0] + lines[1] and stats.reverified


def test_filter_reverify_keeps_corrected_record(tmp_path: Path) -> None:
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = write_jsonl(src, [trajectory(verified=False), trajectory(verified=None)], torn_tail=False)
    assert filter_trajectories(src, dst, max_tokens=None).kept == 0
    assert filter_trajectories(src, dst, max_tokens=None, reverify=True).kept == 2
    assert dst.read_bytes() == b"".join(lines)


# ------------------------------------------------------------------------------------ report


def test_report_files(tmp_path: Path, cases: dict[str, Trajectory]) -> None:
    src = tmp_path / "in.jsonl"
    write_jsonl(src, list(cases.values()))
    report = write_report(src, tmp_path / "report", max_tokens=MAX_TOKENS)
    assert report == tmp_path / "report" / "report.md"
    text = report.read_text()
    for file_name, title in PLOTS.values():
        png = report.parent / file_name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        assert f"![{title}]({file_name})" in text
    for reason in REASONS:
        assert f"`{reason}`" in text
    assert str(src) in text and "| mbpp |" in text and "85.7%" in text  # tool success 6/7
    quality = json.loads((report.parent / "quality.json").read_text())
    assert quality["total"] == 7 and quality["reasons"]["unreadable"] == 1


def test_report_on_unreadable_only_file(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("{not json\n")
    report = write_report(src, tmp_path / "r", max_tokens=None)
    assert "unreadable" in report.read_text()
    assert all((report.parent / name).exists() for name, _ in PLOTS.values())
