"""Request and response bodies of the agent API (they are also its OpenAPI schema at /docs).

Size limits that depend on the config (prompt length, steps, timeouts) are checked by the
ingress against ``ServeConfig``; the hard ceilings here stop absurd bodies before that.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from deepcoder.agent.types import Step

HARD_MAX_CHARS = 200_000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorInfo(BaseModel):
    """What went wrong, in a form a client can branch on."""

    type: str = Field(description="unauthorized, rate_limited, invalid_request, not_found, conflict, "
                                  "model_error, tool_error, timeout, internal_error")
    message: str
    detail: Any = None


class ErrorResponse(BaseModel):
    error: ErrorInfo


class RunRequest(_Body):
    """One task for the agent."""

    prompt: str = Field(min_length=1, max_length=HARD_MAX_CHARS, description="The task.")
    kind: Literal["code", "math", "retrieval", "other"] = "code"
    tests: list[str] = Field(default_factory=list, max_length=50,
                             description="Assertions a code answer must pass; checked in the sandbox.")
    max_steps: int | None = Field(None, ge=1, description="At most serve.max_steps (the default).")
    timeout_s: float | None = Field(None, gt=0, description="At most serve.request_timeout_s (the default).")
    stream: bool = Field(False, description="Server-Sent Events: one 'step' event per step, then 'final'.")
    model: str | None = Field(None, description="A served model id (GET /v1/models); default the first.")


class StepOut(BaseModel):
    index: int
    thought: str | None = None
    action: str | None = None
    action_input: str | None = None
    observation: str | None = None
    error: str | None = None
    duration_s: float | None = None

    @classmethod
    def from_step(cls, index: int, step: Step) -> "StepOut":
        return cls(index=index, thought=step.thought, action=step.action, action_input=step.action_input,
                   observation=step.observation, error=step.error, duration_s=step.duration_s)


class RunResponse(BaseModel):
    id: str
    model: str
    status: Literal["finished", "max_steps", "timeout", "error"]
    final_answer: str | None = None
    valid_finish: bool = Field(description="Finished with a non-empty answer (that passed the tests, if any).")
    verified: bool | None = Field(None, description="The tests passed (None when the request had none).")
    verification: str | None = None
    steps: list[StepOut]
    error: ErrorInfo | None = None
    usage: dict[str, int] = Field(default_factory=dict)
    duration_s: float
    cached: bool = False
    _infra_failures: list[str] = PrivateAttr(default_factory=list)  # not sent: sandbox/model outages seen


class SessionCreate(_Body):
    kind: Literal["code", "math", "retrieval", "other"] = "code"
    ttl_s: float | None = Field(None, gt=0, description="Idle expiry; at most serve.session_ttl_s (the default).")
    max_turns: int | None = Field(None, ge=1, description="At most serve.session_max_turns (the default).")
    model: str | None = None


class TurnRequest(_Body):
    prompt: str = Field(min_length=1, max_length=HARD_MAX_CHARS)
    tests: list[str] = Field(default_factory=list, max_length=50)
    max_steps: int | None = Field(None, ge=1)
    timeout_s: float | None = Field(None, gt=0)
    stream: bool = False


class TurnOut(BaseModel):
    index: int
    prompt: str
    status: str
    final_answer: str | None = None
    run_id: str


class SessionOut(BaseModel):
    id: str
    kind: str
    model: str
    created_at: float
    expires_at: float
    ttl_s: float
    max_turns: int
    turns: list[TurnOut]
    busy: bool = False


# ------------------------------------------------------------------ OpenAI-compatible chat


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | None = Field(None, max_length=HARD_MAX_CHARS)
    name: str | None = None


class ChatCompletionRequest(BaseModel):
    """The subset of OpenAI's chat completion request a local student can honour."""

    model_config = ConfigDict(extra="ignore")  # unknown OpenAI options (user, seed, ...) are ignored

    model: str
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=8)
    stream: bool = False

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else [s for s in self.stop if s][:4]
