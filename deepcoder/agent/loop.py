"""The episode runner: model step, parse, tool, observation, repeat.

One loop for generation, evaluation and serving. It is async so Ray actors and Serve replicas
can run many episodes at once; ``run`` wraps it for scripts. It enforces a step limit, a timeout
per model step and a timeout for the whole episode, and it never raises for anything a model or
tool does: those end up in the trajectory (``status``, ``error``, per-step ``error``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence

from deepcoder.agent.format import parse_steps, segment
from deepcoder.agent.policy import Policy, PolicyError, PolicyOutput
from deepcoder.agent.prompts import OBSERVATION_STOP, build_messages, system_prompt
from deepcoder.agent.types import Step, Task, Trajectory
from deepcoder.tools.registry import ToolRegistry

logger = logging.getLogger(__name__)

FORMAT_REMINDER = (
    "Error: your reply had no Action. Reply with 'Thought: ...', then 'Action: <tool>' and "
    "'Action Input: ...' (or 'Action: finish' with the final answer)."
)

TRUNCATED = "over-long output: the reply hit the max_tokens limit"

StepCallback = Callable[[Step], Awaitable[None] | None]


@dataclass
class AgentLimits:
    max_steps: int = 8
    step_timeout_s: float = 120.0
    episode_timeout_s: float = 600.0


def step_from_output(output: PolicyOutput) -> Step:
    """Turn one model reply into a step: the first action, its thought, and what went wrong.

    A reply that goes on to invent its own Observation is cut there: the tool, not the model,
    writes observations.
    """
    text = output.text or ""
    seg = segment(text)
    acted = False
    for span in seg.spans:
        if span.kind == "act":
            acted = True
        elif span.kind == "observation" and acted:
            text = text[:span.start]
            break
    parsed = parse_steps(text)
    step = Step(raw=output.text, usage=output.usage or None)
    thoughts = [s.thought for s in parsed.steps if s.thought]
    first_action = next((s for s in parsed.steps if s.action is not None), None)
    step.problems = list(parsed.problems)
    if first_action is not None:
        step.action = first_action.action
        step.action_input = first_action.action_input
        step.tool_input = first_action.tool_input
        if sum(1 for s in parsed.steps if s.action is not None) > 1:
            step.problems.append("more than one action in one reply; only the first was run")
    if output.reasoning and output.reasoning.strip():
        thoughts.insert(0, output.reasoning.strip())
        step.reasoning_source = "reasoning_field"
    elif any(span.label == "think" for span in parsed.segmentation.spans):
        step.reasoning_source = "think_block"
    else:
        step.reasoning_source = "content" if thoughts else "none"
    step.thought = "\n\n".join(thoughts) if thoughts else None
    if output.finish_reason == "length":
        step.error = TRUNCATED  # an action cut at the token limit is not run
    elif not text.strip() and not step.thought:
        step.error = "empty reply"
    elif step.action is None:
        step.error = "no action in reply"
    elif step.tool_input is None:
        step.error = next((p for p in first_action.problems), "unusable action input") if first_action else None
    return step


class Agent:
    """Runs episodes of one policy with one tool registry."""

    def __init__(self, policy: Policy, tools: ToolRegistry, limits: AgentLimits | None = None,
                 system: str | None = None) -> None:
        self.policy = policy
        self.tools = tools
        self.limits = limits or AgentLimits()
        self.system = system or system_prompt(tools.describe(), tools.names())

    async def arun(self, task: Task, *, on_step: StepCallback | None = None,
                   stop: Sequence[str] = OBSERVATION_STOP) -> Trajectory:
        """Run one episode. Never raises for model or tool failures; they are in the result."""
        trajectory = Trajectory(task=task, system_prompt=self.system,
                                teacher_model=getattr(self.policy, "name", None))
        started = time.monotonic()
        try:
            await asyncio.wait_for(self._episode(trajectory, on_step, stop), self.limits.episode_timeout_s)
        except asyncio.TimeoutError:
            trajectory.status = "timeout"
            trajectory.error = f"episode timed out after {self.limits.episode_timeout_s:g}s"
        except PolicyError as exc:
            trajectory.status = "error"
            trajectory.error = f"model error: {exc}"
        trajectory.duration_s = time.monotonic() - started
        trajectory.messages = build_messages(self.system, task, trajectory.steps)
        for step in trajectory.steps:
            for name, value in (step.usage or {}).items():
                trajectory.usage[name] = trajectory.usage.get(name, 0) + int(value)
        return trajectory

    def run(self, task: Task, **kwargs) -> Trajectory:
        """Blocking ``arun`` (not from inside a running event loop)."""
        return asyncio.run(self.arun(task, **kwargs))

    async def _episode(self, trajectory: Trajectory, on_step: StepCallback | None, stop: Sequence[str]) -> None:
        for _ in range(self.limits.max_steps):
            messages = build_messages(self.system, trajectory.task, trajectory.steps)
            t0 = time.monotonic()
            try:
                output = await asyncio.wait_for(self.policy.agenerate(messages, stop=list(stop)),
                                                self.limits.step_timeout_s)
            except asyncio.TimeoutError:
                trajectory.steps.append(Step(error=f"model step timed out after {self.limits.step_timeout_s:g}s",
                                             duration_s=time.monotonic() - t0))
                trajectory.status = "timeout"
                trajectory.error = "model step timed out"
                await _notify(on_step, trajectory.steps[-1])
                return
            step = step_from_output(output)
            if step.error == TRUNCATED:
                step.observation = "Error: your reply was cut at the token limit. Be shorter: one step per reply."
            elif step.action is None or step.tool_input is None:
                step.observation = FORMAT_REMINDER if step.action is None else f"Error: {step.error}"
            elif step.action == "finish":
                trajectory.final_answer = str(step.tool_input.get("answer", ""))
                trajectory.status = "finished"
            else:
                result = await self.tools.acall(step.action, step.tool_input)
                step.observation = result.observation
                if not result.ok:
                    step.error = result.error or "tool reported failure"
            step.duration_s = time.monotonic() - t0
            trajectory.steps.append(step)
            await _notify(on_step, step)
            if trajectory.status == "finished":
                return
        trajectory.status = "max_steps"
        trajectory.error = f"no finish within {self.limits.max_steps} steps"


async def _notify(callback: StepCallback | None, step: Step) -> None:
    if callback is None:
        return
    result = callback(step)
    if inspect.isawaitable(result):
        await result
