"""The data the agent core passes around: spans, steps and whole trajectories (the JSONL record).

One definition, used by generation, the dataset builder, evaluation and serving.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SpanKind = Literal["reason", "act", "observation"]
TRAJECTORY_VERSION = 1


class Span(BaseModel):
    """A region of a trajectory text: ``text[start:end]`` is the span, marker included."""

    model_config = ConfigDict(frozen=True)

    kind: SpanKind
    start: int
    end: int
    label: str = Field("", description="What opened it: thought, think, preamble, action, final_answer, ...")

    def text_of(self, text: str) -> str:
        return text[self.start:self.end]


class Step(BaseModel):
    """One Thought / Action / Action Input / Observation cycle."""

    thought: str | None = None
    action: str | None = Field(None, description="Tool name as written (lower-cased, decorations removed).")
    action_input: str | None = Field(None, description="The input as written.")
    tool_input: dict[str, Any] | None = Field(None, description="The input decoded for the tool.")
    observation: str | None = None
    # Filled by the agent loop, not by the parser.
    raw: str | None = Field(None, description="The model's raw output for this step.")
    reasoning_source: Literal["content", "reasoning_field", "think_block", "none"] | None = None
    error: str | None = Field(None, description="Why the step failed (parse error, tool error, timeout).")
    problems: list[str] = Field(default_factory=list)
    duration_s: float | None = None
    usage: dict[str, int] | None = None

    @property
    def is_finish(self) -> bool:
        return self.action == "finish"


class Task(BaseModel):
    """A problem for the agent. ``kind`` decides which tool it should reach for."""

    id: str
    kind: Literal["code", "math", "retrieval", "other"] = "code"
    prompt: str
    answer: str | None = Field(None, description="Reference answer, when the task has one.")
    tests: list[str] = Field(default_factory=list, description="Assertions a code answer must pass.")
    test_setup: str = ""
    entry_point: str | None = None
    reference: str | None = Field(None, description="Reference solution, when the task has one.")
    meta: dict[str, Any] = Field(default_factory=dict)


class Trajectory(BaseModel):
    """One episode: the JSONL record generation writes and every later stage reads."""

    version: int = TRAJECTORY_VERSION
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    problem_id: str = Field("", description="The task's id (filled from task when empty).")
    sample: int = Field(0, ge=0, description="Which of the samples_per_problem episodes this is.")
    source: str = Field("", description="Problem set the task came from (mbpp, math, retrieval, ...).")
    task: Task
    system_prompt: str = ""
    steps: list[Step] = Field(default_factory=list)
    messages: list[dict[str, str]] = Field(default_factory=list, description="The conversation at the end.")
    final_answer: str | None = None
    status: Literal["finished", "max_steps", "timeout", "error"] = "error"
    error: str | None = None
    verified: bool | None = Field(None, description="The task's checker accepted the final answer.")
    verification: str | None = Field(None, description="The checker's detail (test output, expected answer).")
    teacher_model: str | None = Field(None, description="Who wrote the steps; offline stand-ins say so.")
    config_hash: str | None = None
    usage: dict[str, int] = Field(default_factory=dict, description="Token usage summed over the steps.")
    created_at: float = Field(default_factory=time.time)
    duration_s: float | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    def model_post_init(self, __context: Any) -> None:
        if not self.problem_id:
            self.problem_id = self.task.id
        if not self.source:
            self.source = str(self.task.meta.get("source") or self.task.kind)

    @property
    def key(self) -> str:
        """Identity for resuming: one record per (problem, sample)."""
        return f"{self.problem_id}#{self.sample}"

    def text(self) -> str:
        """The canonical Thought/Action/Observation text of the steps (what the segmenter reads)."""
        from deepcoder.agent.format import render

        return render(self.steps)
