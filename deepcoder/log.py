"""One logging setup for every entry point, with secrets redacted from every record.

The level comes from the config (``logging.level``) or ``DEEPCODER_LOG_LEVEL``. Redaction works
on the final message, so a key that reaches a log line through an exception or a repr is
masked too: known secret values are replaced, and so are strings shaped like API keys.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Iterable

from rich.console import Console
from rich.logging import RichHandler

MASK = "**********"
# Shapes of credentials: Groq, OpenAI/DeepSeek, wandb (40 hex), bearer tokens.
_SECRET_PATTERNS = [
    re.compile(r"gsk_[A-Za-z0-9]{8,}"),
    re.compile(r"sk-[A-Za-z0-9_\-]{16,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{8,}"),
    re.compile(r"(?i)((?:api[_-]?key|token|secret|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{6,}"),
]
_KNOWN_SECRETS: set[str] = set()


def register_secrets(values: Iterable[str | None]) -> None:
    """Values that must never appear in logs (from the config and the environment)."""
    for value in values:
        if value and len(value) >= 6:
            _KNOWN_SECRETS.add(value)


def redact(text: str) -> str:
    """``text`` with every known secret and key-shaped string masked."""
    for secret in sorted(_KNOWN_SECRETS, key=len, reverse=True):
        text = text.replace(secret, MASK)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + MASK, text)
    return text


_base_factory = logging.getLogRecordFactory()


def _redacting_factory(*args, **kwargs) -> logging.LogRecord:
    """Masks secrets when a record is made, so every handler (ours, Ray's, pytest's) sees it clean.

    Runs only for records that pass the level check; exception text is folded into the message.
    """
    record = _base_factory(*args, **kwargs)
    message = record.getMessage()
    if record.exc_info:
        message += "\n" + logging.Formatter().formatException(record.exc_info)
        record.exc_info = None
        record.exc_text = None
    record.msg = redact(message)
    record.args = None
    return record


def setup_logging(level: str | None = None, secrets: Iterable[str | None] = ()) -> None:
    """Configure the root logger once; later calls only change the level and add secrets."""
    register_secrets(secrets)
    register_secrets(os.environ.get(name) for name in ("GROQ_API_KEY", "WANDB_API_KEY", "DEEPSEEK_API_KEY",
                                                        "OPENAI_API_KEY", "DEEPCODER_API_KEYS"))
    level = (level or os.environ.get("DEEPCODER_LOG_LEVEL") or "INFO").upper()
    logging.setLogRecordFactory(_redacting_factory)
    root = logging.getLogger()
    if not any(getattr(h, "_deepcoder", False) for h in root.handlers):
        handler = RichHandler(console=Console(stderr=True), rich_tracebacks=False, show_path=False, markup=False)
        handler._deepcoder = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "urllib3", "filelock", "bm25s"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
