"""Knowledge-retrieval questions generated from the stdlib docstrings in the retrieval index.

For each documented stdlib function or class, the question quotes the first sentence of its
docstring (with the object's own name blanked out) and asks which object it is; the answer is
the qualified name (``math.gcd``) and ``meta["query"]`` is the same sentence, which the
reference teacher sends to the retrieve tool. A question is kept only when BM25 returns the
object's passage in the top 3 for that query, so every kept question is answerable from the
corpus the agent can search.

Which objects exist, and so which questions, depends on the interpreter the index was built
with (its stdlib); for one interpreter the output is fixed. ``builtins`` is left out: its
qualified names (``builtins.len``) are not what anyone would answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deepcoder.tools.retrieval import RetrievalIndex

KINDS = ("function", "class")
TOP_K = 3
MIN_WORDS, MAX_WORDS = 5, 40
BLANK = "___"
SKIP_MODULES = ("builtins",)

_SIGNATURE_LINE = re.compile(r"^[\w.]+\(.*\)|->")
# a sentence ends at . ! or ? before a capital, or at a period followed by two spaces
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(`*])|(?<=\.)\s{2,}")


@dataclass(frozen=True)
class Candidate:
    """A documented stdlib object and the sentence a question about it would quote."""

    name: str  # qualified, e.g. math.gcd
    kind: str  # function or class
    sentence: str  # first docstring sentence, own name blanked out
    passage_id: str

    @property
    def module(self) -> str:
        return self.name.rsplit(".", 1)[0]

    @property
    def query(self) -> str:
        """The search query: the sentence without the blank, without quotes or backslashes (the
        teacher puts the query inside a JSON string as written) and without the final period."""
        text = re.sub(r'["\\]', " ", self.sentence.replace(BLANK, " "))
        return re.sub(r"\s+", " ", text).strip().rstrip(". ")

    def prompt(self) -> str:
        sentence = self.sentence.replace('"', "'")
        return (f"Using the Python documentation, which {self.kind} in the `{self.module}` module is "
                f'documented as: "{sentence}"? Answer with its qualified name, like `module.name`.')


@dataclass(frozen=True)
class Question:
    """A kept candidate: BM25 ranks its passage ``rank`` (1-3) for the candidate's query."""

    candidate: Candidate
    rank: int


@dataclass(frozen=True)
class QuestionSet:
    """Kept questions and the counts behind the kept fraction (reported by load_problem_set users)."""

    questions: tuple[Question, ...]
    documented: int  # stdlib functions and classes with a docstring
    candidates: int  # of those, with a usable, unambiguous first sentence

    @property
    def kept_fraction(self) -> float:
        return len(self.questions) / self.candidates if self.candidates else 0.0


def first_sentence(doc: str) -> str | None:
    """The first sentence of a docstring, skipping an old-style signature line ('f(x) -> int')."""
    for paragraph in re.split(r"\n\s*\n", doc.strip()):
        lines = paragraph.strip().splitlines()
        if not lines or _SIGNATURE_LINE.search(lines[0]):
            continue
        text = " ".join(line.strip() for line in lines)
        return _SENTENCE_END.split(text, maxsplit=1)[0].strip()
    return None


def blank_name(sentence: str, name: str) -> str:
    """The sentence with the object's qualified and short names replaced by a blank, so the
    question does not give the answer away."""
    short = name.rsplit(".", 1)[-1]
    for word in (name, short):
        sentence = re.sub(rf"(?<!\w){re.escape(word)}(?!\w)", BLANK, sentence, flags=re.IGNORECASE)
    return sentence


def stdlib_candidates(passages: list[dict[str, str]]) -> tuple[list[Candidate], int]:
    """Candidates from the index's stdlib passages, plus the number of documented objects seen.

    A sentence shared by two objects (aliases, re-exports, look-alike classes) is dropped for
    both: the question would have two right answers.
    """
    found: list[Candidate] = []
    documented = 0
    for passage in passages:
        pid = passage["id"]
        if passage.get("source") != "stdlib" or "#" in pid or "~" in pid:
            continue  # only the first chunk of each object
        header, _, doc = passage["text"].partition("\n\n")
        kind, _, _ = header.partition(" ")
        name = passage["title"]
        module, _, short = name.rpartition(".")
        if kind not in KINDS or module in SKIP_MODULES or short.startswith("_") or "._" in name:
            continue
        documented += 1
        if short.lower() == module.rsplit(".", 1)[-1].lower():
            continue  # pprint.pprint: naming the module in the question would give the answer away
        sentence = first_sentence(doc)
        if not sentence:
            continue
        sentence = blank_name(sentence, name)
        words = re.findall(r"\w+", sentence.replace(BLANK, " "))
        if not MIN_WORDS <= len(words) <= MAX_WORDS or _looks_like_code(sentence) or sentence.count(BLANK) > 2:
            continue
        found.append(Candidate(name, kind, sentence, pid))
    counts: dict[str, int] = {}
    for c in found:
        counts[_fold(c.sentence)] = counts.get(_fold(c.sentence), 0) + 1
    return [c for c in found if counts[_fold(c.sentence)] == 1], documented


def _looks_like_code(sentence: str) -> bool:
    """Grammar rules and examples ('expr = BinOp(...) | ...', '>>> f()') make poor questions."""
    return any(marker in sentence for marker in ("|", " = ", ">>>", "::"))


def _fold(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def _rank(index: "RetrievalIndex", query: str, passage_id: str) -> int | None:
    """1-based position of the object's passage in the top TOP_K for query, or None."""
    if not query.strip():
        return None
    for position, passage in enumerate(index.search(query, TOP_K), 1):
        if passage.id == passage_id:
            return position
    return None


_CACHE: dict[str, QuestionSet] = {}


def stdlib_questions(index: "RetrievalIndex") -> QuestionSet:
    """Every answerable question for this index, in corpus order (computed once per index)."""
    cached = _CACHE.get(index.key)
    if cached is not None:
        return cached
    # The index keeps its passages privately; they are the corpus we must ask about.
    candidates, documented = stdlib_candidates(index.passages())
    kept = []
    for candidate in candidates:
        rank = _rank(index, candidate.query, candidate.passage_id)
        if rank is not None:
            kept.append(Question(candidate, rank))
    result = QuestionSet(tuple(kept), documented, len(candidates))
    _CACHE[index.key] = result
    return result
