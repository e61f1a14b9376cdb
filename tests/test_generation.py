"""Phase 1 end to end: the real groq client, the emulator's reference teacher, Ray actors, the store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from deepcoder.config import load_config
from deepcoder.data.store import read_keys
from deepcoder.teacher.generate import REFERENCE_LABEL, generate

DEEPCODER = shutil.which("deepcoder", path=str(Path(sys.executable).parent)) or "deepcoder"


def demo_config(cache_dir: str, **generation):
    return load_config("demo", env={}, overrides={
        "paths": {"cache_dir": cache_dir},
        "generation": {"max_problems": None, **generation},
        "logging": {"level": "WARNING"},
    })


def test_hundred_trajectories_mostly_verified(ray_cluster, cache_dir, tmp_path) -> None:
    """The seed's check: 100 trajectories from the emulator-backed teacher, >= 90% verified."""
    out = tmp_path / "trajectories.jsonl"
    summary = generate(demo_config(cache_dir, max_problems=100), out, show_progress=False)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == summary.written == 100 and summary.lost == 0
    verified = sum(r["verified"] for r in records)
    print(f"verified {verified}/100; sources {Counter(r['source'] for r in records)}")
    assert verified >= 90
    assert {r["task"]["kind"] for r in records} == {"code", "math", "retrieval"}
    assert all(r["teacher_model"] == REFERENCE_LABEL and r["config_hash"] for r in records)
    assert all(r["usage"]["total_tokens"] > 0 and r["messages"] for r in records)
    assert all(step["raw"] for r in records for step in r["steps"])
    # resuming a complete run does nothing
    again = generate(demo_config(cache_dir, max_problems=100), out, resume=True, show_progress=False)
    assert again.skipped == 100 and again.written == 0 and len(read_keys(out)) == 100


def test_kill_minus_nine_then_resume_loses_and_duplicates_nothing(cache_dir, tmp_path) -> None:
    out = tmp_path / "t.jsonl"
    env = {**os.environ, "DEEPCODER_PATHS__CACHE_DIR": cache_dir, "DEEPCODER_EMULATOR__LATENCY_S": "0.3",
           "DEEPCODER_GENERATION__MAX_PROBLEMS": "null", "DEEPCODER_LOG_LEVEL": "WARNING"}
    args = [DEEPCODER, "generate", "--profile", "demo", "--limit", "40", "--out", str(out)]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if out.exists() and len(out.read_bytes().splitlines()) >= 8:
                break
            assert proc.poll() is None, "generation ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("generation wrote nothing in 120 s")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # driver, its Ray cluster and the emulator thread, mid-run
        proc.wait()
    first = read_keys(out)
    assert 8 <= len(first) < 40 and len(set(first)) == len(first)

    env["DEEPCODER_EMULATOR__LATENCY_S"] = "0"
    resumed = subprocess.run(args + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    keys = read_keys(out)
    assert len(keys) == 40 and len(set(keys)) == 40  # nothing lost, nothing twice
    assert keys[:len(first)] == first  # what was stored before the kill was kept as it was


def test_existing_output_without_resume_is_refused(cache_dir, tmp_path) -> None:
    out = tmp_path / "t.jsonl"
    out.write_text('{"partial": true}\n')
    env = {**os.environ, "DEEPCODER_PATHS__CACHE_DIR": cache_dir}
    result = subprocess.run([DEEPCODER, "generate", "--profile", "demo", "--limit", "2", "--out", str(out)],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--resume" in result.stdout
    assert out.read_text() == '{"partial": true}\n'


def test_missing_key_outside_the_demo_is_a_clear_error(tmp_path) -> None:
    from deepcoder.teacher.client import TeacherError

    config = load_config("default", env={})
    with pytest.raises(TeacherError, match="GROQ_API_KEY"):
        generate(config, tmp_path / "t.jsonl", tasks=[], show_progress=False)
