"""The system prompt and the chat messages of an episode (one builder for every policy)."""

from __future__ import annotations

from typing import Sequence

from deepcoder.agent.format import render_observation, render_step
from deepcoder.agent.types import Step, Task

SYSTEM_PROMPT = """You are a careful programming and reasoning agent. Solve the task step by step with tools.

Tools:
{tools}

Answer in exactly this format, one step per reply:
Thought: <your reasoning about what to do next>
Action: <one tool name: {tool_names}>
Action Input: <the tool's input: python code in a ```python fenced block, a retrieve query, or the final answer>

After each action you receive "Observation: <tool output>". Continue until you know the answer, then:
Thought: <why the answer is right>
Action: finish
Action Input: <the final answer; for coding tasks the complete code in a ```python block>

Test code with the python tool before you finish. Never write the Observation yourself."""

TASK_HINTS = {
    "code": "Write a Python solution, run it against the tests with the python tool, then finish with the code.",
    "math": "Compute the answer with the python tool, then finish with the number only.",
    "retrieval": "Look it up with the retrieve tool, then finish with the exact name asked for.",
    "other": "",
}

OBSERVATION_STOP = ("\nObservation:", "\nObservation 1:", "\n**Observation")


def system_prompt(tool_descriptions: str, tool_names: Sequence[str]) -> str:
    return SYSTEM_PROMPT.format(tools=tool_descriptions, tool_names=", ".join(tool_names))


def task_message(task: Task) -> str:
    hint = TASK_HINTS.get(task.kind, "")
    return f"Task: {task.prompt}" + (f"\n\n{hint}" if hint else "")


def build_messages(system: str, task: Task, steps: Sequence[Step]) -> list[dict[str, str]]:
    """system, user task, then per step an assistant turn and a user turn with the observation."""
    messages = [{"role": "system", "content": system}, {"role": "user", "content": task_message(task)}]
    for step in steps:
        messages.append({"role": "assistant", "content": render_step(step, with_observation=False)})
        if step.observation is not None:
            messages.append({"role": "user", "content": render_observation(step.observation)})
    return messages
