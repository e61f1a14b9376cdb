"""Problem sets as ``Task`` objects: shipped, generated, and user JSONL files.

What training may see and what evaluation keeps:

* MBPP keeps its official splits (README: 1-10 prompting, 11-510 test, 511-600 validation,
  601-974 train). Training uses prompt + train, minus the train problems that duplicate a test
  or validation problem (found by ``find_contamination``); "heldout" is validation, reserved for
  the agentic eval; test is the benchmark.
* ``math``: word problems generated with exact answers (``generators.math_problems``).
* ``retrieval``: questions generated from the stdlib docstrings in the retrieval index
  (``generators.retrieval_questions``). The 6 handwritten questions (``load_retrieval_tasks``)
  open the heldout split, and their answers are never asked about in train.
* a path to a JSONL file of Task records: all of it is training data.

Generated sets put a problem in heldout by a hash of its content (``generators.in_heldout``), so
train and heldout never share a problem whatever sizes or seeds are asked for.

``load_training_problems`` is what generation calls: the configured sets, interleaved by kind,
truncated to ``max_problems``, and refused (``ContaminationError``) if any task overlaps
HumanEval or MBPP test/validation.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import logging
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Literal, Sequence

from pydantic import ValidationError

from deepcoder.agent.types import Task
from deepcoder.data.generators import in_heldout

if TYPE_CHECKING:
    from deepcoder.config import Config

logger = logging.getLogger(__name__)

MbppSplit = Literal["prompt", "test", "validation", "train", "all"]
Split = Literal["train", "heldout"]
Difficulty = Literal["easy", "medium", "hard"]

_MBPP_RANGES = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974),
                "all": (1, 974)}
BUILTIN_SETS = ("mbpp", "math", "retrieval")
EVALUATION_ONLY = ("humaneval",)
MATH_SIZES: dict[str, int] = {"train": 2000, "heldout": 500}  # default number of generated problems


class ProblemSetError(ValueError):
    """A problem set that cannot be loaded; the message names the set (file and line for JSONL)."""


class ContaminationError(ValueError):
    """Training tasks that overlap an evaluation set. ``reasons`` maps each offending id to why."""

    def __init__(self, reasons: dict[str, list[str]]) -> None:
        self.reasons = reasons
        self.ids = list(reasons)
        shown = [f"{task_id} ({'; '.join(why)})" for task_id, why in list(reasons.items())[:10]]
        more = f" and {len(reasons) - 10} more" if len(reasons) > 10 else ""
        super().__init__(f"{len(reasons)} training task(s) overlap HumanEval or MBPP test/validation: "
                         + ", ".join(shown) + more)


# --------------------------------------------------------------------------------------------
# Shipped data


def _data_file(name: str):
    return resources.files("deepcoder.resources.data").joinpath(name)


def _read_jsonl(name: str) -> Iterable[dict]:
    with _data_file(name).open("r", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def _mbpp_prompt(text: str, tests: list[str]) -> str:
    return f"{text}\nYour code should pass these tests:\n" + "\n".join(tests)


_BLOCKS = (ast.For, ast.AsyncFor, ast.While, ast.If, ast.With, ast.AsyncWith, ast.Try, ast.TryStar,
           ast.comprehension)


def _parse(code: str) -> ast.Module:
    """ast.parse without the SyntaxWarnings old MBPP code raises (invalid escapes like '\\d')."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (SyntaxWarning, DeprecationWarning))
        return ast.parse(code)


def _nesting(node: ast.AST, depth: int = 0) -> int:
    """Deepest control-flow nesting under node; an elif counts as its if's level, not one deeper."""
    deepest = depth
    for child in ast.iter_child_nodes(node):
        is_elif = isinstance(node, ast.If) and isinstance(child, ast.If) and node.orelse == [child]
        inner = depth + 1 if isinstance(child, _BLOCKS) and not is_elif else depth
        deepest = max(deepest, _nesting(child, inner))
    return deepest


def mbpp_difficulty(code: str) -> Difficulty:
    """easy / medium / hard from the reference solution, so curricula and reports can use it.

    lines = non-blank, non-comment lines (the ``def`` included); depth = deepest nesting of
    for/while/if/with/try blocks and comprehension loops. easy: lines <= 4 and depth <= 1;
    hard: lines >= 10 or depth >= 3; medium otherwise. The number of tests is no signal (every
    MBPP problem has 3). On MBPP prompt + train this gives 158 easy, 146 medium, 80 hard.
    """
    lines = sum(1 for line in code.splitlines() if line.strip() and not line.strip().startswith("#"))
    try:
        depth = _nesting(_parse(code))
    except SyntaxError:  # fall back to indentation: 4 spaces (or a tab) per level below the def
        indents = [len(line.expandtabs(4)) - len(line.lstrip()) for line in code.splitlines() if line.strip()]
        depth = max(indents, default=0) // 4 - 1
    if lines <= 4 and depth <= 1:
        return "easy"
    if lines >= 10 or depth >= 3:
        return "hard"
    return "medium"


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
        reference = record["code"].replace("\r\n", "\n")
        tasks.append(Task(
            id=f"mbpp/{task_id}", kind="code", prompt=_mbpp_prompt(record[text_key].strip(), tests),
            tests=tests, test_setup=setup, reference=reference,
            meta={"source": "sanitized-mbpp" if sanitized else "mbpp", "split": split,
                  "challenge_tests": record.get("challenge_test_list", []),
                  "difficulty": mbpp_difficulty(reference)},
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


# --------------------------------------------------------------------------------------------
# Problem sets by name


def _mbpp_set(split: Split) -> list[Task]:
    """prompt + train for training (minus duplicates of evaluation problems); validation as heldout."""
    if split == "heldout":
        return load_mbpp("validation")
    tasks = load_mbpp("prompt") + load_mbpp("train")
    duplicates = find_contamination(tasks)
    if duplicates:
        logger.debug("mbpp: leaving out train problems that duplicate evaluation problems: %s", duplicates)
    return [t for t in tasks if t.id not in duplicates]


def _math_set(split: Split, limit: int | None, seed: int) -> list[Task]:
    from deepcoder.data.generators.math_problems import generate_math_tasks

    return generate_math_tasks(split, MATH_SIZES[split] if limit is None else limit, seed=seed)


def _retrieval_set(split: Split, seed: int, config: "Config | None") -> list[Task]:
    """Generated questions of one split in a seed-dependent but fixed order; heldout starts
    with the handwritten questions, whose answers are kept out of train."""
    from deepcoder.data.generators.retrieval_questions import stdlib_questions
    from deepcoder.tools.retrieval import get_index

    if config is None:
        from deepcoder.config import load_config

        config = load_config()
    handwritten = load_retrieval_tasks()
    reserved = {t.answer for t in handwritten}
    questions = [q for q in stdlib_questions(get_index(config)).questions
                 if (in_heldout(q.candidate.name) or q.candidate.name in reserved) == (split == "heldout")]
    questions.sort(key=lambda q: hashlib.sha256(f"{seed}:{q.candidate.name}".encode()).hexdigest())
    tasks = []
    if split == "heldout":
        for task in handwritten:
            task.meta.update({"source": "retrieval-handwritten", "split": "heldout"})
            tasks.append(task)
    for q in questions:
        c = q.candidate
        tasks.append(Task(
            id=f"retrieval/{split}/{c.name}", kind="retrieval", prompt=c.prompt(), answer=c.name,
            meta={"query": c.query, "source": "retrieval-generated", "split": split, "difficulty": q.rank,
                  "object_kind": c.kind, "module": c.module, "passage_id": c.passage_id},
        ))
    return tasks


_TASK_FIELDS = set(Task.model_fields)


def load_jsonl_tasks(path: str | Path) -> list[Task]:
    """Task records from a user JSONL file, one object per line (blank lines skipped).

    Each line is validated as a ``Task``; unknown keys are rejected (a misspelt "answer" would
    otherwise vanish silently), and a task must be checkable: code needs tests, other kinds an
    answer. Errors name the file and line.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ProblemSetError(f"problem set file not found: {path}")
    tasks: list[Task] = []
    first_line: dict[str, int] = {}
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ProblemSetError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(data, dict):
                raise ProblemSetError(f"{where}: each line must be a JSON object (a Task record)")
            unknown = sorted(set(data) - _TASK_FIELDS)
            if unknown:
                raise ProblemSetError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                                      f"a Task has {', '.join(sorted(_TASK_FIELDS))}")
            try:
                task = Task.model_validate(data)
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}"
                                     for e in exc.errors(include_url=False))
                raise ProblemSetError(f"{where}: not a valid task: {problems}") from None
            if task.kind == "code" and not task.tests:
                raise ProblemSetError(f"{where}: code task {task.id!r} has no tests to check answers against")
            if task.kind != "code" and not (task.answer or "").strip():
                raise ProblemSetError(f"{where}: {task.kind} task {task.id!r} has no answer to check against")
            if task.id in first_line:
                raise ProblemSetError(f"{where}: duplicate id {task.id!r} (first on line {first_line[task.id]})")
            first_line[task.id] = line_no
            task.meta.setdefault("source", f"jsonl:{path.name}")
            tasks.append(task)
    return tasks


def load_problem_set(name: str, *, split: Split = "train", limit: int | None = None, seed: int = 0,
                     config: "Config | None" = None) -> list[Task]:
    """One problem set: "mbpp", "math", "retrieval", or the path of a JSONL file of Task records.

    ``limit`` keeps the first tasks (for math it is the number generated; None = MATH_SIZES).
    ``seed`` changes the generated math problems and the order of the retrieval questions; MBPP
    and files keep their order. ``config`` locates the retrieval index (default: load_config()).
    Files have no heldout split.
    """
    if split not in ("train", "heldout"):
        raise ProblemSetError(f"unknown split {split!r}; choose train or heldout")
    if limit is not None and limit < 0:
        raise ProblemSetError(f"limit must be at least 0, got {limit}")
    key = name.strip().lower()
    if key == "mbpp":
        tasks = _mbpp_set(split)
    elif key == "math":
        tasks = _math_set(split, limit, seed)
    elif key == "retrieval":
        tasks = _retrieval_set(split, seed, config)
    elif key in EVALUATION_ONLY:
        raise ProblemSetError(f"{name} is an evaluation benchmark and cannot be used as a problem set")
    elif name.endswith(".jsonl") or Path(name).expanduser().is_file():
        if split == "heldout":
            raise ProblemSetError(f"{name}: a problem set file has no heldout split")
        tasks = load_jsonl_tasks(name)
    else:
        raise ProblemSetError(f"unknown problem set {name!r}; choose {', '.join(BUILTIN_SETS)} "
                              "or the path of a .jsonl file of tasks")
    return tasks if limit is None else tasks[:limit]


def _round_robin(streams: Sequence[Sequence[Task]]) -> list[Task]:
    """One from each stream in turn until all are used up."""
    out: list[Task] = []
    for i in range(max((len(s) for s in streams), default=0)):
        out.extend(s[i] for s in streams if i < len(s))
    return out


def interleave_by_kind(problem_sets: Sequence[Sequence[Task]]) -> list[Task]:
    """Tasks taken one kind at a time in turn (kinds in order of first appearance), and within a
    kind one set at a time, so any prefix covers every kind and every set."""
    by_kind: dict[str, list[list[Task]]] = {}
    for tasks in problem_sets:
        groups: dict[str, list[Task]] = {}
        for task in tasks:
            groups.setdefault(task.kind, []).append(task)
        for kind, group in groups.items():
            by_kind.setdefault(kind, []).append(group)
    return _round_robin([_round_robin(groups) for groups in by_kind.values()])


def load_training_problems(config: "Config") -> list[Task]:
    """The problems generation runs on: ``generation.problem_sets`` (train splits), interleaved by
    kind, truncated to ``generation.max_problems``, after the contamination check."""
    generation = config.generation
    if not generation.problem_sets:
        raise ProblemSetError("generation.problem_sets is empty; name at least one of "
                              f"{', '.join(BUILTIN_SETS)} or a .jsonl file")
    limit = generation.max_problems
    sets = [load_problem_set(name, split="train", limit=limit, config=config) for name in generation.problem_sets]
    seen: dict[str, str] = {}
    for name, tasks in zip(generation.problem_sets, sets):
        for task in tasks:
            if task.id in seen:
                raise ProblemSetError(f"task id {task.id!r} is in both {seen[task.id]} and {name}; ids must be unique")
            seen[task.id] = name
    tasks = interleave_by_kind(sets)
    check_contamination(tasks)
    return tasks if limit is None else tasks[:limit]


# --------------------------------------------------------------------------------------------
# Contamination


def _normalise_text(text: str) -> str:
    """Lower-case words and numbers only, so spacing and punctuation changes still match."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _problem_texts(prompt: str) -> set[str]:
    """The whole prompt and, for MBPP-style prompts, the problem statement before the tests."""
    texts = {_normalise_text(prompt)}
    statement = re.split(r"your code should pass", prompt, maxsplit=1, flags=re.IGNORECASE)[0]
    texts.add(_normalise_text(statement))
    return texts - {""}


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


def _code_fingerprints(code: str) -> set[str]:
    """The code and each top-level function, with comments, docstrings and layout removed."""
    try:
        tree = _without_docstrings(_parse(code))
    except (SyntaxError, ValueError):
        return {" ".join(code.split())} if code.strip() else set()
    prints = {ast.unparse(tree)}
    prints.update(ast.unparse(node) for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return prints - {"", "pass"}


def _tests_fingerprint(tests: Sequence[str]) -> str:
    return "\n".join(sorted("".join(t.split()) for t in tests if t.strip()))


@dataclass(frozen=True)
class _EvalFingerprints:
    ids: dict[str, str]  # task id -> label
    texts: dict[str, str]  # normalised problem text -> label
    docstrings: dict[str, str]  # normalised HumanEval docstring -> label, matched inside prompts
    code: dict[str, str]  # code fingerprint -> label
    tests: dict[str, str]  # tests fingerprint -> label


@lru_cache(maxsize=1)
def _evaluation_fingerprints() -> _EvalFingerprints:
    """Fingerprints of every evaluation problem: HumanEval, and MBPP test and validation (original
    and sanitized wording)."""
    labelled: list[tuple[str, Task]] = [(f"HumanEval {t.id}", t) for t in load_humaneval()]
    for split in ("test", "validation"):
        for sanitized in (False, True):
            labelled += [(f"MBPP {split} {t.id}", t) for t in load_mbpp(split, sanitized=sanitized)]
    ids, texts, docstrings, code, tests = {}, {}, {}, {}, {}
    for label, task in labelled:
        ids[task.id] = label
        for text in _problem_texts(task.prompt):
            texts.setdefault(text, label)
        for fingerprint in _code_fingerprints(task.reference or ""):
            code.setdefault(fingerprint, label)
        tests.setdefault(_tests_fingerprint(task.tests), label)
        if task.entry_point:
            try:
                doc = next((ast.get_docstring(n) for n in _parse(task.prompt).body
                            if isinstance(n, ast.FunctionDef) and n.name == task.entry_point), None)
            except SyntaxError:
                doc = None
            if doc and len(_normalise_text(doc)) >= 40:
                docstrings[_normalise_text(doc)] = label
    tests.pop("", None)
    return _EvalFingerprints(ids, texts, docstrings, code, tests)


def find_contamination(tasks: Iterable[Task]) -> dict[str, list[str]]:
    """Tasks that are, or copy, an evaluation problem: the same id, the same problem text (or a
    HumanEval docstring inside the prompt), the same reference code (as a whole or any top-level
    function), or the same tests. Maps each such task id to the reasons."""
    refs = _evaluation_fingerprints()
    found: dict[str, list[str]] = {}
    for task in tasks:
        reasons = []
        if task.id in refs.ids:
            reasons.append(f"id of {refs.ids[task.id]}")
        texts = _problem_texts(task.prompt)
        text_hit = next((refs.texts[t] for t in texts if t in refs.texts), None)
        if text_hit is None:
            whole = _normalise_text(task.prompt)
            text_hit = next((label for doc, label in refs.docstrings.items() if doc in whole), None)
        if text_hit:
            reasons.append(f"prompt of {text_hit}")
        code_hit = next((refs.code[c] for c in _code_fingerprints(task.reference or "") if c in refs.code), None)
        if code_hit:
            reasons.append(f"reference code of {code_hit}")
        tests_hit = refs.tests.get(_tests_fingerprint(task.tests)) if task.tests else None
        if tests_hit:
            reasons.append(f"tests of {tests_hit}")
        if reasons:
            found[task.id] = reasons
    return found


def check_contamination(tasks: Iterable[Task]) -> None:
    """Raise ContaminationError naming every task that overlaps HumanEval or MBPP test/validation."""
    found = find_contamination(tasks)
    if found:
        raise ContaminationError(found)
