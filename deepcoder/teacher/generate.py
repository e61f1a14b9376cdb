"""Phase 1: collect teacher trajectories with Ray actors under the provider's rate limits.

The driver owns the output file (one writer: no duplicates, fsync per record) and hands
(problem, sample) pairs to async generation actors, each running several episodes of the shared
agent loop at once. Every actor's teacher client asks the one named rate-limiter actor before
each request, so the cluster as a whole stays under RPM and TPM. Actors and the limiter take
``num_cpus=0``: the sandbox subprocesses do the CPU work, and reserved-but-idle CPUs would make a
later Ray Data stage in the same cluster wait forever.

With the demo profile (``teacher.use_emulator``) the driver starts the loopback Groq emulator
with the reference teacher and stops it afterwards; the real ``groq`` client talks to it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pydantic import SecretStr
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from deepcoder.agent.grading import check
from deepcoder.agent.loop import Agent, AgentLimits
from deepcoder.agent.types import Task, Trajectory
from deepcoder.cluster import init_ray
from deepcoder.config import Config
from deepcoder.data.store import TrajectoryStore
from deepcoder.teacher.emulator import EmulatorServer, reference_app

logger = logging.getLogger(__name__)

REFERENCE_LABEL = "reference-teacher (offline stand-in served by the Groq emulator)"


def config_hash(config: Config) -> str:
    """Hash of what shapes a trajectory (teacher, generation, sandbox, retrieval; never secrets)."""
    data = config.model_dump(mode="json", include={"teacher", "generation", "sandbox", "retrieval"})
    data["teacher"].pop("api_key", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class GenerationWorker:
    """An async Ray actor running up to ``episodes_per_actor`` episodes at once."""

    def __init__(self, config: Config, base_url: str | None, limiter, teacher_label: str | None,
                 cfg_hash: str) -> None:
        from ray.util import metrics

        from deepcoder.log import setup_logging
        from deepcoder.teacher.client import TeacherClient
        from deepcoder.teacher.ratelimit import RayLimiter
        from deepcoder.tools.registry import build_tools

        setup_logging(config.logging.level, config.secrets())
        self.config = config
        self.cfg_hash = cfg_hash
        self.teacher_label = teacher_label
        if limiter == "langchain-per-actor":  # benchmark baseline: a budget per actor, no sharing
            from deepcoder.teacher.ratelimit import PerProcessLangChainLimiter

            client_limiter = PerProcessLangChainLimiter(config.generation.requests_per_minute)
        else:
            client_limiter = RayLimiter(limiter)
        self.client = TeacherClient(config.teacher, base_url=base_url, limiter=client_limiter)
        gen = config.generation
        self.agent = Agent(self.client, build_tools(config),
                           AgentLimits(gen.max_steps, gen.step_timeout_s, gen.episode_timeout_s))
        self.m_done = metrics.Counter("deepcoder_trajectories_done", "Trajectories finished by generation.",
                                      tag_keys=("source", "verified"))
        self.m_429 = metrics.Counter("deepcoder_teacher_rate_limited", "Teacher requests answered 429.")
        self.m_tokens = metrics.Counter("deepcoder_teacher_tokens", "Teacher tokens used.", tag_keys=("kind",))
        self.m_rate = metrics.Gauge("deepcoder_generation_verified_rate",
                                    "Share of this actor's trajectories that verified.")
        self._seen_429 = 0
        self._done = 0
        self._verified = 0

    async def run(self, task: Task, sample: int) -> Trajectory:
        trajectory = await self.agent.arun(task)
        trajectory.sample = sample
        trajectory.config_hash = self.cfg_hash
        if self.teacher_label:
            trajectory.teacher_model = self.teacher_label
        verdict = await asyncio.to_thread(check, task, trajectory.final_answer, sandbox=self.config.sandbox)
        trajectory.verified, trajectory.verification = verdict.passed, verdict.detail
        self._record(trajectory)
        return trajectory

    def _record(self, trajectory: Trajectory) -> None:
        self._done += 1
        self._verified += bool(trajectory.verified)
        self.m_done.inc(tags={"source": trajectory.source, "verified": str(bool(trajectory.verified)).lower()})
        self.m_rate.set(self._verified / self._done)
        for kind in ("prompt_tokens", "completion_tokens"):
            if trajectory.usage.get(kind):
                self.m_tokens.inc(trajectory.usage[kind], tags={"kind": kind})
        new_429 = self.client.stats.rate_limited - self._seen_429
        if new_429:
            self.m_429.inc(new_429)
            self._seen_429 = self.client.stats.rate_limited

    async def client_stats(self) -> dict:
        return asdict(self.client.stats)


@dataclass
class GenerationSummary:
    out: str
    planned: int
    skipped: int
    written: int = 0
    verified: int = 0
    failed_episodes: int = 0
    deferred: int = 0
    rate_limited: int = 0
    requests: int = 0
    seconds: float = 0.0
    teacher: str = ""
    by_source: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        """Episodes that were handed out but neither stored nor reported failed (should be 0)."""
        return self.planned - self.skipped - self.deferred - self.written - self.failed_episodes

    def to_dict(self) -> dict:
        return {**asdict(self), "lost": self.lost}


def generate(config: Config, out: str | Path, *, tasks: list[Task] | None = None, limit: int | None = None,
             resume: bool = False, show_progress: bool = True, deadline_s: float | None = None,
             limiter_kind: str = "shared", on_emulator=None) -> GenerationSummary:
    """Run generation into ``out`` (JSONL). Re-running with ``resume`` skips what is stored.

    ``deadline_s`` stops handing out new episodes after that many seconds (in-flight ones finish;
    the rest is left for ``resume``). ``limiter_kind="langchain-per-actor"`` swaps the shared
    limiter for LangChain's per-process one (a benchmark baseline). ``on_emulator`` is called with
    the emulator when one is started (benchmarks read its counters).
    """
    import ray

    from deepcoder.teacher.ratelimit import get_rate_limiter

    if tasks is None:
        from deepcoder.data.problems import load_training_problems

        tasks = load_training_problems(config)
    if limit is not None:
        tasks = tasks[:limit]
    gen = config.generation
    work = [(task, sample) for task in tasks for sample in range(gen.samples_per_problem)]
    started = time.monotonic()
    with ExitStack() as stack:
        store = stack.enter_context(TrajectoryStore(out, resume=resume))
        todo = [(t, s) for t, s in work if f"{t.id}#{s}" not in store.done]
        summary = GenerationSummary(out=str(out), planned=len(work), skipped=len(work) - len(todo))
        config = config.model_copy(deep=True)
        base_url, label = config.teacher.base_url, None
        if config.teacher.use_emulator:
            config.teacher.api_key = SecretStr("emu-" + secrets.token_hex(16))
            emu_cfg = config.emulator
            app = reference_app(tasks, requests_per_minute=emu_cfg.requests_per_minute or gen.requests_per_minute,
                                tokens_per_minute=emu_cfg.tokens_per_minute or gen.tokens_per_minute,
                                window_s=emu_cfg.window_s, latency_s=emu_cfg.latency_s,
                                api_key=config.teacher.api_key.get_secret_value())
            emulator = stack.enter_context(EmulatorServer(app, port=emu_cfg.port or None))
            base_url, label = emulator.base_url, REFERENCE_LABEL
            if on_emulator is not None:
                on_emulator(emulator)
            if config.teacher.provider != "groq":
                base_url += "/v1"
        elif config.teacher.api_key is None:
            from deepcoder.teacher.client import TeacherError

            raise TeacherError(f"no teacher API key: set {config.teacher.api_key_env}, or use --profile demo "
                               "(the offline emulator)")
        summary.teacher = label or f"{config.teacher.provider}:{config.teacher.model}"
        if not todo:
            summary.seconds = time.monotonic() - started
            return summary
        started_ray = init_ray(config)
        if started_ray:
            stack.callback(ray.shutdown)
        cfg_hash = config_hash(config)
        limiter = get_rate_limiter(f"deepcoder-teacher-{cfg_hash}", gen.requests_per_minute, gen.tokens_per_minute)
        worker_cls = ray.remote(num_cpus=0)(GenerationWorker)

        worker_limiter = limiter if limiter_kind == "shared" else limiter_kind

        def make_worker():
            return worker_cls.options(max_concurrency=gen.episodes_per_actor).remote(
                config, base_url, worker_limiter, label, cfg_hash)

        workers = [make_worker() for _ in range(gen.num_actors)]
        stack.callback(lambda: [ray.kill(w) for w in workers] and None)
        stack.callback(lambda: ray.kill(limiter))
        deadline = None if deadline_s is None else time.monotonic() + deadline_s
        _drive(workers, make_worker, limiter, todo, store, summary, show_progress, gen.episodes_per_actor, deadline)
    summary.seconds = time.monotonic() - started
    return summary


def _drive(workers: list, make_worker, limiter, todo, store: TrajectoryStore, summary: GenerationSummary,
           show_progress: bool, per_actor: int, deadline: float | None = None) -> None:
    """Keep every actor's episode slots busy and write each trajectory as it arrives."""
    import ray

    queue = list(reversed(todo))
    inflight: dict = {}
    attempts: dict[str, int] = {}
    slots = len(workers) * per_actor
    turn = 0
    columns = [TextColumn("[bold]generate[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn()]
    with Progress(*columns, disable=not show_progress, transient=False) as progress:
        bar = progress.add_task("generate", total=len(todo), info="")
        while queue or inflight:
            if deadline is not None and time.monotonic() > deadline and queue:
                summary.deferred = len(queue)  # left for a --resume run
                queue.clear()
            while queue and len(inflight) < slots:
                task, sample = queue.pop()
                index = turn % len(workers)
                turn += 1
                inflight[workers[index].run.remote(task, sample)] = (task, sample, index, workers[index])
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=5.0)
            for ref in ready:
                task, sample, index, handle = inflight.pop(ref)
                try:
                    trajectory: Trajectory = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    if isinstance(exc, ray.exceptions.ActorDiedError) and workers[index] is handle:
                        workers[index] = make_worker()  # replace the dead actor (once, not per episode)
                    key = f"{task.id}#{sample}"
                    attempts[key] = attempts.get(key, 0) + 1
                    if attempts[key] <= 2:  # an actor crash must not lose the episode: try again
                        logger.warning("episode %s failed in its actor (%s); retrying", key, type(exc).__name__)
                        queue.append((task, sample))
                    else:
                        summary.failed_episodes += 1
                        logger.error("episode %s failed 3 times; left for a --resume run", key)
                    continue
                if store.append(trajectory):
                    summary.written += 1
                    summary.verified += bool(trajectory.verified)
                    counts = summary.by_source.setdefault(trajectory.source, {"written": 0, "verified": 0})
                    counts["written"] += 1
                    counts["verified"] += bool(trajectory.verified)
                progress.update(bar, advance=1, info=f"verified {summary.verified}/{summary.written}")
    stats = ray.get(limiter.stats.remote())
    summary.rate_limited = int(stats["rate_limited"])
    summary.requests = int(stats["reservations"])
