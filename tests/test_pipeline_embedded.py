"""`make demo` for real (slow): the whole pipeline on the embedded default, then `verify --all`.

What CI runs here is what a newcomer's `make demo` runs: the emulator's reference teacher,
generation on Ray actors, QC, the Ray Data dataset, SmolLM2-135M LoRA training on CPU, evaluation
of teacher, base and SAD student, the report, and one real request to the served student.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepcoder.pipeline import STAGES


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_demo_pipeline_end_to_end_then_every_phase_verifies(tmp_path, cache_dir) -> None:
    deepcoder = str(Path(sys.executable).parent / "deepcoder")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPCODER_") and k != "RAY_ADDRESS"}
    env.update(DEEPCODER_PATHS__CACHE_DIR=cache_dir, DEEPCODER_PATHS__OUTPUT_DIR=str(tmp_path / "runs"),
               DEEPCODER_WANDB__MODE="disabled")
    out = tmp_path / "runs" / "pipeline"
    started = time.monotonic()
    result = subprocess.run([deepcoder, "pipeline", "--profile", "demo"], env=env, capture_output=True, text=True,
                            timeout=2400)
    wall = time.monotonic() - started
    print(f"pipeline wall time: {wall:.0f}s")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert f"report: {out / 'report.md'}" in result.stdout.replace("\n", "")
    summary = json.loads((out / "summary.json").read_text())
    assert {name: status for name, (status, _) in summary["timings"].items()} == {s: "ran" for s in STAGES}
    comparison = summary["results"]["evaluate"]["comparison"]
    assert comparison["format_validity"]["base"] is not None and comparison["format_validity"]["sad"] is not None
    assert "Base vs SAD student" in (out / "report.md").read_text()
    assert summary["results"]["serve"]["status_code"] == 200

    again = subprocess.run([deepcoder, "pipeline", "--profile", "demo", "--skip", "serve"], env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "(done, skipped)" in again.stdout

    verify = subprocess.run([deepcoder, "verify", "--profile", "demo", "--all"], env=env, capture_output=True,
                            text=True, timeout=1200)
    print(verify.stdout[-6000:])
    assert verify.returncode == 0, verify.stdout[-6000:] + verify.stderr[-3000:]
