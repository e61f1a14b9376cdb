"""Trajectory quality: why a generated episode is (not) fit to train on, and how the set looks.

Generation writes every episode, good or bad, so that failures can be studied. Before the
dataset builder turns trajectories into token masks they are assessed one by one and only the
ones with no failure reason are kept. The same assessments feed the report (``report.py``).

Failure reasons (the fixed vocabulary, in ``REASONS``):

* ``unreadable`` - the JSONL line is not a Trajectory (torn write, bad JSON, wrong schema).
* ``incomplete`` - ``status`` is not ``finished`` (max_steps, timeout, error).
* ``malformed``  - a step's raw model output has parse problems, a step failed with
  "no action in reply" / "empty reply" / a truncated reply, or the rendered steps do not parse back to the same
  steps (the student would be trained on text that does not mean what the record says).
* ``unverified`` - the checker did not accept the final answer (``verified`` is False or
  missing; with ``reverify=True`` the checker is run again and its verdict is used).
* ``too_long``   - the trajectory has more tokens than ``max_tokens``.

Reading never raises for a bad line and assessing never raises for a bad record; the one
exception is a missing sandbox when re-verifying code tasks, which is a setup error the user
has to fix rather than a property of the data.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from pydantic import ValidationError

from deepcoder.agent.format import parse_steps, render, render_step
from deepcoder.agent.grading import check
from deepcoder.agent.types import Step, Trajectory
from deepcoder.config import SandboxConfig

REASONS: dict[str, str] = {
    "unreadable": "line is not a valid Trajectory record (torn write, bad JSON or schema)",
    "incomplete": "status is not 'finished' (max_steps, timeout or error)",
    "malformed": "a step broke the Thought/Action/Observation format or does not round-trip",
    "unverified": "the checker did not accept the final answer",
    "too_long": "more tokens than the limit",
}
"""Every failure reason an Assessment can carry, with the description shown in reports."""

MALFORMED_STEP_ERRORS = frozenset({
    "no action in reply",
    "empty reply",
    "over-long output: the reply hit the max_tokens limit",  # the loop's TRUNCATED
})
"""Step errors (set by the agent loop) that mean the model broke the format, not a tool.
Such a step's action, if any, was never run, so it is not counted as a tool call either."""

CHARS_PER_TOKEN = 4
"""Rough characters per token for English text and code, used only when usage is missing."""

PROGRESS_MIN_RECORDS = 500
"""Show a progress bar (in auto mode) only for files with at least this many lines."""

UNREADABLE_SOURCE = "(unreadable)"


# ------------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class BadRecord:
    """A line that could not be read as a Trajectory; kept so it is counted, not silently lost."""

    line_no: int
    error: str
    excerpt: str


@dataclass(frozen=True)
class Record:
    """One non-blank line of a trajectories file: its exact bytes and what it decoded to.

    The bytes are kept so the filter can copy kept records unchanged.
    """

    line_no: int
    line: bytes
    item: Trajectory | BadRecord


def _decode(line_no: int, line: bytes) -> Trajectory | BadRecord:
    try:
        return Trajectory.model_validate_json(line)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        why = f"{first.get('msg', 'invalid')}{f' at {where}' if where else ''}"
        if exc.error_count() > 1:
            why += f" (+{exc.error_count() - 1} more)"
        return BadRecord(line_no, why, line[:200].decode("utf-8", errors="replace"))
    except ValueError as exc:  # not UTF-8 and the like
        return BadRecord(line_no, str(exc)[:200], line[:200].decode("utf-8", errors="replace"))


def read_records(path: str | Path) -> Iterator[Record]:
    """Every non-blank line of a JSONL file with its bytes; bad lines become ``BadRecord``."""
    with open(path, "rb") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            yield Record(line_no, line, _decode(line_no, line))


def read_trajectories(path: str | Path) -> Iterator[Trajectory | BadRecord]:
    """The records of a trajectories file; a torn or invalid line is a ``BadRecord``, not an error."""
    for record in read_records(path):
        yield record.item


# ------------------------------------------------------------------------------------ assessing


@dataclass
class Assessment:
    """The verdict on one record: keep or not, why, and the numbers the report aggregates."""

    line_no: int | None
    id: str
    problem_id: str
    source: str
    kind: str
    keep: bool
    reasons: list[str]
    status: str | None = None
    verified: bool | None = None
    verification: str | None = None
    reverified: bool = False
    steps: int = 0
    tool_calls: int = 0
    failed_tool_calls: int = 0
    tool_ok: dict[str, int] = field(default_factory=dict)
    tool_failed: dict[str, int] = field(default_factory=dict)
    tokens: int = 0
    tokens_estimated: bool = False
    format_valid: bool = False
    format_problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate_tokens(text: str) -> int:
    """``ceil(len(text) / CHARS_PER_TOKEN)``: a tokenizer-free guess, good to maybe 20-30%."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def count_tokens(trajectory: Trajectory) -> tuple[int, bool]:
    """(tokens, estimated): the length of the trajectory as one training sequence.

    The teacher's last request held the whole conversation so far, so its prompt tokens plus its
    completion tokens are the full sequence (summing ``usage`` over the steps would count every
    earlier turn again per step). Without per-step usage (offline teachers, other writers) the
    count is estimated from the text a training example holds: system prompt, task prompt and the
    rendered steps, at ``CHARS_PER_TOKEN`` characters per token. ``estimated`` says which it was.
    """
    last = next((step.usage for step in reversed(trajectory.steps) if step.usage), None)
    if last and ("prompt_tokens" in last or "completion_tokens" in last):
        return int(last.get("prompt_tokens", 0)) + int(last.get("completion_tokens", 0)), False
    text = "\n".join((trajectory.system_prompt, trajectory.task.prompt, trajectory.text()))
    return estimate_tokens(text), True


def _normalise_ws(text: str | None) -> str | None:
    return " ".join(text.split()) if text is not None else None


def _step_signature(step: Step) -> tuple[Any, ...]:
    return (_normalise_ws(step.thought), step.action, step.tool_input, _normalise_ws(step.observation))


def round_trip_problems(steps: Sequence[Step]) -> list[str]:
    """Why ``parse_steps(render(steps))`` does not give ``steps`` back (empty when it does).

    Steps that render to nothing (a model step that timed out) are left out: they carry no
    text to train on. Whitespace inside thoughts and observations is not compared.
    """
    kept = [step for step in steps if render_step(step).strip()]
    if not kept:
        return []
    parsed = parse_steps(render(kept))
    problems = [f"re-parse: {p}" for p in parsed.problems]
    if len(parsed.steps) != len(kept):
        problems.append(f"rendered {len(kept)} step(s) parse back as {len(parsed.steps)}")
        return problems
    for number, (original, again) in enumerate(zip(kept, parsed.steps), start=1):
        if _step_signature(original) != _step_signature(again):
            problems.append(f"step {number} does not parse back to itself")
    return problems


def format_problems(trajectory: Trajectory) -> list[str]:
    """Everything wrong with the format of a trajectory (empty when the format is valid)."""
    problems: list[str] = []
    for number, step in enumerate(trajectory.steps, start=1):
        found = list(step.problems)
        if step.raw is not None and step.raw.strip():
            found += [p for p in parse_steps(step.raw).problems if p not in found]
        if step.error in MALFORMED_STEP_ERRORS:
            found.append(step.error)
        problems += [f"step {number}: {p}" for p in found]
    return problems + round_trip_problems(trajectory.steps)


def _is_tool_call(step: Step) -> bool:
    return step.action is not None and not step.is_finish and step.error not in MALFORMED_STEP_ERRORS


def assess(trajectory: Trajectory, *, max_tokens: int | None, reverify: bool = False,
           sandbox: SandboxConfig | None = None, line_no: int | None = None) -> Assessment:
    """Judge one trajectory. ``max_tokens=None`` turns the length check off.

    A tool call is a step with an action other than ``finish`` that was not cut off as a format
    error; it failed when the step has an ``error`` (the tool reported a failure, a non-zero
    exit, or the input was unusable).
    With ``reverify`` the task's checker is run on the final answer (code tasks need the
    sandbox described by ``sandbox``) and replaces the stored ``verified`` flag.
    """
    reasons: list[str] = []
    if trajectory.status != "finished":
        reasons.append("incomplete")

    problems = format_problems(trajectory)
    if problems:
        reasons.append("malformed")

    verified, verification = trajectory.verified, trajectory.verification
    if reverify:
        verdict = check(trajectory.task, trajectory.final_answer, sandbox=sandbox)
        verified, verification = verdict.passed, verdict.detail
    if verified is not True:
        reasons.append("unverified")

    tokens, estimated = count_tokens(trajectory)
    if max_tokens is not None and tokens > max_tokens:
        reasons.append("too_long")

    tool_ok: Counter[str] = Counter()
    tool_failed: Counter[str] = Counter()
    for step in trajectory.steps:
        if _is_tool_call(step):
            (tool_failed if step.error else tool_ok)[step.action or ""] += 1

    return Assessment(
        line_no=line_no,
        id=trajectory.id,
        problem_id=trajectory.problem_id,
        source=trajectory.source,
        kind=trajectory.task.kind,
        keep=not reasons,
        reasons=reasons,
        status=trajectory.status,
        verified=verified,
        verification=verification,
        reverified=reverify,
        steps=len(trajectory.steps),
        tool_calls=sum(tool_ok.values()) + sum(tool_failed.values()),
        failed_tool_calls=sum(tool_failed.values()),
        tool_ok=dict(tool_ok),
        tool_failed=dict(tool_failed),
        tokens=tokens,
        tokens_estimated=estimated,
        format_valid=not problems,
        format_problems=problems,
    )


def assess_bad(bad: BadRecord) -> Assessment:
    """The assessment of an unreadable line: dropped, reason ``unreadable``, no numbers."""
    return Assessment(line_no=bad.line_no, id="", problem_id="", source=UNREADABLE_SOURCE, kind="",
                      keep=False, reasons=["unreadable"], verification=bad.error)


def _count_lines(path: str | Path) -> int:
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def assess_file(path: str | Path, *, max_tokens: int | None, reverify: bool = False,
                sandbox: SandboxConfig | None = None,
                progress: bool | None = None) -> Iterator[tuple[Record, Assessment]]:
    """Stream ``(record, assessment)`` over a file without holding the records in memory.

    ``progress=None`` shows a progress bar on stderr only for files of ``PROGRESS_MIN_RECORDS``
    lines or more (re-verifying code runs the sandbox once per record and can take a while).
    """
    records = read_records(path)

    def judged(record: Record) -> tuple[Record, Assessment]:
        if isinstance(record.item, BadRecord):
            return record, assess_bad(record.item)
        return record, assess(record.item, max_tokens=max_tokens, reverify=reverify, sandbox=sandbox,
                              line_no=record.line_no)

    total = _count_lines(path)
    if progress is None:
        progress = total >= PROGRESS_MIN_RECORDS
    if not progress:
        for record in records:
            yield judged(record)
        return

    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(file=sys.stderr), transient=True) as bar:
        task = bar.add_task(f"assessing {Path(path).name}", total=total)
        for record in records:
            yield judged(record)
            bar.update(task, completed=record.line_no)


# ------------------------------------------------------------------------------------ summary


@dataclass
class Distribution:
    """Summary of a list of counts (steps or tokens per trajectory)."""

    count: int = 0
    total: int = 0
    min: int | None = None
    max: int | None = None
    mean: float | None = None
    median: float | None = None
    p90: float | None = None

    @classmethod
    def of(cls, values: Sequence[int]) -> "Distribution":
        if not values:
            return cls()
        ordered = sorted(values)
        p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]  # nearest rank
        return cls(count=len(ordered), total=sum(ordered), min=ordered[0], max=ordered[-1],
                   mean=round(statistics.fmean(ordered), 2), median=float(statistics.median(ordered)),
                   p90=float(p90))


def _rate(part: int, whole: int) -> float | None:
    """``part / whole``, or None when there is nothing to divide (shown as n/a, not as 0%)."""
    return part / whole if whole else None


class _Rates:
    """The rates both the totals and each source report (the fields come from the dataclass)."""

    kept: int
    total: int
    verified: int
    readable: int
    format_valid: int
    tool_calls: int
    failed_tool_calls: int

    @property
    def kept_rate(self) -> float | None:
        return _rate(self.kept, self.total)

    @property
    def verified_rate(self) -> float | None:
        return _rate(self.verified, self.readable)

    @property
    def format_validity_rate(self) -> float | None:
        return _rate(self.format_valid, self.readable)

    @property
    def tool_success_rate(self) -> float | None:
        return _rate(self.tool_calls - self.failed_tool_calls, self.tool_calls)


@dataclass
class SourceStats(_Rates):
    """The per-source row of the report; rates other than ``kept_rate`` are over readable records."""

    total: int = 0
    readable: int = 0
    kept: int = 0
    verified: int = 0
    format_valid: int = 0
    tool_calls: int = 0
    failed_tool_calls: int = 0
    reasons: dict[str, int] = field(default_factory=lambda: {reason: 0 for reason in REASONS})

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kept_rate": self.kept_rate, "verified_rate": self.verified_rate,
                "format_validity_rate": self.format_validity_rate, "tool_success_rate": self.tool_success_rate}


@dataclass
class QualityStats(_Rates):
    """Aggregate numbers over a set of assessments. Rates are None when their base is zero.

    ``verified_rate`` and ``format_validity_rate`` are over the readable records;
    ``kept_rate`` is over all records, unreadable ones included.
    """

    total: int = 0
    readable: int = 0
    kept: int = 0
    reasons: dict[str, int] = field(default_factory=lambda: {reason: 0 for reason in REASONS})
    verified: int = 0
    format_valid: int = 0
    tool_calls: int = 0
    failed_tool_calls: int = 0
    tools: dict[str, dict[str, int]] = field(default_factory=dict)
    tokens_estimated: int = 0
    steps: Distribution = field(default_factory=Distribution)
    tokens: Distribution = field(default_factory=Distribution)
    by_source: dict[str, SourceStats] = field(default_factory=dict)
    max_tokens: int | None = None
    reverified: bool = False

    @property
    def dropped(self) -> int:
        return self.total - self.kept

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only: ``json.dumps(stats.to_dict())`` always works."""
        return {
            "total": self.total, "readable": self.readable, "kept": self.kept, "dropped": self.dropped,
            "kept_rate": self.kept_rate, "reasons": dict(self.reasons),
            "verified": self.verified, "verified_rate": self.verified_rate,
            "format_valid": self.format_valid, "format_validity_rate": self.format_validity_rate,
            "tool_calls": self.tool_calls, "failed_tool_calls": self.failed_tool_calls,
            "tool_success_rate": self.tool_success_rate, "tools": {k: dict(v) for k, v in self.tools.items()},
            "steps": asdict(self.steps), "tokens": asdict(self.tokens),
            "tokens_estimated": self.tokens_estimated,
            "by_source": {name: row.to_dict() for name, row in self.by_source.items()},
            "max_tokens": self.max_tokens, "reverified": self.reverified,
        }


def summarise(assessments: Iterable[Assessment], *, max_tokens: int | None = None,
              reverified: bool = False) -> QualityStats:
    """Aggregate assessments into the numbers of the report (``max_tokens`` and ``reverified``
    are only recorded, so the stats say how they were made)."""
    stats = QualityStats(max_tokens=max_tokens, reverified=reverified)
    steps: list[int] = []
    tokens: list[int] = []
    for a in assessments:
        row = stats.by_source.setdefault(a.source, SourceStats())
        stats.total += 1
        row.total += 1
        for reason in a.reasons:
            stats.reasons[reason] = stats.reasons.get(reason, 0) + 1
            row.reasons[reason] = row.reasons.get(reason, 0) + 1
        if a.keep:
            stats.kept += 1
            row.kept += 1
        if "unreadable" in a.reasons:
            continue
        stats.readable += 1
        row.readable += 1
        stats.verified += a.verified is True
        row.verified += a.verified is True
        stats.format_valid += a.format_valid
        row.format_valid += a.format_valid
        stats.tool_calls += a.tool_calls
        row.tool_calls += a.tool_calls
        stats.failed_tool_calls += a.failed_tool_calls
        row.failed_tool_calls += a.failed_tool_calls
        for name in set(a.tool_ok) | set(a.tool_failed):
            counts = stats.tools.setdefault(name, {"ok": 0, "failed": 0})
            counts["ok"] += a.tool_ok.get(name, 0)
            counts["failed"] += a.tool_failed.get(name, 0)
        stats.tokens_estimated += a.tokens_estimated
        steps.append(a.steps)
        tokens.append(a.tokens)
    stats.steps = Distribution.of(steps)
    stats.tokens = Distribution.of(tokens)
    stats.tools = dict(sorted(stats.tools.items()))
    stats.by_source = dict(sorted(stats.by_source.items()))
    return stats


# ------------------------------------------------------------------------------------ filtering


def filter_trajectories(in_path: str | Path, out_path: str | Path, *, max_tokens: int | None,
                        reverify: bool = False, sandbox: SandboxConfig | None = None,
                        progress: bool | None = None) -> QualityStats:
    """Copy the kept records of ``in_path`` to ``out_path`` byte for byte and return the stats.

    The output is written to a temporary file next to it and moved into place, so a crash
    never leaves a half-written file (and ``out_path`` may be ``in_path``). A kept last line
    without its newline gets one, so the output is always valid JSONL.
    """
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    assessments: list[Assessment] = []
    try:
        with os.fdopen(fd, "wb") as handle:
            for record, assessment in assess_file(in_path, max_tokens=max_tokens, reverify=reverify,
                                                  sandbox=sandbox, progress=progress):
                assessments.append(assessment)
                if assessment.keep:
                    handle.write(record.line if record.line.endswith(b"\n") else record.line + b"\n")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return summarise(assessments, max_tokens=max_tokens, reverified=reverify)

