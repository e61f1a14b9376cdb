"""Parse, segment and render the Thought / Action / Observation protocol.

The rules are written down in docs/trajectory-format.md; this module is their one
implementation. Nothing here raises on malformed text: every result carries ``problems``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from deepcoder.agent.types import Span, Step

TOOL_ALIASES: dict[str, str] = {
    "python": "python", "python_repl": "python", "run_python": "python", "code": "python",
    "execute": "python", "exec": "python", "py": "python", "python3": "python",
    "retrieve": "retrieve", "search": "retrieve", "lookup": "retrieve", "retrieval": "retrieve",
    "docs": "retrieve",
    "finish": "finish", "final_answer": "finish", "answer": "finish", "submit": "finish",
}

_KEYWORD = re.compile(
    r"(?P<kw>thought|action[ _]?input|action|observation|final[ _]answer)(?![A-Za-z0-9]|_(?!_|\s*:))"
    r"(?:[ \t]*(?P<num>\d+))?",
    re.IGNORECASE,
)
_EMPHASIS = ("**", "__", "*", "_")
_FENCE_OPEN = re.compile(r"^(?P<fence>`{3,}|~{3,})(?P<info>[^\n]*)$")
_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"
_INLINE_ACTION = re.compile(r"^\s*(?P<name>[A-Za-z_][\w.\-]*)\s*\[(?P<input>.*)\]\s*$", re.DOTALL)


# ------------------------------------------------------------------------------------ markers


@dataclass(frozen=True)
class _Marker:
    keyword: str  # thought | action | action_input | observation | final_answer
    start: int  # offset of the marker (after indentation)
    content_start: int  # offset just after the marker and the spaces following it
    bare: bool  # written without a colon (heading / bold on its own line)


def _normalise_keyword(kw: str) -> str:
    kw = kw.lower().replace(" ", "_")
    return {"actioninput": "action_input"}.get(kw, kw)


def match_marker(line: str) -> tuple[str, int, int, bool] | None:
    """If ``line`` opens with a marker: (keyword, marker offset, content offset, bare)."""
    i = 0
    n = len(line)
    while i < n and line[i] in " \t":
        i += 1
    start = i
    decorated = False
    if line.startswith("#", i):
        j = i
        while j < n and line[j] == "#":
            j += 1
        if j - i > 6 or (j < n and line[j] not in " \t*_"):
            return None
        i = j
        decorated = True
        while i < n and line[i] in " \t":
            i += 1
    emphasis = ""
    for candidate in _EMPHASIS:
        if line.startswith(candidate, i):
            emphasis = candidate
            i += len(candidate)
            decorated = True
            break
    m = _KEYWORD.match(line, i)
    if m is None:
        return None
    keyword = _normalise_keyword(m.group("kw"))
    i = m.end()
    while i < n and line[i] in " \t":
        i += 1
    colon = False
    if line.startswith(":", i):
        colon = True
        i += 1
        while i < n and line[i] in " \t":
            i += 1
        if emphasis and line.startswith(emphasis, i):
            i += len(emphasis)
    elif emphasis and line.startswith(emphasis, i):
        i += len(emphasis)
        while i < n and line[i] in " \t":
            i += 1
        if line.startswith(":", i):
            colon = True
            i += 1
    if not colon:
        if not decorated or line[i:].strip():
            return None
        return keyword, start, n, True
    while i < n and line[i] in " \t":
        i += 1
    return keyword, start, i, False


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """(offset, line without its newline) for every line."""
    pos = 0
    n = len(text)
    while pos < n:
        end = text.find("\n", pos)
        if end == -1:
            end = n
        line = text[pos:end]
        yield pos, line[:-1] if line.endswith("\r") else line
        pos = end + 1


def _fence_opener(fragment: str) -> tuple[str, int] | None:
    """(fence char, length) when ``fragment`` (a line or a marker's content) opens a fence."""
    m = _FENCE_OPEN.match(fragment.strip(" \t"))
    if m is None:
        return None
    fence = m.group("fence")
    if fence[0] == "`" and "`" in m.group("info"):
        return None  # CommonMark: a backtick fence's info string has no backtick
    return fence[0], len(fence)


def _closes_fence(line: str, fence: tuple[str, int]) -> bool:
    stripped = line.strip(" \t")
    return len(stripped) >= fence[1] and set(stripped) == {fence[0]}


def _stray_think_close(text: str, lowered: str) -> tuple[int, int, bool] | None:
    """DeepSeek R1's template puts ``<think>`` in the prompt, so replies start inside the block
    and only close it. Text up to a leading ``</think>`` (no opener, no marker before it) is one."""
    close = lowered.find(_THINK_CLOSE)
    if close == -1 or -1 < lowered.find(_THINK_OPEN) < close:
        return None
    if any(match_marker(line) or _fence_opener(line) for _, line in _lines(text[:close])):
        return None
    start = len(text) - len(text.lstrip())
    return start, close + len(_THINK_CLOSE), True


@dataclass
class _Scan:
    markers: list[_Marker] = field(default_factory=list)
    thinks: list[tuple[int, int, bool]] = field(default_factory=list)  # start, end, closed
    problems: list[str] = field(default_factory=list)


def _scan(text: str) -> _Scan:
    """Find markers and <think> blocks, skipping fenced code and think content."""
    scan = _Scan()
    fence: tuple[str, int] | None = None
    fence_line = 0
    skip_until = 0  # end of the last <think> block
    lowered = text.lower()
    stray = _stray_think_close(text, lowered)
    if stray is not None:
        scan.thinks.append(stray)
        skip_until = stray[1]
    for lineno, (offset, line) in enumerate(_lines(text), start=1):
        if offset + len(line) < skip_until:
            continue
        if fence is not None:
            if _closes_fence(line, fence):
                fence = None
            continue
        column = max(0, skip_until - offset)
        while True:
            fragment = line[column:]
            stripped = fragment.lstrip(" \t")
            if stripped[:len(_THINK_OPEN)].lower() == _THINK_OPEN:
                start = offset + column + (len(fragment) - len(stripped))
                close = lowered.find(_THINK_CLOSE, start + len(_THINK_OPEN))
                if close == -1:
                    scan.thinks.append((start, len(text), False))
                    scan.problems.append(f"line {lineno}: unclosed <think> block (truncated output?)")
                    return scan
                skip_until = close + len(_THINK_CLOSE)
                scan.thinks.append((start, skip_until, True))
                if skip_until <= offset + len(line):
                    column = skip_until - offset  # scan what follows </think> on this line
                    continue
                break
            found = match_marker(fragment)
            if found is not None:
                keyword, m_start, c_start, bare = found
                base = offset + column
                scan.markers.append(_Marker(keyword, base + m_start, base + c_start, bare))
                opener = _fence_opener(fragment[c_start:])
            else:
                opener = _fence_opener(fragment)
            if opener:
                fence, fence_line = opener, lineno
            break
    if fence is not None:
        scan.problems.append(f"line {fence_line}: unclosed code fence runs to the end of the text")
    return scan


# ------------------------------------------------------------------------------------ spans


@dataclass(frozen=True)
class Segmentation:
    """The spans of a text plus what could not be made sense of. Iterates over spans."""

    text: str
    spans: list[Span]
    problems: list[str]

    def __iter__(self) -> Iterator[Span]:
        return iter(self.spans)

    def __len__(self) -> int:
        return len(self.spans)

    def __getitem__(self, index: int) -> Span:
        return self.spans[index]

    def texts(self) -> list[tuple[str, str]]:
        return [(s.kind, s.text_of(self.text)) for s in self.spans]


def _trim(text: str, start: int, end: int, *, lead: bool = False) -> tuple[int, int]:
    while end > start and text[end - 1].isspace():
        end -= 1
    if lead:
        while start < end and text[start].isspace():
            start += 1
    return start, end


_KIND_OF = {"thought": "reason", "action": "act", "action_input": "act", "final_answer": "act",
            "observation": "observation"}


def segment(text: str) -> Segmentation:
    """Split a trajectory text into reason / act / observation spans (see the format doc)."""
    if not isinstance(text, str):
        return Segmentation("", [], [f"expected text, got {type(text).__name__}"])
    if not text.strip():
        return Segmentation(text, [], ["empty text"])
    scan = _scan(text)
    problems = list(scan.problems)
    events: list[tuple[int, str, Any]] = [(m.start, "marker", m) for m in scan.markers]
    events += [(start, "think", (start, end, closed)) for start, end, closed in scan.thinks]
    events.sort(key=lambda e: e[0])

    spans: list[Span] = []

    def add(kind: str, start: int, end: int, label: str, *, lead: bool = False) -> None:
        start, end = _trim(text, start, end, lead=lead)
        if end > start:
            spans.append(Span(kind=kind, start=start, end=end, label=label))  # type: ignore[arg-type]

    first = events[0][0] if events else len(text)
    add("reason", 0, first, "preamble", lead=True)
    i = 0
    while i < len(events):
        pos, what, item = events[i]
        next_pos = events[i + 1][0] if i + 1 < len(events) else len(text)
        if what == "think":
            start, end, _closed = item
            add("reason", start, end, "think")
            add("reason", end, next_pos, "preamble", lead=True)
            i += 1
            continue
        marker: _Marker = item
        line_no = text.count("\n", 0, marker.start) + 1
        if marker.keyword == "action":
            j = i + 1
            while j < len(events) and events[j][1] == "marker" and events[j][2].keyword == "action_input":
                j += 1
                if j - i > 2:
                    problems.append(f"line {line_no}: more than one Action Input for one Action")
            end = events[j][0] if j < len(events) else len(text)
            add("act", pos, end, "action")
            i = j
            continue
        if marker.keyword == "action_input":
            problems.append(f"line {line_no}: Action Input without an Action before it")
        kind = _KIND_OF[marker.keyword]
        if marker.keyword == "thought" and not text[marker.content_start:next_pos].strip():
            problems.append(f"line {line_no}: empty thought")
        add(kind, pos, next_pos, marker.keyword)
        i += 1
    return Segmentation(text, spans, problems)


# ------------------------------------------------------------------------------------ steps


@dataclass(frozen=True)
class ParsedSteps:
    """Steps parsed from a text plus the problems found. Iterates over steps."""

    steps: list[Step]
    problems: list[str]
    segmentation: Segmentation

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, index: int) -> Step:
        return self.steps[index]


def canonical_tool(name: str | None) -> str | None:
    """The protocol's tool name for an alias (``search`` -> ``retrieve``), else the name itself."""
    if name is None:
        return None
    return TOOL_ALIASES.get(name, name)


def _clean_action_name(raw: str) -> str:
    name = raw.strip().strip("`*\"'").strip()
    return name.lower().replace(" ", "_").replace("-", "_")


def extract_code(raw: str) -> str:
    """The code inside the first fenced block of ``raw``, or ``raw`` itself when there is none."""
    lines = raw.replace("\r\n", "\n").split("\n")
    for index, line in enumerate(lines):
        opener = _fence_opener(line)
        if opener is None:
            continue
        body = []
        for inner in lines[index + 1:]:
            if _closes_fence(inner, opener):
                break
            body.append(inner)
        return "\n".join(body)
    stripped = raw.strip()
    if stripped.startswith("`") and stripped.endswith("`") and len(stripped) > 1:
        return stripped.strip("`")
    return raw.strip("\n")


def _as_json_object(raw: str) -> dict[str, Any] | None:
    candidate = raw.strip()
    if candidate.startswith("```"):
        candidate = extract_code(candidate).strip()
    if not (candidate.startswith("{") and candidate.endswith("}")):
        return None
    try:
        value = json.loads(candidate)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def decode_tool_input(action: str | None, raw: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """Turn the written input into the tool's arguments: (arguments, problem or None)."""
    tool = canonical_tool(action)
    raw = raw or ""
    obj = _as_json_object(raw)
    if tool == "python":
        code = obj.get("code") if obj and isinstance(obj.get("code"), str) else extract_code(raw)
        return ({"code": code}, None) if code.strip() else (None, "python action without code")
    if tool == "retrieve":
        if obj is not None:
            query = obj.get("query") or obj.get("q") or obj.get("input")
            args: dict[str, Any] = {"query": str(query).strip() if query is not None else ""}
            if "k" in obj:
                args["k"] = obj["k"]
        else:
            args = {"query": raw.strip().strip("\"'`").strip()}
        return (args, None) if args["query"] else (None, "retrieve action without a query")
    if tool == "finish":
        answer: Any = raw.strip()
        if obj is not None and "answer" in obj:
            answer = obj["answer"]
            answer = answer if isinstance(answer, str) else json.dumps(answer)
        return ({"answer": answer}, None) if str(answer).strip() else (None, "finish without an answer")
    if obj is not None:
        return obj, None
    return ({"input": raw.strip()}, None) if raw.strip() else (None, f"action {action!r} without input")


def _content(text: str, seg_text_start: int, end: int) -> str:
    return text[seg_text_start:end].strip()


_OUTPUT_FENCE = re.compile(r"^(?P<fence>`{3,})output[ \t]*\r?\n(?P<body>.*)\r?\n(?P=fence)$", re.DOTALL)


def _unwrap_observation(content: str) -> str:
    m = _OUTPUT_FENCE.match(content)
    return m.group("body") if m else content


def parse_steps(text: str) -> ParsedSteps:
    """Parse a trajectory text (or one model turn) into typed steps."""
    seg = segment(text)
    problems = list(seg.problems)
    markers = {m.start: m for m in _scan(text).markers} if seg.spans else {}
    steps: list[Step] = []
    current = Step()

    def push() -> None:
        nonlocal current
        if current.model_dump(exclude_defaults=True):
            steps.append(current)
        current = Step()

    for span in seg.spans:
        span_text = span.text_of(text)
        marker = markers.get(span.start)
        body = _content(text, marker.content_start, span.end) if marker else span_text.strip()
        if span.kind == "reason":
            if current.action is not None or current.observation is not None:
                push()
            if span.label == "think":
                body = re.sub(r"^<think>|</think>$", "", span_text, flags=re.IGNORECASE).strip()
            current.thought = f"{current.thought}\n\n{body}" if current.thought else body
        elif span.kind == "act":
            if current.action is not None or current.observation is not None:
                push()
            current.action, current.action_input = _split_action(text, span, markers)
            if current.action is None:
                current.problems.append("Action Input without an Action")
        else:
            if current.observation is not None:
                push()
            current.observation = _unwrap_observation(body)
    push()
    for number, step in enumerate(steps, start=1):
        if step.action is not None:
            step.tool_input, problem = decode_tool_input(step.action, step.action_input)
            if problem:
                step.problems.append(problem)
        problems += [f"step {number}: {p}" for p in step.problems]
    return ParsedSteps(steps, problems, seg)


def _split_action(text: str, span: Span, markers: dict[int, _Marker]) -> tuple[str | None, str | None]:
    """(action name, raw input) of an act span."""
    inner = sorted((m for m in markers.values() if span.start <= m.start < span.end), key=lambda m: m.start)
    if not inner:
        return None, None
    head = inner[0]
    if head.keyword == "final_answer":
        return "finish", text[head.content_start:span.end].strip()
    if head.keyword == "action_input":
        return None, text[head.content_start:span.end].strip()
    input_marker = next((m for m in inner[1:] if m.keyword == "action_input"), None)
    name_region = text[head.content_start: input_marker.start if input_marker else span.end]
    first_line, _, rest = name_region.strip().partition("\n")
    if input_marker is not None:
        raw_input: str | None = text[input_marker.content_start:span.end].strip()
    else:
        inline = _INLINE_ACTION.match(name_region.strip())
        if inline:
            return canonical_tool(_clean_action_name(inline.group("name"))), inline.group("input").strip()
        raw_input = rest.strip() or None
    return canonical_tool(_clean_action_name(first_line)) or None, raw_input


# ------------------------------------------------------------------------------------ render


def _fence_for(body: str) -> str:
    longest = max((len(m.group()) for m in re.finditer(r"`{3,}", body)), default=2)
    return "`" * max(3, longest + 1)


def _has_structure(body: str) -> bool:
    """Whether a line of ``body`` would read as a marker, a fence or a think block."""
    return any(match_marker(line) or _fence_opener(line) or line.lstrip().lower().startswith(_THINK_OPEN)
               for _, line in _lines(body))


def _needs_wrapping(body: str) -> bool:
    if body != body.strip() or not body:
        return True
    return _has_structure(body) or bool(_OUTPUT_FENCE.match(body))


def render_observation(observation: str) -> str:
    """``Observation: ...``, fenced when the output could otherwise read as markers."""
    if _needs_wrapping(observation):
        fence = _fence_for(observation)
        return f"Observation: {fence}output\n{observation}\n{fence}"
    return f"Observation: {observation}"


def render_action(step: Step) -> str:
    """``Action: ...`` plus ``Action Input: ...`` in the canonical form."""
    tool = canonical_tool(step.action) or ""
    if tool == "python" and step.tool_input and isinstance(step.tool_input.get("code"), str):
        code = step.tool_input["code"]
        fence = _fence_for(code)
        return f"Action: python\nAction Input: {fence}python\n{code}\n{fence}"
    raw = step.action_input
    if raw is None and step.tool_input is not None:
        raw = step.tool_input.get("answer") if tool == "finish" else json.dumps(step.tool_input)
    return f"Action: {tool}\nAction Input: {raw or ''}".rstrip()


def render_step(step: Step, *, with_observation: bool = True) -> str:
    """One step as canonical text (the assistant turn, plus its observation when asked)."""
    parts = []
    if step.thought is not None:
        if _has_structure(step.thought) and _THINK_CLOSE not in step.thought.lower():
            parts.append(f"<think>\n{step.thought}\n</think>")  # a Thought: would split at those lines
        else:
            parts.append(f"Thought: {step.thought}")
    if step.action is not None:
        parts.append(render_action(step))
    if with_observation and step.observation is not None:
        parts.append(render_observation(step.observation))
    return "\n".join(parts)


def render(steps: Sequence[Step]) -> str:
    """Canonical text of a whole trajectory; ``parse_steps(render(steps))`` gives the steps back."""
    return "\n".join(render_step(step) for step in steps)
