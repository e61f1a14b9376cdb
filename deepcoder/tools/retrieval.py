"""BM25 retrieval over the interpreter's own documentation plus user documents.

This is what the agent's ``retrieve`` tool reads. The corpus is

* the Python documentation that ships with the interpreter: the language-reference topics in
  ``pydoc_data.topics`` and the docstrings of the stdlib's modules, classes, functions and
  methods (ids like ``stdlib:math.gcd``, ``topic:formatstrings#3``), and
* the documents named in ``retrieval.extra_paths``: folders of .md/.txt files (``doc:<path>#<n>``)
  and .jsonl files of ``{"id"?, "title"?, "text"}`` (``jsonl:<file>:<id>``).

Everything is local, so retrieval works offline, on cluster nodes and in tests. The index is
built once per (Python version, corpus settings, extra files) and cached on disk under
``<paths.cache_dir>/retrieval/<key>/``; a later load reads a few arrays and one JSONL file.
Stdlib docstrings are gathered in a child interpreter, so importing hundreds of modules (some with
import-time side effects) cannot change this process.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import inspect
import json
import keyword
import logging
import numbers
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import bm25s
import numpy as np
import Stemmer
from bm25s.stopwords import STOPWORDS_EN_PLUS
from pydantic import BaseModel

from deepcoder.config import RetrievalConfig

if TYPE_CHECKING:
    from deepcoder.config import Config

logger = logging.getLogger(__name__)

# Bump when tokenising, chunking or the files in the cache change, so old caches are not reused.
INDEX_FORMAT = 1
STDLIB_TIMEOUT_S = 300.0
DOC_SUFFIXES = (".md", ".markdown", ".txt")
OBSERVATION_CHARS = 1200  # per passage in format_passages: enough for a docstring, not a page

# Modules not worth importing: side effects (antigravity opens a browser), GUI or test code,
# or deprecated modules removed in 3.12 whose advice would mislead the agent.
SKIP_MODULES = (
    "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test", "lib2to3",
    "ensurepip", "pydoc_data", "__main__", "distutils", "imp", "asynchat", "asyncore", "smtpd",
    # PEP 594 "dead batteries", removed in 3.13
    "aifc", "audioop", "cgi", "cgitb", "chunk", "crypt", "imghdr", "mailcap", "msilib", "nis", "nntplib",
    "ossaudiodev", "pipes", "sndhdr", "spwd", "sunau", "telnetlib", "uu", "xdrlib",
)
# Packages whose submodules are noise (one codec module per encoding).
NO_SUBMODULES = ("encodings",)


class RetrievalError(ValueError):
    """Bad retrieval input or an unusable document; the message says which and how to fix it."""


class Passage(BaseModel):
    """One retrievable chunk. ``id`` is stable across builds; ``source`` says where it came from."""

    id: str
    title: str
    text: str
    source: str
    score: float = 0.0


# --------------------------------------------------------------------------------------------
# Tokenising: the same function for documents and queries


_WORD = re.compile(r"\w+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
# English stopwords, except Python keywords and builtin names: "all", "any", "with", "not",
# "while" are what a question about Python is about.
_PYTHON_WORDS = set(keyword.kwlist) | set(keyword.softkwlist) | {n.lower() for n in dir(builtins)}
STOPWORDS = frozenset(w for w in STOPWORDS_EN_PLUS if w not in _PYTHON_WORDS)
_local = threading.local()


@functools.lru_cache(maxsize=200_000)
def _split_word(word: str) -> tuple[str, ...]:
    """`most_common` -> most_common, most, common; `OrderedDict` -> ordereddict, ordered, dict."""
    parts = []
    for piece in word.split("_"):
        parts.extend(_CAMEL.findall(piece) if piece.isascii() else [piece])
    parts = [p.lower() for p in parts]
    whole = word.strip("_").lower()
    if len(parts) > 1 and whole:
        parts.insert(0, whole)
    return tuple(p for p in parts if len(p) > 1 and p not in STOPWORDS)


def tokenize(text: str) -> list[str]:
    """Lower-cased, stemmed words; identifiers are also split on dots, underscores and camelCase,
    so `itertools.combinations` and "combinations" meet."""
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:  # PyStemmer objects are not thread-safe: one per thread
        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    words = [part for word in _WORD.findall(text) for part in _split_word(word)]
    stems = stemmer.stemWords(words)
    # Keep the exact word too where stemming changed it: "factorial" and "factory" share the
    # stem "factori", and an exact match should count for more.
    return stems + [w for w, s in zip(words, stems) if w != s]


# --------------------------------------------------------------------------------------------
# Chunking


def _pack(pieces: list[str], sep: str, max_chars: int) -> list[str]:
    """Greedily join pieces with sep into chunks of at most max_chars."""
    chunks, current = [], ""
    for piece in pieces:
        if current and len(current) + len(sep) + len(piece) > max_chars:
            chunks.append(current)
            current = piece
        else:
            current = f"{current}{sep}{piece}" if current else piece
    if current:
        chunks.append(current)
    return chunks


def _fit(text: str, max_chars: int, seps: tuple[str, ...] = ("\n\n", "\n", " ")) -> list[str]:
    """Chunks of text, each at most max_chars, cut at the coarsest boundary that works
    (paragraph, then line, then word, then anywhere)."""
    if len(text) <= max_chars:
        return [text]
    if not seps:
        return [text[i:i + max_chars] for i in range(0, len(text), max_chars)]
    pieces = [p for part in text.split(seps[0]) if part.strip() for p in _fit(part, max_chars, seps[1:])]
    return _pack(pieces, seps[0], max_chars)


def split_passages(text: str, max_chars: int) -> list[str]:
    """Split text on paragraph boundaries into passages of at most max_chars."""
    text = re.sub(r"\n[ \t]*(?:\n[ \t]*)+", "\n\n", text.strip())
    return [chunk.strip("\n") for chunk in _fit(text, max_chars) if chunk.strip()]


def _sections(text: str, is_heading) -> Iterator[tuple[str | None, str]]:
    """(heading, body) pairs; is_heading(lines, i) returns (heading, lines used) or None."""
    lines = text.splitlines()
    heading, body, i = None, [], 0
    while i < len(lines):
        found = is_heading(lines, i)
        if found is None:
            body.append(lines[i])
            i += 1
            continue
        if "\n".join(body).strip():
            yield heading, "\n".join(body)
        heading, body = found[0], []
        i += found[1]
    if "\n".join(body).strip():
        yield heading, "\n".join(body)


def _rst_heading(lines: list[str], i: int) -> tuple[str, int] | None:
    """A pydoc-topic heading: a line underlined with one repeated punctuation character."""
    if i + 1 < len(lines) and lines[i].strip() and not lines[i][0].isspace():
        under = lines[i + 1]
        if len(under) >= 3 and len(set(under)) == 1 and under[0] in "*=-~^" and abs(len(under) - len(lines[i])) <= 2:
            return lines[i].strip(), 2
    return None


def _markdown_sections(text: str) -> Iterator[tuple[str | None, str]]:
    """Markdown split at ATX headings (``#`` .. ``######``), ignoring lines inside code fences."""
    in_fence = False

    def heading(lines: list[str], i: int) -> tuple[str, int] | None:
        nonlocal in_fence
        line = lines[i]
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        if in_fence:
            return None
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        return (m.group(1), 1) if m else None

    return _sections(text, heading)


# --------------------------------------------------------------------------------------------
# Corpus: pydoc topics


def topic_passages(max_chars: int) -> list[dict[str, str]]:
    """The language reference pages that `help("topic")` shows, split into passages."""
    from pydoc_data.topics import topics  # a plain dict of strings; importing it is harmless

    out = []
    for key in sorted(topics):
        n, page_title = 0, key
        for heading, body in _sections(topics[key], _rst_heading):
            if heading is not None and n == 0 and page_title == key:
                page_title = heading  # the first heading names the page
            title = page_title if heading in (None, page_title) else f"{page_title} › {heading}"
            for chunk in split_passages(body, max_chars):
                n += 1
                out.append({"id": f"topic:{key}#{n}", "title": title, "text": chunk, "source": "pydoc_data.topics"})
    return out


# --------------------------------------------------------------------------------------------
# Corpus: stdlib docstrings, gathered in a child interpreter


def _stdlib_docs_child(out_path: str, skip: list[str], no_submodules: list[str]) -> None:
    """Import every stdlib module and write its documented names to out_path as JSON.

    Runs in a child interpreter: its source is sent to ``python -I -c``, so it must use only the
    stdlib and define everything it needs inside. It exits with os._exit so that threads or
    atexit hooks started by imported modules cannot hang it.
    """
    import importlib
    import inspect
    import json
    import os
    import pkgutil
    import sys
    import types
    import warnings

    warnings.simplefilter("ignore")
    records, seen = [], set()

    def own_doc(obj):
        doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
        return inspect.cleandoc(doc) if isinstance(doc, str) and doc.strip() else ""

    def signature(obj):
        try:
            return str(inspect.signature(obj))
        except Exception:
            return ""

    def defined_in(obj, modname):
        # Keep a module's own names and what it re-exports from its private twin (_functools,
        # _collections_abc, ...); drop what it merely imported from other public modules.
        owner = getattr(obj, "__module__", None)
        if not isinstance(owner, str):
            return False
        twin = owner.startswith("_") and owner.lstrip("_") in (modname, modname.replace(".", "_"))
        return owner == modname or owner.startswith(modname + ".") or twin

    def add(kind, name, doc, sig=""):
        records.append({"kind": kind, "name": name, "doc": doc, "signature": sig})

    def add_class(name, cls):
        doc = own_doc(cls)
        if doc:
            add("class", name, doc, signature(cls))
        for attr_name, raw in sorted(vars(cls).items()):
            if attr_name.startswith("_"):
                continue
            try:
                attr = getattr(cls, attr_name)
            except Exception:
                continue
            if isinstance(raw, (staticmethod, classmethod)) or inspect.isroutine(attr):
                kind, doc, sig = "method", own_doc(attr), signature(attr)
            elif isinstance(raw, property) or inspect.isgetsetdescriptor(raw):
                kind, doc, sig = "property", own_doc(raw), ""
            else:
                continue
            # a subclass restating its base class's method (OrderedDict.keys) adds nothing
            inherited = any(getattr(getattr(base, attr_name, None), "__doc__", None) == getattr(attr, "__doc__", 0)
                            for base in cls.__mro__[1:])
            if doc and not inherited:
                add(kind, f"{name}.{attr_name}", doc, sig)

    def add_module(modname, module):
        doc = own_doc(module)
        if doc:
            add("module", modname, doc)
        exported = getattr(module, "__all__", None)
        if isinstance(exported, (list, tuple)):
            names = [n for n in exported if isinstance(n, str) and not n.startswith("_")]
        else:
            names, exported = [n for n in dir(module) if not n.startswith("_")], None
        for name in sorted(set(names)):
            try:
                obj = getattr(module, name)
            except Exception:
                continue
            if isinstance(obj, types.ModuleType) or id(obj) in seen:
                continue
            if exported is None and not defined_in(obj, modname):
                continue
            seen.add(id(obj))
            qualname = f"{modname}.{name}"
            if inspect.isclass(obj):
                add_class(qualname, obj)
            elif inspect.isroutine(obj):
                doc = own_doc(obj)
                if doc:
                    add("function", qualname, doc, signature(obj))
            elif exported is not None:  # a documented object such as typing.Optional
                doc = getattr(obj, "__doc__", None)
                if isinstance(doc, str) and doc.strip() and doc != getattr(type(obj), "__doc__", None):
                    add("object", qualname, inspect.cleandoc(doc))

    queue = []
    for top in sorted(sys.stdlib_module_names):
        if not top.startswith("_") and top not in skip:
            queue.append(top)
            if top == "os":
                queue.append("os.path")  # os.path.join, not posixpath.join
    done = set()
    while queue:
        modname = queue.pop(0)
        try:
            module = importlib.import_module(modname)
        except BaseException:
            continue
        if id(module) in done:
            continue
        done.add(id(module))
        if hasattr(module, "__path__") and modname.split(".")[0] not in no_submodules:
            subs = []
            for info in pkgutil.iter_modules(module.__path__, modname + "."):
                last = info.name.rsplit(".", 1)[-1]
                if not last.startswith("_") and last not in ("test", "tests") and last not in skip:
                    subs.append(info.name)
            queue[:0] = sorted(subs)  # right after the package, so `asyncio.gather` wins over `asyncio.tasks.gather`
        try:
            add_module(modname, module)
        except BaseException:
            continue
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(records, f)
    sys.stdout.flush()
    os._exit(0)


def collect_stdlib_docs(timeout_s: float = STDLIB_TIMEOUT_S) -> list[dict[str, str]]:
    """Run _stdlib_docs_child in a fresh, isolated interpreter and return its records."""
    source = inspect.getsource(_stdlib_docs_child)
    with tempfile.TemporaryDirectory(prefix="deepcoder-stdlib-docs-") as tmp:
        out = Path(tmp) / "docs.json"
        code = f"{source}\nimport sys\n_stdlib_docs_child(sys.argv[1], {list(SKIP_MODULES)!r}, {list(NO_SUBMODULES)!r})\n"
        try:
            proc = subprocess.run(
                [sys.executable, "-I", "-B", "-c", code, str(out)], cwd=tmp, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout_s, check=False,
            )
        except subprocess.TimeoutExpired:
            raise RetrievalError(f"collecting stdlib docs took over {timeout_s:.0f}s; "
                                 "set retrieval.include_stdlib: false to skip them") from None
        if proc.returncode != 0 or not out.is_file():
            tail = proc.stderr.decode("utf-8", "replace")[-2000:]
            raise RetrievalError(f"collecting stdlib docs failed (exit {proc.returncode}): {tail}")
        return json.loads(out.read_text(encoding="utf-8"))


def stdlib_passages(records: list[dict[str, str]], max_chars: int) -> list[dict[str, str]]:
    """Records from collect_stdlib_docs as passages: a header line naming the object, then its doc."""
    out = []
    for rec in records:
        name, kind = rec["name"], rec["kind"]
        header = f"{kind} {name}{rec['signature']}"
        for n, chunk in enumerate(split_passages(f"{header}\n\n{rec['doc']}", max_chars), 1):
            pid = f"stdlib:{name}" if n == 1 else f"stdlib:{name}#{n}"
            out.append({"id": pid, "title": name, "text": chunk, "source": "stdlib"})
    return out


# --------------------------------------------------------------------------------------------
# Corpus: the user's documents


def extra_files(paths: list[str]) -> list[tuple[Path, Path]]:
    """(root, file) for every document under retrieval.extra_paths, in a stable order.

    A root is a folder (searched recursively for .md/.txt/.jsonl, hidden entries skipped) or a
    single such file. A missing path is an error; an empty folder is fine.
    """
    found = []
    for raw in paths:
        root = Path(raw).expanduser().resolve()
        if not root.exists():
            raise RetrievalError(f"retrieval.extra_paths: {raw} does not exist (resolved to {root})")
        if root.is_file():
            if root.suffix.lower() not in DOC_SUFFIXES + (".jsonl",):
                raise RetrievalError(f"retrieval.extra_paths: {root} is not a folder, .md, .txt or .jsonl file")
            found.append((root.parent, root))
            continue
        try:
            files = sorted(p for p in root.rglob("*") if p.suffix.lower() in DOC_SUFFIXES + (".jsonl",)
                           and p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
        except OSError as exc:
            raise RetrievalError(f"retrieval.extra_paths: cannot list {root}: {exc}") from None
        found.extend((root, f) for f in files)
    return found


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RetrievalError(f"cannot read retrieval document {path}: {exc}") from None


def document_passages(root: Path, path: Path, max_chars: int) -> list[dict[str, str]]:
    """Passages of one .md/.txt file: markdown split by headings, then everything by paragraphs."""
    rel = path.relative_to(root).as_posix()
    text = _read(path)
    sections = _markdown_sections(text) if path.suffix.lower() != ".txt" else [(None, text)]
    out = []
    for heading, body in sections:
        for chunk in split_passages(body, max_chars):
            out.append({"id": f"doc:{rel}#{len(out) + 1}", "title": heading or path.stem, "text": chunk,
                        "source": str(path)})
    return out


def jsonl_passages(path: Path, max_chars: int) -> list[dict[str, str]]:
    """Passages of a .jsonl file with one {"id"?, "title"?, "text"} object per line."""
    out = []
    for line_no, line in enumerate(_read(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RetrievalError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise RetrievalError(f'{path}:{line_no}: each line must be an object with a string "text"')
        doc_id = str(row.get("id", line_no))
        title = str(row.get("title") or doc_id)
        for n, chunk in enumerate(split_passages(row["text"], max_chars), 1):
            pid = f"jsonl:{path.name}:{doc_id}" if n == 1 else f"jsonl:{path.name}:{doc_id}#{n}"
            out.append({"id": pid, "title": title, "text": chunk, "source": str(path)})
    return out


def build_corpus(config: RetrievalConfig) -> list[dict[str, str]]:
    """Every passage the config asks for, with unique ids."""
    max_chars = config.max_passage_chars
    passages: list[dict[str, str]] = []
    if config.include_pydoc_topics:
        passages += topic_passages(max_chars)
    if config.include_stdlib:
        passages += stdlib_passages(collect_stdlib_docs(), max_chars)
    for root, path in extra_files(config.extra_paths):
        if path.suffix.lower() == ".jsonl":
            passages += jsonl_passages(path, max_chars)
        else:
            passages += document_passages(root, path, max_chars)
    # Two folders may hold the same relative path, a jsonl may repeat an id: suffix repeats.
    counts: dict[str, int] = {}
    for p in passages:
        counts[p["id"]] = counts.get(p["id"], 0) + 1
        if counts[p["id"]] > 1:
            log = logger.debug if p["source"] == "stdlib" else logger.warning  # stdlib: unittest.main is both
            log("retrieval: duplicate passage id %s (from %s); renamed", p["id"], p["source"])
            p["id"] = f"{p['id']}~{counts[p['id']]}"
    return passages


# --------------------------------------------------------------------------------------------
# The index


def index_key(config: RetrievalConfig) -> str:
    """Hash of everything that changes the corpus: Python, the corpus settings, the extra files."""
    files = []
    for _, path in extra_files(config.extra_paths):
        try:
            st = path.stat()
        except OSError as exc:
            raise RetrievalError(f"cannot read retrieval document {path}: {exc}") from None
        files.append([str(path), st.st_mtime_ns, st.st_size])
    payload = {
        "format": INDEX_FORMAT,
        "python": sys.version,
        "implementation": sys.implementation.name,
        "platform": sys.platform,
        "bm25s": bm25s.__version__,
        "stdlib": config.include_stdlib,
        "topics": config.include_pydoc_topics,
        "max_passage_chars": config.max_passage_chars,
        "extra_paths": [str(Path(p).expanduser().resolve()) for p in config.extra_paths],
        "files": files,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


class RetrievalIndex:
    """A BM25 index over passages, loaded from or saved to the on-disk cache."""

    def __init__(self, config: RetrievalConfig, bm25: bm25s.BM25, passages: list[dict[str, str]],
                 key: str, path: Path, from_cache: bool, seconds: float) -> None:
        self.config = config
        self.key = key
        self.path = path  # the cache folder
        self.from_cache = from_cache  # False when this call built the index
        self.seconds = seconds  # build or load time
        self._bm25 = bm25
        self._vocab: dict[str, int] = bm25.vocab_dict
        self._passages = passages

    @classmethod
    def load_or_build(cls, config: RetrievalConfig, cache_dir: str | Path, *,
                      show_progress: bool = False) -> "RetrievalIndex":
        """The cached index for this config, building (and caching) it first if needed."""
        return cls._load_or_build(config, Path(cache_dir).expanduser(), index_key(config), show_progress)

    @classmethod
    def _load_or_build(cls, config: RetrievalConfig, cache_dir: Path, key: str,
                       show_progress: bool) -> "RetrievalIndex":
        root = cache_dir / "retrieval"
        final = root / key
        if final.exists():
            try:
                return cls._load(config, final, key)
            except Exception as exc:  # a damaged cache costs a rebuild, not a crash
                logger.warning("retrieval: cache %s unreadable (%s); rebuilding", final, exc)
                trash = root / f".trash-{key}-{os.getpid()}-{time.monotonic_ns()}"
                try:
                    final.rename(trash)
                    shutil.rmtree(trash, ignore_errors=True)
                except OSError:
                    pass

        start = time.perf_counter()
        passages = build_corpus(config)
        if not passages:
            raise RetrievalError("the retrieval corpus is empty: enable include_stdlib or include_pydoc_topics, "
                                 "or point extra_paths at documents")
        corpus_tokens = [tokenize(f"{p['title']}\n{p['text']}") for p in passages]
        bm25 = bm25s.BM25()
        bm25.index(corpus_tokens, show_progress=show_progress)
        seconds = time.perf_counter() - start
        logger.info("retrieval: indexed %d passages in %.1fs", len(passages), seconds)

        # Write everything into a temp folder, then rename it into place in one step: readers
        # see either no cache or a complete one, even if we crash half way.
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=root))
        try:
            bm25.save(str(tmp / "bm25"), show_progress=False)
            with open(tmp / "passages.jsonl", "w", encoding="utf-8") as f:
                for p in passages:
                    f.write(json.dumps(p, ensure_ascii=False) + "\n")
            meta = {"key": key, "format": INDEX_FORMAT, "passages": len(passages), "python": sys.version,
                    "build_seconds": round(seconds, 3), "config": config.model_dump(mode="json")}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
            try:
                tmp.rename(final)
            except OSError:  # another process published the same key first; theirs is as good
                logger.info("retrieval: cache %s appeared while building; keeping it", final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return cls(config, bm25, passages, key, final, from_cache=False, seconds=seconds)

    @classmethod
    def _load(cls, config: RetrievalConfig, path: Path, key: str) -> "RetrievalIndex":
        start = time.perf_counter()
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") != INDEX_FORMAT or meta.get("key") != key:
            raise ValueError("cache written by another version")
        bm25 = bm25s.BM25.load(str(path / "bm25"), load_corpus=False, show_progress=False)
        with open(path / "passages.jsonl", encoding="utf-8") as f:
            passages = [json.loads(line) for line in f]
        if not len(passages) == meta["passages"] == bm25.scores["num_docs"]:
            raise ValueError("passage count does not match the index")
        seconds = time.perf_counter() - start
        logger.info("retrieval: loaded %d passages from %s in %.2fs", len(passages), path, seconds)
        return cls(config, bm25, passages, key, path, from_cache=True, seconds=seconds)

    def with_config(self, config: RetrievalConfig) -> "RetrievalIndex":
        """The same index with other k limits (default_k/max_k do not change the corpus)."""
        return RetrievalIndex(config, self._bm25, self._passages, self.key, self.path, self.from_cache, self.seconds)

    def __len__(self) -> int:
        return len(self._passages)

    def passages(self) -> list[dict[str, str]]:
        """Every passage record (id, title, text, source), in index order: for question generators."""
        return list(self._passages)

    def search(self, query: str, k: int | None = None) -> list[Passage]:
        """The k best passages for query, best first. Passages sharing no word with it are left out."""
        if not isinstance(query, str) or not query.strip():
            raise RetrievalError("the retrieval query is empty; ask in words, e.g. 'greatest common divisor'")
        if k is None:
            k = self.config.default_k
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise RetrievalError(f"k must be a whole number of passages, at least 1; got {k!r}")
        k = min(int(k), self.config.max_k, len(self._passages))
        ids = [self._vocab[t] for t in tokenize(query) if t in self._vocab]
        if not ids:
            return []
        scores = self._bm25.get_scores_from_ids(ids)
        top = np.argsort(-scores, kind="stable")[:k]  # stable: ties keep corpus order
        return [Passage(**self._passages[i], score=float(scores[i])) for i in top if scores[i] > 0]


# --------------------------------------------------------------------------------------------
# Process-wide access for the agent's tool

_INDEXES: dict[tuple[str, str], RetrievalIndex] = {}
_INDEXES_LOCK = threading.Lock()


def get_index(config: "Config") -> RetrievalIndex:
    """The index for config, loaded once per process (and built once per machine)."""
    cache_dir = Path(config.paths.cache_dir).expanduser().resolve()
    key = index_key(config.retrieval)
    with _INDEXES_LOCK:  # one build at a time; others wait for it instead of building too
        index = _INDEXES.get((str(cache_dir), key))
        if index is None:
            index = RetrievalIndex._load_or_build(config.retrieval, cache_dir, key, show_progress=False)
            _INDEXES[(str(cache_dir), key)] = index
    return index if index.config == config.retrieval else index.with_config(config.retrieval)


def retrieve(query: str, k: int | None = None, *, config: "Config | None" = None) -> list[Passage]:
    """Search the docs: what the agent's retrieve tool calls."""
    if config is None:
        from deepcoder.config import load_config

        config = load_config()
    return get_index(config).search(query, k)


def _clip(text: str, limit: int) -> str:
    """text cut to about limit characters at a line or word boundary."""
    if len(text) <= limit:
        return text
    cut = text.rfind("\n", 0, limit)
    if cut < limit // 2:
        cut = text.rfind(" ", 0, limit)
    if cut < limit // 2:
        cut = limit
    return text[:cut].rstrip() + " […]"


def format_passages(passages: list[Passage], max_chars: int = OBSERVATION_CHARS) -> str:
    """The tool observation: numbered passages, each "[n] <id> — <title>" then its (clipped) text."""
    if not passages:
        return "No matching passages found. Try other words, e.g. a module or function name."
    blocks = [f"[{n}] {p.id} — {p.title}\n{_clip(p.text.strip(), max_chars)}" for n, p in enumerate(passages, 1)]
    return "\n\n".join(blocks)


def _is_relevant(pid: str, relevant: list[str]) -> bool:
    """pid equals an entry or extends it at a name boundary (stdlib:re matches stdlib:re.sub, not
    stdlib:reprlib)."""
    for r in relevant:
        if pid == r or (pid.startswith(r) and (r[-1] in ".#:/" or pid[len(r)] in ".#:/~")):
            return True
    return False


def recall_at_k(index: RetrievalIndex, questions: list[dict[str, Any]], k: int = 5) -> dict[str, Any]:
    """Share of questions with a relevant passage in the top k, and the questions that missed."""
    if not questions:
        raise RetrievalError("recall_at_k needs at least one question")
    misses = []
    for q in questions:
        got = [p.id for p in index.search(q["question"], k)]
        if not any(_is_relevant(pid, q["relevant"]) for pid in got):
            misses.append({"question": q["question"], "relevant": q["relevant"], "got": got})
    return {"recall@k": 1 - len(misses) / len(questions), "k": k, "n": len(questions), "misses": misses}
