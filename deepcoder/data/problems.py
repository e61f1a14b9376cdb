"""Problem sets shipped with the package, as ``Task`` objects.

MBPP keeps its official splits (README: 1-10 prompting, 11-510 test, 511-600 validation,
601-974 train) so training never sees evaluation problems.
"""

from __future__ import annotations

import gzip
import json
from importlib import resources
from typing import Iterable, Literal

from deepcoder.agent.types import Task

MbppSplit = Literal["prompt", "test", "validation", "train", "all"]
_MBPP_RANGES = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974),
                "all": (1, 974)}


def _data_file(name: str):
    return resources.files("deepcoder.resources.data").joinpath(name)


def _read_jsonl(name: str) -> Iterable[dict]:
    with _data_file(name).open("r", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def _mbpp_prompt(text: str, tests: list[str]) -> str:
    return f"{text}\nYour code should pass these tests:\n" + "\n".join(tests)


def load_mbpp(split: MbppSplit = "train", *, sanitized: bool = False) -> list[Task]:
    """MBPP problems of one split. ``sanitized`` uses the hand-verified 427-problem subset."""
    if split not in _MBPP_RANGES:
        raise ValueError(f"unknown MBPP split {split!r}; choose one of {', '.join(_MBPP_RANGES)}")
    low, high = _MBPP_RANGES[split]
    if sanitized:
        records = json.loads(_data_file("sanitized-mbpp.json").read_text(encoding="utf-8"))
        text_key = "prompt"
    else:
        records = list(_read_jsonl("mbpp.jsonl"))
        text_key = "text"
    tasks = []
    for record in records:
        task_id = int(record["task_id"])
        if not low <= task_id <= high:
            continue
        tests = list(record["test_list"])
        setup = record.get("test_setup_code", "") or "\n".join(record.get("test_imports", []))
        tasks.append(Task(
            id=f"mbpp/{task_id}", kind="code", prompt=_mbpp_prompt(record[text_key].strip(), tests),
            tests=tests, test_setup=setup, reference=record["code"].replace("\r\n", "\n"),
            meta={"source": "sanitized-mbpp" if sanitized else "mbpp", "split": split,
                  "challenge_tests": record.get("challenge_test_list", [])},
        ))
    return tasks


def load_humaneval() -> list[Task]:
    """The 164 HumanEval problems; the prompt is the function signature and docstring."""
    with gzip.open(_data_file("HumanEval.jsonl.gz").open("rb"), "rt", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    return [
        Task(id=r["task_id"], kind="code", prompt=r["prompt"], tests=[r["test"]], entry_point=r["entry_point"],
             reference=r["prompt"] + r["canonical_solution"], meta={"source": "humaneval"})
        for r in records
    ]


def load_math_tasks() -> list[Task]:
    """Small arithmetic / number-theory problems with exact answers (solved with the python tool)."""
    return [Task(kind="math", **record) for record in _read_jsonl("math_tasks.jsonl")]


def load_retrieval_tasks() -> list[Task]:
    """Questions answered from the Python documentation (solved with the retrieve tool)."""
    return [Task(kind="retrieval", **record) for record in _read_jsonl("retrieval_tasks.jsonl")]
