"""Checking an episode's final answer against its task (code: run the tests in the sandbox)."""

from __future__ import annotations

import re

from deepcoder.agent.format import extract_code
from deepcoder.agent.types import Task
from deepcoder.config import SandboxConfig
from deepcoder.tools.sandbox import SandboxInputError, run_python


def checking_program(task: Task, code: str) -> str:
    """The program that passes only if ``code`` solves ``task``: setup, code, then the tests."""
    parts = [task.test_setup, code]
    if task.entry_point:  # HumanEval style: the test defines check(candidate)
        parts += task.tests + [f"check({task.entry_point})"]
    else:
        parts += task.tests
    return "\n\n".join(p for p in parts if p and p.strip())


def _normalise(text: str) -> str:
    return re.sub(r"[\s`'\"*]+", " ", text).strip().lower().rstrip(".")


def _numbers(text: str) -> list[float]:
    return [float(x.replace(",", "")) for x in re.findall(r"-?\d[\d,]*\.?\d*(?:[eE]-?\d+)?", text)]


def grade(task: Task, answer: str | None, *, sandbox: SandboxConfig | None = None) -> bool:
    """Whether ``answer`` solves ``task``. Code runs in the sandbox; math compares numbers."""
    if answer is None or not answer.strip():
        return False
    if task.kind == "code":
        if not task.tests:
            return False
        try:
            result = run_python(checking_program(task, extract_code(answer)), config=sandbox)
        except SandboxInputError:
            return False
        return result.ok
    if task.answer is None:
        return False
    if task.kind == "math":
        expected = _numbers(task.answer)
        got = _numbers(answer)
        if expected and got:
            return abs(got[-1] - expected[-1]) <= 1e-6 * max(1.0, abs(expected[-1]))
    return _normalise(task.answer) in _normalise(answer)
