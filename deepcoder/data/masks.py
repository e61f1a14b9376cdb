"""One trajectory -> one training example: token ids, labels and per-token span masks.

The conversation is rendered with the same ``build_messages`` the agent loop uses (system prompt
with the tools, the task, assistant turns with Thought/Action, observations as the next user
turn), through the student's own chat template. The spans come from the shared ``segment``.

Char spans. In an assistant turn the spans are made contiguous: each span runs to the start of
the next one, so the newline between Thought and Action is trained with the span it closes, and
the last span of the turn also takes the end-of-turn token that follows the content (the special
token right after it, ``<|im_end|>`` for ChatML), so the student learns to stop. An observation
turn's content is one observation span. Nothing else (system, user, template headers) is a span.

Token rule (straddling tokens): a token belongs to the span that contains its first character;
a token whose first character lies in no span belongs to the span that contains its last
character. So a token is in at most one span, and every character of a span is covered.

Masks: ``reason_mask`` / ``action_mask`` / ``observation_mask`` are 0/1 per token. ``labels``
are the token ids where reason or act, and -100 everywhere else (observation, system and user
tokens are never trained).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

from deepcoder.agent.format import segment
from deepcoder.agent.prompts import build_messages
from deepcoder.agent.types import Trajectory

IGNORE_INDEX = -100
KINDS = ("reason", "act", "observation")


class RenderError(ValueError):
    """The chat template does not keep message contents verbatim, so spans cannot be located."""


@dataclass
class CharSpan:
    kind: str
    start: int
    end: int


@dataclass
class Rendered:
    text: str
    spans: list[CharSpan]
    steps: int


@dataclass
class Example:
    """One training example; ``to_row`` gives the dataset columns."""

    input_ids: list[int]
    labels: list[int]
    reason_mask: list[int]
    action_mask: list[int]
    observation_mask: list[int]
    problem_id: str
    trajectory_id: str
    source: str
    steps: int
    truncated_steps: int = 0
    text: str = ""
    spans: list[CharSpan] = field(default_factory=list)
    offsets: list[tuple[int, int]] = field(default_factory=list)

    def to_row(self) -> dict[str, Any]:
        return {
            "input_ids": self.input_ids,
            "attention_mask": [1] * len(self.input_ids),
            "labels": self.labels,
            "reason_mask": self.reason_mask,
            "action_mask": self.action_mask,
            "observation_mask": self.observation_mask,
            "problem_id": self.problem_id,
            "trajectory_id": self.trajectory_id,
            "source": self.source,
            "steps": self.steps,
            "truncated_steps": self.truncated_steps,
            "length": len(self.input_ids),
        }


@dataclass
class Dropped:
    reason: str
    detail: str = ""


def _turn_end(tokenizer, text: str, position: int) -> int:
    """Length of the special token that closes a turn right at ``position`` (0 if none)."""
    for token in sorted(tokenizer.all_special_tokens, key=len, reverse=True):
        if token and text.startswith(token, position):
            return len(token)
    return 0


def render(trajectory: Trajectory, tokenizer, steps: int | None = None) -> Rendered:
    """The chat-template text of the first ``steps`` steps and its REASON/ACT/OBSERVATION char spans."""
    kept = trajectory.steps if steps is None else trajectory.steps[:steps]
    messages = build_messages(trajectory.system_prompt, trajectory.task, kept)
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans: list[CharSpan] = []
    cursor = 0
    for index, message in enumerate(messages):
        content = message["content"]
        start = text.find(content, cursor)
        if start < 0:
            raise RenderError(f"the chat template changed message {index} ({message['role']}); "
                              "contents must appear verbatim to be masked")
        end = start + len(content)
        cursor = end
        if message["role"] == "assistant":
            local = segment(content).spans
            if not local:
                continue
            for i, span in enumerate(local):
                s = start + (0 if i == 0 else span.start)
                e = start + local[i + 1].start if i + 1 < len(local) else end
                spans.append(CharSpan(span.kind, s, e))
            spans[-1].end += _turn_end(tokenizer, text, end)
        elif message["role"] == "user" and index >= 2:
            spans.append(CharSpan("observation", start, end))
    return Rendered(text, spans, len(kept))


def assign_tokens(offsets: list[tuple[int, int]], spans: list[CharSpan]) -> list[int]:
    """Index of the span each token belongs to (-1 for none), by the straddling rule above."""
    owner = [-1] * len(offsets)
    if not spans:
        return owner
    j = 0
    for t, (a, b) in enumerate(offsets):
        if b <= a:
            continue
        while j < len(spans) and spans[j].end <= a:
            j += 1
        if j < len(spans) and spans[j].start <= a < spans[j].end:
            owner[t] = j
        elif j < len(spans) and spans[j].start < b:  # starts in a gap, ends inside the next span
            owner[t] = j
    return owner


def tokenize(rendered: Rendered, tokenizer) -> tuple[list[int], list[tuple[int, int]], list[int]]:
    encoding = tokenizer(rendered.text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = [tuple(o) for o in encoding["offset_mapping"]]
    return list(encoding["input_ids"]), offsets, assign_tokens(offsets, rendered.spans)


def _example(trajectory: Trajectory, rendered: Rendered, ids, offsets, owner, truncated: int) -> Example:
    kinds = [rendered.spans[o].kind if o >= 0 else "" for o in owner]
    reason = [int(k == "reason") for k in kinds]
    action = [int(k == "act") for k in kinds]
    observation = [int(k == "observation") for k in kinds]
    labels = [i if (r or a) else IGNORE_INDEX for i, r, a in zip(ids, reason, action)]
    return Example(ids, labels, reason, action, observation, trajectory.problem_id, trajectory.id,
                   trajectory.source, rendered.steps, truncated, rendered.text, rendered.spans, offsets)


def build_example(trajectory: Trajectory, tokenizer, max_seq_len: int,
                  truncation: Literal["drop", "step_boundary"] = "step_boundary") -> Example | Dropped:
    """The example for one trajectory, or why there is none.

    Over ``max_seq_len``: ``drop`` drops it; ``step_boundary`` keeps the longest prefix of whole
    steps that fits (never cutting inside a span) and records how many steps were cut.
    """
    try:
        rendered = render(trajectory, tokenizer)
    except RenderError as exc:
        return Dropped("render_error", str(exc))
    ids, offsets, owner = tokenize(rendered, tokenizer)
    if len(ids) <= max_seq_len:
        return _example(trajectory, rendered, ids, offsets, owner, 0)
    if truncation == "drop":
        return Dropped("too_long", f"{len(ids)} tokens > {max_seq_len}")
    low, high, best = 1, len(trajectory.steps) - 1, None
    while low <= high:  # longest prefix of steps that fits: lengths grow with steps
        mid = (low + high) // 2
        candidate = render(trajectory, tokenizer, steps=mid)
        c_ids, c_offsets, c_owner = tokenize(candidate, tokenizer)
        if len(c_ids) <= max_seq_len:
            best, low = (candidate, c_ids, c_offsets, c_owner), mid + 1
        else:
            high = mid - 1
    if best is None:
        return Dropped("too_long", f"even the first step is over {max_seq_len} tokens")
    candidate, c_ids, c_offsets, c_owner = best
    return _example(trajectory, candidate, c_ids, c_offsets, c_owner, len(trajectory.steps) - candidate.steps)


def verify_example(example: Example, tokenizer) -> list[str]:
    """Check the alignment: decode every masked run and compare it with the span it came from.

    For each span: its tokens are one contiguous run with the span's kind in the masks; the run
    decodes to exactly the text its offsets cover; that text covers the whole span except at most
    a leading token that straddles in from the previous span; labels equal the ids exactly where
    a reason or act mask is 1.
    """
    problems: list[str] = []
    ids, offsets, text = example.input_ids, example.offsets, example.text
    masks = {"reason": example.reason_mask, "act": example.action_mask, "observation": example.observation_mask}
    owner = assign_tokens(offsets, example.spans)
    for index, span in enumerate(example.spans):
        run = [t for t, o in enumerate(owner) if o == index]
        label = f"{span.kind} span {index} ({span.start}-{span.end})"
        if not run:
            problems.append(f"{label}: no tokens")
            continue
        if run != list(range(run[0], run[-1] + 1)):
            problems.append(f"{label}: tokens not contiguous")
        if any(masks[span.kind][t] != 1 for t in run):
            problems.append(f"{label}: mask is not set on all its tokens")
        run_start, run_end = offsets[run[0]][0], offsets[run[-1]][1]
        decoded = tokenizer.decode([ids[t] for t in run])
        if decoded != text[run_start:run_end]:
            problems.append(f"{label}: decodes to {decoded[:40]!r}, offsets cover {text[run_start:run_end][:40]!r}")
        if run_end < span.end:
            problems.append(f"{label}: run ends at {run_end}, before the span")
        previous_end = offsets[run[0] - 1][1] if run[0] > 0 else 0
        if run_start > span.start and previous_end < run_start:
            problems.append(f"{label}: run starts at {run_start}, after the span, with a gap")
    for t, (i, label) in enumerate(zip(ids, example.labels)):
        trained = example.reason_mask[t] or example.action_mask[t]
        if (label == i) != bool(trained) or (not trained and label != IGNORE_INDEX):
            problems.append(f"token {t}: label {label} does not match the masks")
            break
    if any(r + a + o > 1 for r, a, o in zip(example.reason_mask, example.action_mask, example.observation_mask)):
        problems.append("a token is in more than one span")
    return problems


def split_of(problem_id: str, seed: int, val_fraction: float) -> str:
    """train or validation, by problem id (all samples of a problem land together), seeded."""
    bucket = int(hashlib.sha256(f"{seed}:{problem_id}".encode()).hexdigest(), 16) % 10_000
    return "validation" if bucket < val_fraction * 10_000 else "train"


def _runs(mask: list[int]) -> list[tuple[int, int]]:
    runs, start = [], None
    for t, m in enumerate(list(mask) + [0]):
        if m and start is None:
            start = t
        elif not m and start is not None:
            runs.append((start, t))
            start = None
    return runs


def verify_row(row: dict[str, Any], tokenizer) -> list[str]:
    """Check a saved dataset row (ids, labels, masks only): labels follow the masks, and every
    masked run decodes to text that the shared segmenter reads as spans of the run's kind."""
    problems: list[str] = []
    ids, labels = list(row["input_ids"]), list(row["labels"])
    reason, action, observation = list(row["reason_mask"]), list(row["action_mask"]), list(row["observation_mask"])
    if not len(ids) == len(labels) == len(reason) == len(action) == len(observation):
        return ["columns have different lengths"]
    for t in range(len(ids)):
        trained = reason[t] or action[t]
        if (labels[t] == ids[t] if trained else labels[t] == IGNORE_INDEX) is False:
            problems.append(f"token {t}: label does not follow the masks")
            break
        if reason[t] + action[t] + observation[t] > 1:
            problems.append(f"token {t}: in two spans")
            break
    specials = set(tokenizer.all_special_ids)
    for kind, mask in (("reason", reason), ("act", action)):
        for start, end in _runs(mask):
            run_ids = [i for i in ids[start:end] if i not in specials]
            text = tokenizer.decode(run_ids)
            kinds = {s.kind for s in segment(text).spans}
            if kinds != {kind} and not (kind == "reason" and kinds <= {"reason"} and text.strip()):
                problems.append(f"{kind} run {start}-{end} reads as {sorted(kinds)}: {text[:60]!r}")
    return problems
