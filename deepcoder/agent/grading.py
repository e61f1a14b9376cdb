"""Checking an episode's final answer against its task (code: run the tests in the sandbox)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from deepcoder.agent.format import extract_code
from deepcoder.agent.types import Task
from deepcoder.config import SandboxConfig
from deepcoder.tools.sandbox import SandboxInputError, run_python


def checking_program(task: Task, code: str) -> str:
    """The program that passes only if ``code`` solves ``task``: code, setup, then the tests.

    The setup goes after the code because MBPP's setups (problems 367 and 927) build their test
    trees from the class the solution defines."""
    parts = [code, task.test_setup]
    if task.entry_point:  # HumanEval style: the test defines check(candidate)
        parts += task.tests + [f"check({task.entry_point})"]
    else:
        parts += task.tests
    return "\n\n".join(p for p in parts if p and p.strip())


def _normalise(text: str) -> str:
    return re.sub(r"[\s`'\"*]+", " ", text).strip().lower().rstrip(".")


def _last_number(text: str) -> Decimal | None:
    found = re.findall(r"-?\d[\d,]*(?:\.\d+)?", text)
    if not found:
        return None
    try:
        return Decimal(found[-1].replace(",", ""))
    except InvalidOperation:
        return None


@dataclass(frozen=True)
class Verdict:
    """A checker's answer: passed or not, and why (shown in reports)."""

    passed: bool
    detail: str


def check(task: Task, answer: str | None, *, sandbox: SandboxConfig | None = None) -> Verdict:
    """Run the task's checker on ``answer``: code tests in the sandbox, exact numbers for math,
    string match for retrieval and other tasks."""
    if answer is None or not answer.strip():
        return Verdict(False, "no final answer")
    if task.kind == "code":
        if not task.tests:
            return Verdict(False, "task has no tests to check against")
        try:
            result = run_python(checking_program(task, extract_code(answer)), config=sandbox)
        except SandboxInputError as exc:
            return Verdict(False, f"unusable code: {exc}")
        if result.ok:
            return Verdict(True, f"{len(task.tests)} test(s) passed")
        why = "timed out" if result.timed_out else (result.stderr.strip().splitlines() or ["failed"])[-1]
        return Verdict(False, f"tests failed: {why[:300]}")
    if task.answer is None:
        return Verdict(False, "task has no reference answer")
    if task.kind == "math" or re.fullmatch(r"-?\d+(\.\d+)?", task.answer.strip()):
        expected, got = _last_number(task.answer), _last_number(answer)
        if expected is not None:
            passed = got is not None and got == expected
            return Verdict(passed, f"expected {task.answer}, got {answer.strip()[:100]}")
    passed = _normalise(task.answer) in _normalise(answer)
    return Verdict(passed, f"expected {task.answer!r} in the answer")


def grade(task: Task, answer: str | None, *, sandbox: SandboxConfig | None = None) -> bool:
    """Whether ``answer`` solves ``task`` (see ``check`` for the detail)."""
    return check(task, answer, sandbox=sandbox).passed
