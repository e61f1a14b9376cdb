"""The agentic suite: held-out tasks solved through the one agent loop, and what the episodes show.

In-distribution sets are the held-out splits of what generation trains on (MBPP validation, math
and retrieval held-out); out-of-distribution sets are kinds never trained on (HumanEval run as an
agent task, and ``ood``: small data/string/date tasks), reported apart. Episodes are stored as
trajectories (the same JSONL as generation), so a killed run resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import re
import statistics
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

from tqdm.auto import tqdm

from deepcoder.agent.grading import check
from deepcoder.agent.loop import TRUNCATED, Agent, AgentLimits
from deepcoder.agent.policy import Policy
from deepcoder.agent.types import Task, Trajectory
from deepcoder.config import Config
from deepcoder.data.store import TrajectoryStore

EXPECTED_TOOL = {"code": "python", "math": "python", "retrieval": "retrieve", "other": "python"}
PARSE_ERRORS = ("no action in reply", "empty reply", TRUNCATED)
TOOL_FAILURES = ("unknown_tool", "invalid_input", "tool_failed", "tool_error", "tool reported failure")


def load_suite(config: Config) -> list[Task]:
    """The held-out in-distribution sets then the OOD sets, ``eval.agentic_per_set`` of each;
    every task's ``meta['suite']`` says which set and whether it is OOD."""
    from deepcoder.data.problems import load_humaneval, load_jsonl_tasks, load_problem_set

    ev = config.eval
    tasks: list[Task] = []
    for name in ev.agentic_sets:
        for task in load_problem_set(name, split="heldout", limit=ev.agentic_per_set, config=config):
            task.meta.update(suite=name, ood=False)
            tasks.append(task)
    for name in ev.ood_sets:
        if name == "humaneval":
            found = load_humaneval()
        elif name == "ood":
            found = load_jsonl_tasks(Path(str(resources.files("deepcoder.resources").joinpath("data/ood_tasks.jsonl"))))
        else:
            raise ValueError(f"eval.ood_sets: unknown set {name!r}; choose humaneval or ood")
        for task in found[:ev.agentic_per_set]:
            task.meta.update(suite=name, ood=True)
            tasks.append(task)
    return tasks


def run_suite(policy: Policy, tasks: Sequence[Task], config: Config, out: str | Path, *,
              samples: int | None = None, show_progress: bool = True, tools=None) -> list[Trajectory]:
    """Run every task ``samples`` times (default ``eval.agentic_samples``), grade each final
    answer, and store the episodes in ``out``. Re-running continues an interrupted run."""
    from deepcoder.tools.registry import build_tools

    ev = config.eval
    samples = samples or ev.agentic_samples
    agent = Agent(policy, tools or build_tools(config),
                  AgentLimits(max_steps=ev.max_steps, step_timeout_s=ev.step_timeout_s,
                              episode_timeout_s=ev.episode_timeout_s))
    with TrajectoryStore(out, resume=True) as store:
        todo = [(t, s) for t in tasks for s in range(samples) if f"{t.id}#{s}" not in store.done]
        bar = tqdm(total=len(todo), desc=f"agentic ({getattr(policy, 'name', 'model')})",
                   disable=not show_progress, unit="episode")

        async def one(task: Task, sample: int, gate: asyncio.Semaphore) -> None:
            async with gate:
                trajectory = await agent.arun(task)
                trajectory.sample = sample
                verdict = await asyncio.to_thread(check, task, trajectory.final_answer, sandbox=config.sandbox)
                trajectory.verified, trajectory.verification = verdict.passed, verdict.detail
                trajectory.meta.update(suite=task.meta.get("suite"), ood=task.meta.get("ood", False))
            store.append(trajectory)  # one writer: the event loop thread
            bar.update(1)

        async def main() -> None:
            gate = asyncio.Semaphore(ev.concurrency)
            await asyncio.gather(*(one(t, s, gate) for t, s in todo))

        if todo:
            asyncio.run(main())
        bar.close()
    return read_trajectories(out)


def read_trajectories(path: str | Path) -> list[Trajectory]:
    lines = Path(path).read_text(encoding="utf-8").splitlines() if Path(path).is_file() else []
    return [Trajectory.model_validate_json(line) for line in lines if line.strip()]


# ---------------------------------------------------------------------------------------------
# Metrics


def _parses(step) -> bool:
    return step.action is not None and step.tool_input is not None and step.error not in PARSE_ERRORS


def _tool_failed(step) -> bool:
    return step.action not in (None, "finish") and step.error in TOOL_FAILURES


def _valid_call(step) -> bool:
    """A real tool with input it accepts (code that then fails its tests is still a valid call)."""
    return step.tool_input is not None and step.error not in ("unknown_tool", "invalid_input")


def _normal_answer(answer: str | None) -> str:
    return re.sub(r"\s+", " ", (answer or "").strip().lower())


def consistency(trajectories: Iterable[Trajectory]) -> float | None:
    """Mean share of a problem's samples that give its most common final answer (problems with
    two or more samples only; None when there are none)."""
    by_problem: dict[str, list[str]] = {}
    for t in trajectories:
        by_problem.setdefault(t.problem_id, []).append(_normal_answer(t.final_answer))
    shares = [Counter(a).most_common(1)[0][1] / len(a) for a in by_problem.values() if len(a) >= 2]
    return statistics.fmean(shares) if shares else None


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def agentic_metrics(trajectories: Sequence[Trajectory]) -> dict:
    """The suite's metrics for one group of episodes (see docs/evaluation.md for definitions)."""
    n = len(trajectories)
    if not n:
        return {"episodes": 0}
    steps = [s for t in trajectories for s in t.steps]
    acted = [s for s in steps if s.action is not None]
    tool_calls = [s for s in acted if s.action != "finish"]
    first_tools = [next((s.action for s in t.steps if s.action not in (None, "finish")), None) for t in trajectories]
    expected = [EXPECTED_TOOL.get(t.task.kind, "python") for t in trajectories]
    failed_then = [t for t in trajectories if any(_tool_failed(s) for s in t.steps)]
    reasoning = [sum(len(s.thought or "") for s in t.steps) for t in trajectories]
    latencies = [t.duration_s for t in trajectories if t.duration_s is not None]
    completion_tokens = sum(int(t.usage.get("completion_tokens", 0)) for t in trajectories)
    return {
        "episodes": n,
        "success": sum(bool(t.verified) for t in trajectories) / n,
        "finished": sum(t.status == "finished" for t in trajectories) / n,
        "format_validity": sum(bool(t.steps) and all(_parses(s) for s in t.steps) for t in trajectories) / n,
        "step_format_validity": (sum(_parses(s) for s in steps) / len(steps)) if steps else None,
        "tool_call_validity": (sum(_valid_call(s) for s in tool_calls) / len(tool_calls)) if tool_calls else None,
        "tool_selection": sum(f == e for f, e in zip(first_tools, expected)) / n,
        "steps_mean": statistics.fmean(len(t.steps) for t in trajectories),
        "reasoning_chars_mean": statistics.fmean(reasoning),
        "error_recovery": (sum(bool(t.verified) for t in failed_then) / len(failed_then)) if failed_then else None,
        "episodes_with_tool_failure": len(failed_then),
        "timeouts": sum(t.status == "timeout" for t in trajectories) / n,
        "consistency": consistency(trajectories),
        "latency_s_median": statistics.median(latencies) if latencies else None,
        "latency_s_mean": _mean(latencies),
        "completion_tokens": completion_tokens,
        "tokens_per_s": completion_tokens / sum(latencies) if latencies and sum(latencies) else None,
        "prompt_tokens": sum(int(t.usage.get("prompt_tokens", 0)) for t in trajectories),
    }


def metrics_by_group(trajectories: Sequence[Trajectory]) -> dict[str, dict]:
    """Metrics for all in-distribution episodes, all OOD ones, and each set."""
    groups: dict[str, list[Trajectory]] = {"in_distribution": [], "ood": []}
    for t in trajectories:
        groups["ood" if t.meta.get("ood") else "in_distribution"].append(t)
        groups.setdefault(f"set:{t.meta.get('suite') or t.source}", []).append(t)
    return {name: agentic_metrics(group) for name, group in groups.items()}
