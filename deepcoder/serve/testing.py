"""A scripted stand-in for ``StudentModel``: for tests and the serving benchmark only.

It answers the same calls as ``StudentModel`` with replies fixed by the request, so a test
can drive a finished run, a tool failure or a model failure end to end through the real app,
and the benchmark can hold the model's cost constant. The production app never uses it unless
it is passed to ``build_app(models=...)`` explicitly.

Replies for agent turns: if the task text contains ``SCRIPT:`` followed by a JSON list, turn n
gets the n-th string (``"__raise__"`` makes the model call fail); past the end it finishes.
Without a script: turn 0 runs ``print(6 * 7)`` in the python tool, turn 1 finishes with the
last observation.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, AsyncIterator, Sequence

from ray import serve

DEFAULT_SCRIPT = ["Thought: compute it\nAction: python\nAction Input: ```python\nprint(6 * 7)\n```"]


def scripted_reply(messages: Sequence[dict[str, str]]) -> str:
    task = next((m["content"] for m in messages if m["role"] == "user"), "")
    turn = sum(1 for m in messages if m["role"] == "assistant")
    match = re.search(r"SCRIPT:\s*(\[.*\])", task, re.S)
    script = json.loads(match.group(1)) if match else DEFAULT_SCRIPT
    if turn < len(script):
        return script[turn]
    last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    answer = last.removeprefix("Observation:").strip() or "done"
    return f"Thought: I have the answer\nAction: finish\nAction Input: {answer}"


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
class ScriptedModel:
    def __init__(self, name: str = "scripted", delay_s: float = 0.0) -> None:
        self.name = name
        self.delay_s = delay_s

    def info(self) -> dict[str, Any]:
        return {"id": self.name, "source": "scripted", "backend": "scripted", "loaded": True,
                "deterministic": True, "max_new_tokens": 256}

    async def generate(self, messages: list[dict[str, str]], stop: Sequence[str] = ()) -> dict[str, Any]:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        text = scripted_reply(messages)
        if text == "__raise__":
            raise RuntimeError("scripted model failure")
        return {"text": text, "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                "finish_reason": "stop"}

    async def chat(self, messages: list[dict[str, str]], *, n: int = 1, stop: Sequence[str] = (),
                   temperature: float = 0.0, max_tokens: int | None = None) -> list[dict[str, Any]]:
        text = "echo: " + (messages[-1].get("content") or "")
        return [{"text": text, "prompt_tokens": 1, "completion_tokens": len(text.split()), "finish_reason": "stop"}
                for _ in range(n)]

    async def stream_chat(self, messages: list[dict[str, str]], *, stop: Sequence[str] = (),
                          temperature: float = 0.0, max_tokens: int | None = None) -> AsyncIterator[dict]:
        [c] = await self.chat(messages)
        for word in c["text"].split(" "):
            yield {"delta": word + " "}
        yield {"finish_reason": "stop", "usage": {"prompt_tokens": 1, "completion_tokens": c["completion_tokens"],
                                                  "total_tokens": 1 + c["completion_tokens"]}}
