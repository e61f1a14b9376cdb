"""One logging setup; secrets never reach a log line, whatever path they take."""

from __future__ import annotations

import logging

from deepcoder.log import MASK, redact, register_secrets, setup_logging


def test_known_and_shaped_secrets_are_masked(caplog) -> None:
    setup_logging("INFO", ["my-config-secret-value"])
    log = logging.getLogger("deepcoder.test")
    with caplog.at_level(logging.INFO):
        log.info("config key %s", "my-config-secret-value")
        log.info("groq gsk_abcdefghijklmnop123 openai sk-abcdefghijklmnopqrstu")
        log.info("header Authorization: Bearer tok_abcdefgh12345")
        try:
            raise RuntimeError("failed with api_key=zzzsecretzzz999")
        except RuntimeError:
            log.exception("request failed")
    text = caplog.text
    for secret in ("my-config-secret-value", "gsk_abcdefghijklmnop123", "sk-abcdefghijklmnopqrstu",
                   "tok_abcdefgh12345", "zzzsecretzzz999"):
        assert secret not in text
    assert text.count(MASK) >= 5
    assert "RuntimeError" in text  # the exception is still reported


def test_level_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("DEEPCODER_LOG_LEVEL", "warning")
    setup_logging()
    assert logging.getLogger().level == logging.WARNING
    setup_logging("INFO")


def test_redact_plain_text() -> None:
    register_secrets(["another-secret-xyz"])
    assert redact("x another-secret-xyz y") == f"x {MASK} y"
    assert redact("nothing to hide") == "nothing to hide"
