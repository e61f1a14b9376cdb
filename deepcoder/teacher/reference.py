"""A reference teacher: solves our own problems from their reference solutions.

It writes the trajectories a good tool-using teacher would (think, run the code against the
tests, look things up, finish), with real tool calls made by the agent loop. It needs no API
key, so the demo, CI and the Groq emulator use it. It is a policy like any other.
"""

from __future__ import annotations

import re
from typing import Sequence

from deepcoder.agent.policy import Message, PolicyError, PolicyOutput
from deepcoder.agent.prompts import task_message
from deepcoder.agent.types import Task


def _fenced(code: str) -> str:
    return f"```python\n{code.rstrip()}\n```"


_STDLIB_CALL = re.compile(r"\b(re|heapq|collections|itertools|math|bisect|functools|string|statistics|operator)"
                          r"\.([a-z_][a-z0-9_]*)\b")


def stdlib_lookup(code: str) -> str | None:
    """The first stdlib call (``module.function``) a solution makes, worth a documentation lookup."""
    for m in _STDLIB_CALL.finditer(code):
        if re.search(rf"^\s*import\s+{m.group(1)}\b", code, re.MULTILINE):  # the module, not a variable
            return f"{m.group(1)}.{m.group(2)}"
    return None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


class ReferencePolicy:
    """Plays the reference solution of whichever known task the conversation is about."""

    def __init__(self, tasks: Sequence[Task], name: str = "reference-teacher") -> None:
        self.name = name
        self._by_message = {task_message(task): task for task in tasks}
        # direct (non-agent) benchmark prompts quote the task text: answer those with the code
        self._direct = [(task.prompt.split("\nYour code should pass")[0].strip(), task)
                        for task in tasks if task.kind == "code" and task.reference]

    async def agenerate(self, messages: Sequence[Message], *, stop: Sequence[str] = ()) -> PolicyOutput:
        return PolicyOutput(text=self.reply(messages), finish_reason="stop")

    def reply(self, messages: Sequence[Message]) -> str:
        user = next((m["content"] for m in messages if m["role"] == "user"), None)
        task = self._by_message.get(user or "")
        if task is None and not any(m["role"] == "system" for m in messages):
            direct = next((t for key, t in self._direct if key and key in (user or "")), None)
            if direct is not None:
                return _fenced(direct.reference or "")
        if task is None:
            raise PolicyError("the reference teacher only knows the tasks it was given")
        turn = sum(1 for m in messages if m["role"] == "assistant")
        last = messages[-1]["content"] if turn else ""
        observation = last.removeprefix("Observation:").strip()
        if task.kind == "code":
            return self._code(task, turn, observation)
        if task.kind == "math":
            return self._math(task, turn, observation)
        return self._retrieval(task, turn, observation)

    def _code(self, task: Task, turn: int, observation: str) -> str:
        code = task.reference or ""
        lookup = stdlib_lookup(code)
        if lookup is not None:  # first check the library call the solution relies on
            if turn == 0:
                return (f"Thought: The task: {_first_line(task.prompt)} The natural solution uses {lookup}; "
                        f"I will check its documentation first.\nAction: retrieve\n"
                        f'Action Input: {{"query": "{lookup}", "k": 2}}')
            turn -= 1
        if turn == 0:
            program = "\n\n".join(p for p in (task.test_setup, code, "\n".join(task.tests)) if p.strip())
            program += '\nprint("all tests passed")'
            return (f"Thought: The task: {_first_line(task.prompt)} I will write the function and check it "
                    f"against the given tests before answering.\nAction: python\nAction Input: {_fenced(program)}")
        if "all tests passed" in observation:
            return ("Thought: All the tests pass, so the solution is correct.\nAction: finish\n"
                    f"Action Input: {_fenced(code)}")
        return (f"Thought: The run failed ({_first_line(observation)[-200:]}). The reference solution is "
                f"what I have; I will submit it and note the failure.\nAction: finish\nAction Input: {_fenced(code)}")

    def _math(self, task: Task, turn: int, observation: str) -> str:
        if turn == 0:
            return ("Thought: This is exact arithmetic; computing it is safer than doing it by hand.\n"
                    f"Action: python\nAction Input: {_fenced(task.reference or 'print(' + repr(task.answer) + ')')}")
        numbers = re.findall(r"-?\d[\d.]*", observation)
        answer = numbers[-1] if numbers else (task.answer or "")
        return f"Thought: The program printed {answer}.\nAction: finish\nAction Input: {answer}"

    def _retrieval(self, task: Task, turn: int, observation: str) -> str:
        query = task.meta.get("query") or task.prompt
        if turn == 0:
            return (f"Thought: I should check the documentation rather than rely on memory.\n"
                    f"Action: retrieve\nAction Input: {{\"query\": \"{query}\", \"k\": 3}}")
        found = task.answer and task.answer.lower() in observation.lower()
        why = "The documentation names it" if found else "The passages do not name it directly, but I know it is"
        return f"Thought: {why}: {task.answer}.\nAction: finish\nAction Input: {task.answer}"

