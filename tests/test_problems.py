"""Problem sets (deepcoder/data/problems.py and deepcoder/data/generators/): splits, determinism,
exact grading of generated math, answerable retrieval questions, user JSONL files and the
contamination check that guards training."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from deepcoder.agent.grading import check
from deepcoder.agent.loop import Agent
from deepcoder.agent.types import Task
from deepcoder.data.generators import in_heldout
from deepcoder.data.generators.math_problems import FAMILIES, MAX_ATTEMPTS, generate_math_tasks
from deepcoder.data.generators.retrieval_questions import BLANK, blank_name, first_sentence, stdlib_questions
from deepcoder.data.problems import (
    MATH_SIZES,
    ContaminationError,
    ProblemSetError,
    check_contamination,
    find_contamination,
    interleave_by_kind,
    load_humaneval,
    load_jsonl_tasks,
    load_mbpp,
    load_problem_set,
    load_retrieval_tasks,
    load_training_problems,
    mbpp_difficulty,
)
from deepcoder.teacher.reference import ReferencePolicy
from deepcoder.tools.registry import build_tools
from deepcoder.tools.retrieval import get_index
from deepcoder.tools.sandbox import run_python

LEVELS = (1, 2, 3)
# MBPP train problems that restate a test/validation problem (same statement or same code).
MBPP_TRAIN_DUPLICATES = {"mbpp/602", "mbpp/625", "mbpp/699", "mbpp/704", "mbpp/872", "mbpp/928"}


def _number(task_id: str) -> int:
    return int(task_id.split("/")[-1])


@pytest.fixture(scope="module")
def math_train() -> list[Task]:
    return load_problem_set("math")


@pytest.fixture(scope="module")
def math_heldout() -> list[Task]:
    return load_problem_set("math", split="heldout")


def one_per_family_level(tasks: list[Task]) -> list[Task]:
    """The first task of every (family, level), which the first 3 * len(FAMILIES) tasks hold."""
    chosen: dict[tuple[str, int], Task] = {}
    for task in tasks:
        chosen.setdefault((task.meta["family"], task.meta["difficulty"]), task)
    return list(chosen.values())


# --------------------------------------------------------------------------------------------
# MBPP


def test_mbpp_training_split_is_prompt_plus_train_without_duplicates_of_evaluation() -> None:
    train = load_problem_set("mbpp")
    numbers = {_number(t.id) for t in train}
    expected = (set(range(1, 11)) | set(range(601, 975))) - {_number(i) for i in MBPP_TRAIN_DUPLICATES}
    assert numbers == expected and len(train) == 378
    assert set(find_contamination(load_mbpp("prompt") + load_mbpp("train"))) == MBPP_TRAIN_DUPLICATES
    heldout = load_problem_set("mbpp", split="heldout")
    assert {_number(t.id) for t in heldout} == set(range(511, 601))
    assert [t.id for t in load_problem_set("mbpp", limit=5)] == [f"mbpp/{n}" for n in range(1, 6)]
    assert len(load_mbpp("train")) == 374  # the plain loader keeps the official split


def test_mbpp_difficulty_heuristic() -> None:
    assert mbpp_difficulty("def f(x):\n    return x + 1\n") == "easy"
    assert mbpp_difficulty("def f(xs):\n    # sum\n    return sum(x for x in xs if x > 0)\n") == "easy"  # depth 1
    assert mbpp_difficulty("def f(xs):\n    for x in xs:\n        if x:\n            return x\n") == "medium"
    elif_chain = ("def f(x):\n    if x < 0:\n        return -1\n    elif x == 0:\n        return 0\n"
                  "    elif x < 9:\n        return 1\n")
    assert mbpp_difficulty(elif_chain) == "medium"  # 7 lines, an elif is not deeper nesting
    nested = "def f(g):\n    for row in g:\n        for x in row:\n            if x:\n                return x\n"
    assert mbpp_difficulty(nested) == "hard"  # depth 3
    long = "def f(x):\n" + "".join(f"    x += {i}\n" for i in range(9)) + "    return x\n"
    assert mbpp_difficulty(long) == "hard"  # 11 lines
    counts = {d: 0 for d in ("easy", "medium", "hard")}
    for task in load_problem_set("mbpp"):
        counts[task.meta["difficulty"]] += 1
    assert counts == {"easy": 156, "medium": 142, "hard": 80}


# --------------------------------------------------------------------------------------------
# Math


def test_math_sizes_ids_and_coverage(math_train: list[Task], math_heldout: list[Task]) -> None:
    assert len(math_train) == MATH_SIZES["train"] and len(math_heldout) == MATH_SIZES["heldout"]
    assert [t.id for t in math_train[:3]] == ["math/train/0", "math/train/1", "math/train/2"]
    assert math_heldout[0].id == "math/heldout/0"
    first = math_train[:3 * len(FAMILIES)]
    expected = {(f.name, level) for f in FAMILIES for level in LEVELS}
    assert {(t.meta["family"], t.meta["difficulty"]) for t in first} == expected
    assert {t.meta["topic"] for t in first} == {"arithmetic", "combinatorics", "number_theory", "dates"}
    assert all(t.kind == "math" and t.answer and t.reference for t in math_train)
    assert len({t.prompt for t in math_train}) == len(math_train)  # no repeats within a split
    assert len(load_problem_set("math", limit=7)) == 7


def test_math_is_deterministic_and_seeded(math_train: list[Task]) -> None:
    again = generate_math_tasks("train", 200)
    assert [t.model_dump() for t in again] == [t.model_dump() for t in math_train[:200]]  # a prefix, and stable
    other = load_problem_set("math", limit=50, seed=7)
    assert other[0].id == "math/train/seed7/0"
    assert sum(a.prompt == b.prompt for a, b in zip(other, math_train)) < 5
    assert [t.prompt for t in load_problem_set("math", limit=50, seed=7)] == [t.prompt for t in other]


def test_math_train_and_heldout_are_disjoint(math_train: list[Task], math_heldout: list[Task]) -> None:
    assert not {t.prompt for t in math_train} & {t.prompt for t in math_heldout}
    assert not {t.meta["key"] for t in math_train} & {t.meta["key"] for t in math_heldout}
    assert all(in_heldout(t.meta["key"]) for t in math_heldout)
    assert not any(in_heldout(t.meta["key"]) for t in math_train)
    assert MAX_ATTEMPTS > 100


def _answer_ok(task: Task) -> bool:
    fmt, answer = task.meta["answer_format"], task.answer
    if fmt == "decimal2":
        return re.fullmatch(r"\d+\.\d\d", answer) is not None
    if fmt == "yyyymmdd":
        return re.fullmatch(r"\d{8}", answer) is not None and date(int(answer[:4]), int(answer[4:6]), int(answer[6:]))
    if fmt == "iso_weekday":
        return answer in {"1", "2", "3", "4", "5", "6", "7"}
    return re.fullmatch(r"-?\d+", answer) is not None


def _wrong_answers(task: Task) -> list[str]:
    """Near misses: off by one in the last unit, and the next day for dates."""
    answer = task.answer
    fmt = task.meta["answer_format"]
    if fmt == "decimal2":
        value = Decimal(answer)
        return [str(value + Decimal("0.01")), str(value - Decimal("0.01")), str(value + 1)]
    if fmt == "yyyymmdd":
        day = date(int(answer[:4]), int(answer[4:6]), int(answer[6:]))
        return [(day + timedelta(days=1)).strftime("%Y%m%d"), (day - timedelta(days=1)).strftime("%Y%m%d"),
                day.isoformat()]  # an ISO date is not the asked format and must not pass
    return [str(int(answer) + 1), str(int(answer) - 1)]


def test_every_math_family_is_graded_exactly(math_train: list[Task], math_heldout: list[Task]) -> None:
    for task in one_per_family_level(math_train[:60]) + one_per_family_level(math_heldout[:60]):
        assert _answer_ok(task), (task.id, task.answer)
        assert check(task, task.answer).passed, task.id
        assert check(task, f"The answer is {task.answer}.").passed, task.id
        for wrong in _wrong_answers(task):
            assert not check(task, wrong).passed, (task.id, wrong)


def test_math_references_print_the_answer_in_the_sandbox(config, math_train: list[Task]) -> None:
    for task in one_per_family_level(math_train[:60]):
        result = run_python(task.reference, config=config.sandbox)
        assert result.ok, (task.id, result.stderr)
        assert result.stdout.strip() == task.answer, (task.id, result.stdout)


def test_math_references_agree_with_the_generator(math_train: list[Task], math_heldout: list[Task]) -> None:
    """The references compute most answers another way (brute force, datetime loops), so running
    many of them checks the generator's formulas."""
    for task in math_train[:320] + math_heldout[:96]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(task.reference, {"__name__": "__main__"})  # our own generated programs
        assert out.getvalue().strip() == task.answer, task.id


# --------------------------------------------------------------------------------------------
# Retrieval


def test_first_sentence_and_blanking() -> None:
    assert first_sentence("gcd(x, y) -> int\n\nReturn the greatest\ncommon divisor. More text.") == \
        "Return the greatest common divisor."
    assert first_sentence("Pareto distribution.  alpha is the shape parameter.") == "Pareto distribution."
    assert blank_name("Shuffle list x in place; see random.shuffle.", "random.shuffle") == \
        f"{BLANK} list x in place; see {BLANK}."


def test_retrieval_questions_are_split_and_answerable(config) -> None:
    index = get_index(config)
    found = stdlib_questions(index)
    assert found.kept_fraction > 0.9 and len(found.questions) > 1000
    train = load_problem_set("retrieval", config=config)
    heldout = load_problem_set("retrieval", split="heldout", config=config)
    handwritten = load_retrieval_tasks()
    assert [t.id for t in heldout[:len(handwritten)]] == [t.id for t in handwritten]
    generated = heldout[len(handwritten):]
    assert len(train) + len(generated) == len(found.questions)
    assert len(generated) > 0.1 * len(found.questions) and len(train) > 3 * len(generated)
    train_answers = {t.answer for t in train}
    assert not train_answers & {t.answer for t in heldout}  # handwritten answers are kept out too
    assert all(not in_heldout(a) for a in train_answers) and all(in_heldout(t.answer) or t.answer in
                                                               {h.answer for h in handwritten} for t in generated)
    for task in train + generated:
        hits = [p.id for p in index.search(task.meta["query"], 3)]
        assert f"stdlib:{task.answer}" in hits, task.id
        assert task.meta["difficulty"] == hits.index(f"stdlib:{task.answer}") + 1
        assert '"' not in task.meta["query"] and "\\" not in task.meta["query"]
        quoted = task.prompt.split('"')[1]
        assert not re.search(rf"(?<!\w){re.escape(task.answer.rsplit('.', 1)[1])}(?!\w)", quoted, re.I), task.id
    sample = train[0]
    assert check(sample, sample.answer).passed and check(sample, f"It is `{sample.answer}`.").passed
    assert not check(sample, "json.dumps" if sample.answer != "json.dumps" else "json.loads").passed


def test_retrieval_order_is_deterministic_and_seeded(config) -> None:
    first = load_problem_set("retrieval", config=config, limit=50)
    assert [t.id for t in first] == [t.id for t in load_problem_set("retrieval", config=config, limit=50)]
    reordered = load_problem_set("retrieval", config=config, seed=1)
    assert [t.id for t in reordered[:50]] != [t.id for t in first]
    assert {t.id for t in reordered} == {t.id for t in load_problem_set("retrieval", config=config)}


def test_reference_teacher_solves_generated_tasks(config, math_train: list[Task]) -> None:
    """The reference teacher (python for math, retrieve for retrieval) finishes with a graded answer."""
    tasks = math_train[:len(FAMILIES)] + load_problem_set("retrieval", config=config, limit=3)
    agent = Agent(ReferencePolicy(tasks), build_tools(config))

    async def run_all():
        return await asyncio.gather(*(agent.arun(task) for task in tasks))

    for trajectory in asyncio.run(run_all()):
        assert trajectory.status == "finished", trajectory.error
        assert check(trajectory.task, trajectory.final_answer).passed, (trajectory.task.id, trajectory.final_answer)


# --------------------------------------------------------------------------------------------
# User JSONL files


def _write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


GOOD_ROWS = [
    {"id": "mine/1", "kind": "code", "prompt": "Write add(a, b) returning the sum.",
     "tests": ["assert add(1, 2) == 3"], "reference": "def add_numbers_custom(a, b):\n    c = a\n    return c + b"},
    {"id": "mine/2", "kind": "math", "prompt": "What is 6 * 7?", "answer": "42", "meta": {"difficulty": 1}},
]


def test_user_jsonl_loads(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "mine.jsonl", [GOOD_ROWS[0], "", GOOD_ROWS[1]])
    tasks = load_problem_set(str(path))
    assert [t.id for t in tasks] == ["mine/1", "mine/2"]
    assert tasks[0].kind == "code" and tasks[1].answer == "42"
    assert tasks[0].meta["source"] == "jsonl:mine.jsonl" and tasks[1].meta["difficulty"] == 1
    assert load_problem_set(str(path), limit=1)[0].id == "mine/1"
    with pytest.raises(ProblemSetError, match="no heldout split"):
        load_problem_set(str(path), split="heldout")


@pytest.mark.parametrize(("bad", "message"), [
    ("{not json", "not valid JSON"),
    ('["a list"]', "must be a JSON object"),
    ({"id": "x", "kind": "math"}, "prompt: Field required"),
    ({"id": "x", "kind": "poem", "prompt": "p", "answer": "a"}, "kind"),
    ({"id": "x", "prompt": "p", "answr": "a", "tests": ["assert 1"]}, "unknown key"),
    ({"id": "x", "kind": "code", "prompt": "p"}, "no tests"),
    ({"id": "x", "kind": "math", "prompt": "p"}, "no answer"),
    ({"id": "mine/1", "kind": "math", "prompt": "p", "answer": "1"}, "duplicate id 'mine/1' \\(first on line 1\\)"),
])
def test_user_jsonl_bad_line_names_file_and_line(tmp_path: Path, bad: object, message: str) -> None:
    path = _write_jsonl(tmp_path / "bad.jsonl", [GOOD_ROWS[0], GOOD_ROWS[1], bad])
    with pytest.raises(ProblemSetError, match=rf"bad\.jsonl:3: .*{message}"):
        load_jsonl_tasks(path)


def test_unknown_and_evaluation_sets_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ProblemSetError, match="unknown problem set"):
        load_problem_set("gsm8k")
    with pytest.raises(ProblemSetError, match="evaluation benchmark"):
        load_problem_set("humaneval")
    with pytest.raises(ProblemSetError, match="not found"):
        load_problem_set(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ProblemSetError, match="unknown split"):
        load_problem_set("math", split="test")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Contamination


def _copy(task: Task, **changes) -> Task:
    return task.model_copy(update=changes, deep=True)


def test_contamination_caught_by_id_prompt_and_code() -> None:
    humaneval = load_humaneval()[3]
    test = load_mbpp("test")[10]
    validation = load_mbpp("validation")[5]
    unrelated_code = "def unrelated(x):\n    y = x * 3\n    return y - 1"
    statement = test.prompt.split("\nYour code should pass")[0]
    cases = {
        # by id alone (everything else rewritten)
        "HumanEval/3": _copy(humaneval, prompt="Something else entirely.", reference=unrelated_code, tests=[]),
        test.id: _copy(test, prompt="Another statement.", reference=unrelated_code, tests=["assert True"]),
        validation.id: _copy(validation, prompt="Yet another.", reference=unrelated_code, tests=["assert 1"]),
        # by prompt: re-spaced and re-cased, under a new id, without the tests
        "copy/he-prompt": _copy(humaneval, id="copy/he-prompt", prompt="  " + humaneval.prompt.upper() + "\n",
                                reference=unrelated_code, tests=[]),
        "copy/test-prompt": _copy(test, id="copy/test-prompt", prompt="  " + statement.lower() + "  ",
                                  reference=unrelated_code, tests=["assert True"]),
        "copy/val-prompt": Task(id="copy/val-prompt", prompt=validation.prompt.replace(" ", "  "),
                                tests=["assert True"]),
        # by code: comments, docstring and layout changed, new id and prompt
        "copy/he-code": Task(id="copy/he-code", prompt="Implement it.", tests=["assert True"],
                             reference="# mine\n" + humaneval.reference.replace("    ", "  ")),
        "copy/test-code": Task(id="copy/test-code", prompt="Do the thing.", tests=["assert True"],
                               reference='"""doc"""\n' + test.reference + "\n# end"),
        "copy/val-code": Task(id="copy/val-code", prompt="Do another thing.", tests=["assert True"],
                              reference=validation.reference),
    }
    found = find_contamination(cases.values())
    assert set(found) == set(cases)
    assert any("id of HumanEval" in r for r in found["HumanEval/3"])
    assert any("prompt of MBPP test" in r for r in found["copy/test-prompt"])
    assert any("prompt of HumanEval" in r for r in found["copy/he-prompt"])
    assert any("reference code of MBPP validation" in r for r in found["copy/val-code"])
    with pytest.raises(ContaminationError) as caught:
        check_contamination(list(cases.values()) + [Task(id="fine/1", prompt="What is 6 * 7?", answer="42")])
    assert set(caught.value.ids) == set(cases) and "copy/he-code" in str(caught.value)


def test_clean_sets_pass_the_contamination_check(config, math_train: list[Task]) -> None:
    check_contamination(load_problem_set("mbpp") + math_train + load_problem_set("retrieval", config=config))
    check_contamination([Task(id=t.id.replace("mine", "ok"), **t.model_dump(exclude={"id"})) for t in
                         (Task.model_validate(r) for r in GOOD_ROWS)])


# --------------------------------------------------------------------------------------------
# Training problems


def test_interleave_by_kind_round_robins_kinds_then_sets() -> None:
    def tasks(prefix: str, kind: str, n: int) -> list[Task]:
        return [Task(id=f"{prefix}/{i}", kind=kind, prompt="p") for i in range(n)]

    merged = interleave_by_kind([tasks("a", "code", 3), tasks("b", "math", 1), tasks("c", "code", 2)])
    assert [t.id for t in merged] == ["a/0", "b/0", "c/0", "a/1", "c/1", "a/2"]


def test_training_problems_cover_every_kind_in_a_small_budget(config) -> None:
    tasks = load_training_problems(config)
    assert len(tasks) == config.generation.max_problems
    assert {t.kind for t in tasks} == {"code", "math", "retrieval"}
    config.generation.max_problems = 3
    small = load_training_problems(config)
    assert [t.kind for t in small] == ["code", "math", "retrieval"]
    assert all(t.meta.get("split") in ("prompt", "train") for t in small)


def test_training_problems_with_a_user_file(config, tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "mine.jsonl", GOOD_ROWS)
    config.generation.problem_sets = ["mbpp", str(path)]
    config.generation.max_problems = 4
    assert [t.id for t in load_training_problems(config)] == ["mbpp/1", "mine/2", "mine/1", "mbpp/2"]

    copied = load_mbpp("test")[0]
    leak = {"id": "mine/3", "kind": "code", "prompt": copied.prompt.split("\nYour")[0], "tests": ["assert True"]}
    _write_jsonl(path, GOOD_ROWS + [leak])
    with pytest.raises(ContaminationError, match="mine/3") as caught:
        load_training_problems(config)
    assert caught.value.ids == ["mine/3"]

    _write_jsonl(path, [dict(GOOD_ROWS[1], id="mbpp/2")])
    with pytest.raises(ProblemSetError, match="mbpp/2.* both mbpp and"):
        load_training_problems(config)
