"""The `deepcoder` console script, run as a user would (a real subprocess)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEEPCODER = shutil.which("deepcoder", path=str(Path(sys.executable).parent)) or "deepcoder"


def run(*args: str, env: dict | None = None, stdin: str | None = None, cwd=None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("DEEPCODER_") and k not in ("GROQ_API_KEY", "WANDB_API_KEY", "WANDB_MODE")}
    return subprocess.run([DEEPCODER, *args], capture_output=True, text=True, timeout=300,
                          env={**base, "COLUMNS": "200", **(env or {})}, input=stdin, cwd=cwd)


def test_config_show_masks_secrets() -> None:
    key = "gsk_cli_canary_0123456789"
    result = run("config", "show", "--profile", "demo", "--format", "json", env={"GROQ_API_KEY": key})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["profile"] == "demo" and data["teacher"]["api_key"] == "**********"
    assert key not in result.stdout + result.stderr


def test_config_error_is_one_clear_line(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  lamda_act: 2\n")
    result = run("config", "show", "--config", str(bad))
    assert result.returncode == 2
    assert "unknown key 'training.lamda_act'" in result.stdout and str(bad) in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_sandbox_run_and_missing_file(tmp_path) -> None:
    script = tmp_path / "hello.py"
    script.write_text("import sys\nprint('hi from the sandbox')\nsys.exit(3)\n")
    result = run("sandbox", "run", str(script), "--json")
    data = json.loads(result.stdout)
    assert result.returncode == 3 and data["stdout"] == "hi from the sandbox\n" and data["exit_code"] == 3
    result = run("sandbox", "run", str(tmp_path / "nope.py"))
    assert result.returncode == 2 and "no such file" in result.stdout
    result = run("sandbox", "run", "-", stdin="")
    assert result.returncode == 2 and "code is empty" in result.stdout


def test_segment_command(tmp_path) -> None:
    text = tmp_path / "t.txt"
    text.write_text("Thought: a\nAction: finish\nAction Input: 1\n")
    result = run("segment", str(text), "--json")
    spans = json.loads(result.stdout)["spans"]
    assert [s["kind"] for s in spans] == ["reason", "act"]


def test_retrieve_command(cache_dir) -> None:
    result = run("retrieve", "greatest common divisor of integers", "-k", "3", "--json",
                 env={"DEEPCODER_PATHS__CACHE_DIR": cache_dir})
    assert result.returncode == 0, result.stderr
    ids = [p["id"] for p in json.loads(result.stdout)]
    assert "stdlib:math.gcd" in ids


def test_pipeline_and_demo_commands_exist() -> None:
    """The pipeline itself is tested in test_pipeline.py (fast stages) and test_pipeline_embedded.py."""
    for command in ("pipeline", "demo", "experiment"):
        assert run(command, "--help").returncode == 0


@pytest.mark.parametrize("args", [["--help"], ["--version"]])
def test_help_and_version(args) -> None:
    assert run(*args).returncode == 0
