"""The model interface the agent loop drives: anything that turns messages into a reply.

The teacher client, a local student and scripted policies all implement ``Policy``; the loop
does not care which one it talks to.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence, runtime_checkable

Message = dict[str, str]


class PolicyError(RuntimeError):
    """The model cannot answer at all (bad key, unknown model): the episode ends with an error."""


@dataclass
class PolicyOutput:
    """One reply. ``reasoning`` is the provider's separate reasoning field, when it has one."""

    text: str
    reasoning: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    finish_reason: str | None = None


@runtime_checkable
class Policy(Protocol):
    name: str

    async def agenerate(self, messages: Sequence[Message], *, stop: Sequence[str] = ()) -> PolicyOutput:
        """The next assistant turn for this conversation."""
        ...


class SyncPolicy:
    """Base for policies whose generation blocks (local models): runs it in a worker thread."""

    name = "sync-policy"

    def generate(self, messages: Sequence[Message], *, stop: Sequence[str] = ()) -> PolicyOutput:
        raise NotImplementedError

    async def agenerate(self, messages: Sequence[Message], *, stop: Sequence[str] = ()) -> PolicyOutput:
        return await asyncio.to_thread(self.generate, messages, stop=stop)


class ScriptedPolicy:
    """Replays fixed replies, or calls ``script(messages)``; for tests and demos.

    With a list, the n-th call returns the n-th reply (and fails loudly past the end).
    """

    def __init__(self, script: Sequence[str | PolicyOutput] | Callable[[Sequence[Message]], str | PolicyOutput],
                 name: str = "scripted") -> None:
        self.name = name
        self._script = script
        self.calls = 0

    async def agenerate(self, messages: Sequence[Message], *, stop: Sequence[str] = ()) -> PolicyOutput:
        self.calls += 1
        if callable(self._script):
            reply = self._script(messages)
        else:
            if self.calls > len(self._script):
                raise PolicyError(f"scripted policy has only {len(self._script)} replies")
            reply = self._script[self.calls - 1]
        return reply if isinstance(reply, PolicyOutput) else PolicyOutput(text=reply)
