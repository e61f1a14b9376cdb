"""The embedded-default demo: the agent core solving a handful of tasks with no key and no GPU.

The reference teacher (a policy that plays our problems' reference solutions) drives the real
agent loop: its code runs in the sandbox, its lookups hit the BM25 index, every reply is parsed
and segmented, and each answer is graded. Later stages (generation at scale, training,
evaluation, serving) replace the pieces around it, not the loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from deepcoder.agent.format import segment
from deepcoder.agent.grading import check
from deepcoder.agent.loop import Agent, AgentLimits
from deepcoder.agent.types import Task, Trajectory
from deepcoder.config import Config
from deepcoder.data.problems import load_math_tasks, load_mbpp, load_retrieval_tasks
from deepcoder.teacher.reference import ReferencePolicy
from deepcoder.tools.registry import build_tools


def demo_tasks(per_kind: int) -> list[Task]:
    """A few MBPP training problems, math problems and documentation questions."""
    return load_mbpp("train")[:per_kind] + load_math_tasks()[:per_kind] + load_retrieval_tasks()[:per_kind]


def _write_jsonl(path: Path, trajectories: list[Trajectory]) -> None:
    """Write all-or-nothing: a crash never leaves a half-written file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        for trajectory in trajectories:
            handle.write(trajectory.model_dump_json() + "\n")
    os.replace(tmp, path)


async def _run_all(agent: Agent, tasks: list[Task], concurrency: int, progress: Progress,
                   agent_sandbox=None) -> list[Trajectory]:
    bar = progress.add_task("episodes", total=len(tasks))
    gate = asyncio.Semaphore(concurrency)

    async def one(task: Task) -> Trajectory:
        async with gate:
            trajectory = await agent.arun(task)
        verdict = await asyncio.to_thread(check, task, trajectory.final_answer, sandbox=agent_sandbox)
        trajectory.verified, trajectory.verification = verdict.passed, verdict.detail
        progress.advance(bar)
        return trajectory

    return list(await asyncio.gather(*(one(task) for task in tasks)))


def run_demo(config: Config, out_dir: str | Path, per_kind: int = 3, console: Console | None = None) -> dict:
    """Run the demo, write ``trajectories.jsonl`` and ``summary.json`` under ``out_dir``."""
    console = console or Console()
    out = Path(out_dir)
    tasks = demo_tasks(per_kind)
    tools = build_tools(config)
    limits = AgentLimits(config.generation.max_steps, config.generation.step_timeout_s,
                         config.generation.episode_timeout_s)
    agent = Agent(ReferencePolicy(tasks), tools, limits)
    console.print(f"[bold]DeepCoder demo[/]: agent core on {len(tasks)} tasks "
                  "(reference teacher, sandboxed python, BM25 retrieval)")
    with Progress(console=console, transient=True) as progress:
        trajectories = asyncio.run(_run_all(agent, tasks, config.generation.episodes_per_actor, progress,
                                            config.sandbox))
    _write_jsonl(out / "trajectories.jsonl", trajectories)

    table = Table(title="Episodes")
    for column in ("task", "kind", "status", "steps", "tools", "spans (R/A/O)", "format", "success"):
        table.add_column(column)
    span_totals: Counter[str] = Counter()
    for t in trajectories:
        seg = segment(t.text())
        kinds = Counter(s.kind for s in seg.spans)
        span_totals.update(kinds)
        tools_used = ",".join(s.action or "-" for s in t.steps)
        valid = not seg.problems and all(s.error is None or s.action for s in t.steps)
        table.add_row(t.task.id, t.task.kind, t.status, str(len(t.steps)), tools_used,
                      f"{kinds['reason']}/{kinds['act']}/{kinds['observation']}",
                      "ok" if valid else "problems", "yes" if t.verified else "no")
    console.print(table)
    summary = {
        "episodes": len(trajectories),
        "finished": sum(t.status == "finished" for t in trajectories),
        "success": sum(bool(t.verified) for t in trajectories),
        "steps": sum(len(t.steps) for t in trajectories),
        "spans": dict(span_totals),
        "trajectories": str(out / "trajectories.jsonl"),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    console.print(f"{summary['success']}/{summary['episodes']} solved; trajectories in {summary['trajectories']}")
    return summary
