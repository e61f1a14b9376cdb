"""The agent's tools as LangChain tool objects: ``python``, ``retrieve`` and ``finish``.

Users can drop ``build_tools(config).as_langchain()`` into their own LangChain agents; our agent
loop calls the very same objects through ``ToolRegistry.acall``.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, Field, ValidationError

from deepcoder.agent.format import TOOL_ALIASES, canonical_tool
from deepcoder.config import Config, load_config
from deepcoder.tools.sandbox import ExecResult, SandboxError, SandboxInputError, get_sandbox


class PythonInput(BaseModel):
    code: str = Field(description="Python source to run as a script; print what you want to see.")


class RetrieveInput(BaseModel):
    query: str = Field(description="What to look up in the Python documentation and the knowledge corpus.")
    k: int | None = Field(None, ge=1, description="How many passages to return.")


class FinishInput(BaseModel):
    answer: str = Field(description="The final answer (for coding tasks: the complete code).")


def format_exec_result(result: ExecResult) -> str:
    """The observation the model sees for one python run."""
    parts = []
    if result.stdout.strip():
        parts.append(result.stdout.rstrip())
    if result.stderr.strip():
        parts.append(result.stderr.rstrip())
    if not result.timed_out and result.exit_code != 0:
        parts.append(f"[exit code {result.exit_code}]")
    if result.truncated:
        parts.append("[output truncated]")
    return "\n".join(parts) if parts else "(no output)"


@dataclass
class ToolResult:
    """What a tool call gave: the observation text, whether it worked, and structured details."""

    observation: str
    ok: bool
    error: str | None = None
    artifact: Any = None


@dataclass
class ToolRegistry:
    """Tool objects by name, plus the aliases models use for them."""

    tools: dict[str, BaseTool]
    aliases: dict[str, str] = field(default_factory=lambda: dict(TOOL_ALIASES))

    def resolve(self, name: str | None) -> BaseTool | None:
        if not name:
            return None
        key = name.strip().lower()
        return self.tools.get(self.aliases.get(key, canonical_tool(key) or key))

    def names(self) -> list[str]:
        return list(self.tools)

    def describe(self) -> str:
        """Tool descriptions for the system prompt."""
        lines = []
        for tool in self.tools.values():
            args = ", ".join(tool.args)
            lines.append(f"- {tool.name}({args}): {tool.description}")
        return "\n".join(lines)

    def as_langchain(self) -> list[BaseTool]:
        return list(self.tools.values())

    async def acall(self, name: str, args: dict[str, Any]) -> ToolResult:
        """Call a tool by (alias) name. Never raises: failures become an error observation."""
        tool = self.resolve(name)
        if tool is None:
            return ToolResult(f"Error: unknown tool {name!r}. Available tools: {', '.join(self.names())}.",
                              ok=False, error="unknown_tool")
        call = {"type": "tool_call", "name": tool.name, "args": args, "id": uuid.uuid4().hex}
        try:
            message = await tool.ainvoke(call)
        except (ValidationError, ValueError, TypeError) as exc:
            return ToolResult(f"Error: invalid input for {tool.name}: {_short(exc)}", ok=False,
                              error="invalid_input")
        except Exception as exc:  # noqa: BLE001 - a tool failure must not end the episode
            return ToolResult(f"Error: {tool.name} failed: {_short(exc)}", ok=False, error="tool_failed")
        content = message.content if isinstance(message, ToolMessage) else str(message)
        artifact = getattr(message, "artifact", None)
        if isinstance(message, ToolMessage) and message.status == "error":
            return ToolResult(str(content), ok=False, error="tool_error", artifact=artifact)
        ok = not (isinstance(artifact, dict) and artifact.get("exit_code") not in (None, 0))
        return ToolResult(str(content), ok=ok, artifact=artifact)

    def call(self, name: str, args: dict[str, Any]) -> ToolResult:
        """Blocking ``acall`` for scripts."""
        return asyncio.run(self.acall(name, args))


def _short(exc: BaseException, limit: int = 500) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + " ..."


def _tool_error(exc: ToolException) -> str:
    return f"Error: {exc}"


RemoteRun = Callable[[str], Awaitable[ExecResult]]
RemoteSearch = Callable[[str, "int | None"], Awaitable[list[Any]]]


def build_tools(config: Config | None = None, *, run_code: RemoteRun | None = None,
                search: RemoteSearch | None = None) -> ToolRegistry:
    """The three protocol tools, wired to the sandbox and retrieval settings of ``config``.

    ``run_code`` / ``search`` replace the in-process sandbox and index with other back ends (the
    Serve app passes calls to its ToolSandbox and Retriever deployments): ``run_code(code)``
    returns an ``ExecResult`` or raises ``SandboxInputError``/``SandboxError``; ``search(query, k)``
    returns passages (``Passage`` or dicts) or raises ``RetrievalError``. Everything else, the
    tool objects, their descriptions and error handling, stays one implementation.
    """
    config = config or load_config()
    if run_code is not None or search is not None:
        return _tools(config, run_code or _local_run(config), search or _local_search(config), local=False)
    return _tools(config, _local_run(config), _local_search(config), local=True)


def _local_run(config: Config) -> RemoteRun:
    sandbox = get_sandbox(config.sandbox)

    async def run(code: str) -> ExecResult:
        return await sandbox.arun(code)

    return run


def _local_search(config: Config) -> RemoteSearch:
    async def run(query: str, k: int | None = None) -> list[Any]:
        from deepcoder.tools.retrieval import get_index

        return await asyncio.to_thread(lambda: get_index(config).search(query, k))

    return run


def _tools(config: Config, remote_run: RemoteRun, remote_search: RemoteSearch, *, local: bool) -> ToolRegistry:
    sandbox = get_sandbox(config.sandbox) if local else None

    async def run_code(code: str) -> tuple[str, dict]:
        try:
            result = await remote_run(code)
        except (SandboxInputError, SandboxError) as exc:
            raise ToolException(str(exc)) from None
        return format_exec_result(result), result.to_dict()

    def run_code_sync(code: str) -> tuple[str, dict]:
        assert sandbox is not None
        try:
            result = sandbox.run(code)
        except (SandboxInputError, SandboxError) as exc:
            raise ToolException(str(exc)) from None
        return format_exec_result(result), result.to_dict()

    def search(query: str, k: int | None = None) -> tuple[str, list[dict]]:
        from deepcoder.tools.retrieval import RetrievalError, format_passages, get_index

        try:
            passages = get_index(config).search(query, k)
        except RetrievalError as exc:
            raise ToolException(str(exc)) from None
        return format_passages(passages), [p.model_dump() for p in passages]

    async def asearch(query: str, k: int | None = None) -> tuple[str, list[dict]]:
        from deepcoder.tools.retrieval import Passage, RetrievalError, format_passages

        try:
            found = await remote_search(query, k)
        except RetrievalError as exc:
            raise ToolException(str(exc)) from None
        passages = [p if isinstance(p, Passage) else Passage.model_validate(p) for p in found]
        return format_passages(passages), [p.model_dump() for p in passages]

    def finish(answer: str) -> str:
        return answer

    python_tool = StructuredTool.from_function(
        func=run_code_sync if local else None, coroutine=run_code, name="python", args_schema=PythonInput,
        description=("Run Python 3 code in an isolated sandbox (no network, no files kept between calls, "
                     f"{config.sandbox.timeout_s:g}s and {config.sandbox.memory_mb} MB limits). "
                     "Returns stdout and stderr. Use it to test code and to compute."),
        response_format="content_and_artifact", handle_tool_error=_tool_error,
    )
    retrieve_tool = StructuredTool.from_function(
        func=search if local else None, coroutine=asearch, name="retrieve", args_schema=RetrieveInput,
        description=("Search the Python documentation and the knowledge corpus (BM25). Returns the "
                     f"top passages with their source ids (default k={config.retrieval.default_k})."),
        response_format="content_and_artifact", handle_tool_error=_tool_error,
    )
    finish_tool = StructuredTool.from_function(
        func=finish, name="finish", args_schema=FinishInput, return_direct=True,
        description="End the task with the final answer (for coding tasks: the complete code).",
    )
    return ToolRegistry({t.name: t for t in (python_tool, retrieve_tool, finish_tool)})
