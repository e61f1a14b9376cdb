"""`deepcoder serve`: the subcommands exist, and (slow) `serve smoke` answers a real request end to end."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

DEEPCODER = shutil.which("deepcoder", path=str(Path(sys.executable).parent)) or "deepcoder"


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("DEEPCODER_") and k != "RAY_ADDRESS"}


def test_serve_help_lists_run_and_smoke() -> None:
    out = subprocess.run([DEEPCODER, "serve", "--help"], capture_output=True, text=True, env=_env(), timeout=120)
    assert out.returncode == 0 and "run" in out.stdout and "smoke" in out.stdout
    out = subprocess.run([DEEPCODER, "serve", "smoke", "--help"], capture_output=True, text=True, env=_env(),
                         timeout=120)
    assert "--model" in out.stdout and "--base-model" in out.stdout


@pytest.mark.slow
def test_serve_smoke_with_the_embedded_model(tmp_path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = subprocess.run([DEEPCODER, "serve", "smoke", "--profile", "demo", "--port", str(port), "--max-steps", "1",
                          "--check-limits"],
                         capture_output=True, text=True, env=_env(), timeout=900, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    summary, _ = json.JSONDecoder().raw_decode(out.stdout[out.stdout.index("{"):])
    assert summary["ok"] is True and summary["status_code"] == 200 and summary["served_model"] == "smollm2"
    assert summary["steps"] == 1 and all(summary["checks"].values()), summary
