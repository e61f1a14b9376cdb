"""The agent loop with real tools (sandbox, retrieval) and scripted or reference policies."""

from __future__ import annotations

import asyncio

import pytest

from deepcoder.agent.grading import grade, checking_program
from deepcoder.agent.loop import Agent, AgentLimits, step_from_output
from deepcoder.agent.policy import PolicyError, PolicyOutput, ScriptedPolicy
from deepcoder.agent.types import Task, Trajectory
from deepcoder.data.problems import load_math_tasks, load_mbpp, load_retrieval_tasks
from deepcoder.teacher.reference import ReferencePolicy
from deepcoder.tools.registry import build_tools

TASK = Task(id="t/1", kind="math", prompt="What is 6 * 7?", answer="42")


@pytest.fixture
def tools(config):
    return build_tools(config)


def test_scripted_episode_runs_python_then_finishes(tools) -> None:
    policy = ScriptedPolicy([
        "Thought: compute\nAction: python\nAction Input: ```python\nprint(6 * 7)\n```",
        "Thought: it printed 42\nAction: finish\nAction Input: 42",
    ])
    trajectory = Agent(policy, tools).run(TASK)
    assert trajectory.status == "finished" and trajectory.final_answer == "42"
    assert trajectory.steps[0].observation == "42"
    assert grade(TASK, trajectory.final_answer)
    restored = Trajectory.model_validate_json(trajectory.model_dump_json())
    assert restored.text() == trajectory.text()


def test_format_error_gets_a_reminder_and_the_episode_recovers(tools) -> None:
    policy = ScriptedPolicy(["I think the answer is 42.", "Thought: right\nAction: finish\nAction Input: 42"])
    trajectory = Agent(policy, tools).run(TASK)
    first = trajectory.steps[0]
    assert first.error == "no action in reply" and "no Action" in first.observation
    assert trajectory.status == "finished"


def test_unknown_tool_and_failing_code_become_observations(tools) -> None:
    policy = ScriptedPolicy([
        "Thought: try\nAction: browser\nAction Input: open google",
        "Thought: run\nAction: python\nAction Input: ```python\n1/0\n```",
        "Thought: fix\nAction: python\nAction Input: print(42)",
        "Thought: ok\nAction: finish\nAction Input: 42",
    ])
    trajectory = Agent(policy, tools).run(TASK)
    assert "unknown tool 'browser'" in trajectory.steps[0].observation
    assert "ZeroDivisionError" in trajectory.steps[1].observation and trajectory.steps[1].error
    assert trajectory.steps[2].observation == "42" and trajectory.steps[2].error is None
    assert trajectory.status == "finished"


def test_hallucinated_observation_is_cut_and_reasoning_field_is_the_thought() -> None:
    output = PolicyOutput(text="Action: python\nAction Input: print(1)\nObservation: 1\nThought: fake",
                          reasoning="The provider's reasoning.")
    step = step_from_output(output)
    assert step.tool_input == {"code": "print(1)"}
    assert step.thought == "The provider's reasoning." and step.reasoning_source == "reasoning_field"
    assert step.observation is None


def test_max_steps(tools) -> None:
    policy = ScriptedPolicy(lambda messages: "Thought: again\nAction: python\nAction Input: print(1)")
    trajectory = Agent(policy, tools, AgentLimits(max_steps=3)).run(TASK)
    assert trajectory.status == "max_steps" and len(trajectory.steps) == 3


def test_step_and_episode_timeouts(tools) -> None:
    class Slow:
        name = "slow"

        async def agenerate(self, messages, *, stop=()):
            await asyncio.sleep(10)

    trajectory = Agent(Slow(), tools, AgentLimits(step_timeout_s=0.2)).run(TASK)
    assert trajectory.status == "timeout" and "timed out" in trajectory.steps[-1].error

    policy = ScriptedPolicy(lambda m: "Thought: wait\nAction: python\nAction Input: import time; time.sleep(0.3)")
    trajectory = Agent(policy, tools, AgentLimits(max_steps=50, episode_timeout_s=1.0)).run(TASK)
    assert trajectory.status == "timeout" and trajectory.duration_s < 5


def test_policy_error_ends_the_episode_cleanly(tools) -> None:
    class Broken:
        name = "broken"

        async def agenerate(self, messages, *, stop=()):
            raise PolicyError("model 'x' was decommissioned")

    trajectory = Agent(Broken(), tools).run(TASK)
    assert trajectory.status == "error" and "decommissioned" in trajectory.error


def test_on_step_callback_sees_every_step(tools) -> None:
    seen = []
    policy = ScriptedPolicy(["Thought: a\nAction: python\nAction Input: print(2)",
                             "Thought: b\nAction: finish\nAction Input: 2"])

    async def on_step(step):
        seen.append(step.action)

    Agent(policy, tools).run(TASK, on_step=on_step)
    assert seen == ["python", "finish"]


def test_reference_teacher_solves_every_kind(tools) -> None:
    tasks = load_mbpp("train")[:4] + load_math_tasks()[:3] + load_retrieval_tasks()[:3]
    agent = Agent(ReferencePolicy(tasks), tools)

    async def run_all():
        return await asyncio.gather(*(agent.arun(task) for task in tasks))

    trajectories = asyncio.run(run_all())
    for trajectory in trajectories:
        assert trajectory.status == "finished", trajectory.error
        assert grade(trajectory.task, trajectory.final_answer), trajectory.task.id
        used = {s.action for s in trajectory.steps}
        needed = {"retrieve", "finish"} if trajectory.task.kind == "retrieval" else {"python", "finish"}
        assert needed <= used <= needed | {"retrieve"}
    retrieval = trajectories[-1]
    assert retrieval.task.answer in retrieval.steps[0].observation  # the docs really named it


def test_grading_rejects_wrong_code_and_answers() -> None:
    task = load_mbpp("train")[0]
    assert grade(task, task.reference)
    assert not grade(task, "def max_chain_length(arr, n):\n    return 0")
    assert not grade(task, "")
    assert "assert" in checking_program(task, "pass")
    assert grade(Task(id="m", kind="math", prompt="?", answer="1,628.89"), "The balance is 1628.89")
    assert not grade(Task(id="m", kind="math", prompt="?", answer="21"), "22")


def test_tools_are_langchain_tools_usable_directly(tools) -> None:
    from langchain_core.tools import BaseTool

    lc_tools = {tool.name: tool for tool in tools.as_langchain()}
    assert set(lc_tools) == {"python", "retrieve", "finish"}
    assert all(isinstance(tool, BaseTool) for tool in lc_tools.values())
    assert lc_tools["python"].invoke({"code": "print(3 * 3)"}).strip() == "9"
    assert "code is empty" in lc_tools["python"].invoke({"code": "   "})
    assert lc_tools["finish"].invoke({"answer": "x"}) == "x"
    assert "code" in lc_tools["python"].args and "query" in lc_tools["retrieve"].args
    assert "math.gcd" in lc_tools["retrieve"].invoke({"query": "greatest common divisor", "k": 3})
