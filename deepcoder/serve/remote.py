"""The agent's model and tools behind deployment handles, for the one ``Agent`` loop.

``HandlePolicy`` is a ``Policy`` whose replies come from a ``StudentModel`` deployment;
``remote_tools`` is ``build_tools`` with the python and retrieve tools pointed at the
``ToolSandbox`` and ``Retriever`` deployments. Every handle call has a deadline, and a failure
becomes what the loop already understands (``PolicyError``, a tool error observation), so a run
never hangs on a dead replica.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, Sequence

from deepcoder.agent.policy import Message, PolicyError, PolicyOutput
from deepcoder.config import Config
from deepcoder.tools.registry import ToolRegistry, build_tools
from deepcoder.tools.sandbox import ExecResult, SandboxError, SandboxInputError

# Infrastructure failures (not the user's code) seen during the current run: no caching then.
run_failures: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("run_failures", default=None)


def track_failures() -> tuple[list[str], contextvars.Token]:
    """Start collecting infrastructure failures for the run in this task (and the tasks it starts)."""
    failures: list[str] = []
    return failures, run_failures.set(failures)


def untrack_failures(token: contextvars.Token) -> None:
    run_failures.reset(token)


def short(exc: BaseException, limit: int = 300) -> str:
    """One line for an exception; a Ray task error is shown as its cause, without Ray's traceback."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    text = f"{type(exc).__name__}: {exc}".strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return first if len(first) <= limit else first[:limit] + " ..."


def _note_failure(kind: str) -> None:
    failures = run_failures.get()
    if failures is not None:
        failures.append(kind)


class HandlePolicy:
    """A Policy served by a StudentModel deployment (``generate``)."""

    def __init__(self, handle: Any, name: str) -> None:
        self.handle = handle
        self.name = name

    async def agenerate(self, messages: Sequence[Message], *, stop: Sequence[str] = ()) -> PolicyOutput:
        try:
            out = await self.handle.generate.remote(list(messages), list(stop))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any model-side failure ends the run cleanly
            _note_failure("model")
            raise PolicyError(f"{self.name}: {short(exc)}") from None
        return PolicyOutput(text=out.get("text") or "", usage=out.get("usage") or {},
                            finish_reason=out.get("finish_reason"))


def remote_tools(config: Config, sandbox: Any, retriever: Any, metrics: Any = None) -> ToolRegistry:
    """``build_tools`` whose python/retrieve tools call the sandbox and retriever deployments."""
    code_deadline = config.sandbox.timeout_s + 30.0  # the sandbox kills code at timeout_s; the rest is queueing

    def failed(reason: str) -> None:
        _note_failure("sandbox")
        if metrics is not None:
            metrics.sandbox_failures.labels(reason).inc()

    async def run_code(code: str) -> ExecResult:
        try:
            out = await asyncio.wait_for(_awaitable(sandbox.execute.remote(code)), code_deadline)
        except asyncio.TimeoutError:
            failed("timeout")
            raise SandboxError(f"the sandbox did not answer within {code_deadline:g}s") from None
        except Exception as exc:  # noqa: BLE001
            failed("unavailable")
            raise SandboxError(f"the sandbox is unavailable: {short(exc)}") from None
        if "error" in out:
            if out["error"] == "input":
                raise SandboxInputError(out.get("message", "unusable input"))
            failed("sandbox_error")
            raise SandboxError(out.get("message", "sandbox failure"))
        return ExecResult(**out["result"])

    async def search(query: str, k: int | None = None) -> list[dict]:
        from deepcoder.tools.retrieval import RetrievalError

        try:
            out = await asyncio.wait_for(_awaitable(retriever.search.remote(query, k)), 60.0)
        except Exception as exc:  # noqa: BLE001
            _note_failure("retriever")
            raise RetrievalError(f"the retriever is unavailable: {short(exc)}") from None
        if "error" in out:
            raise RetrievalError(out["error"])
        return out["passages"]

    return build_tools(config, run_code=run_code, search=search)


async def _awaitable(response: Any) -> Any:
    return await response
