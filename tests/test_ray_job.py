"""`ray job submit` runs the pipeline job on a `ray start --head` cluster (its own module: it
starts and stops a separate cluster)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

DATA_ONLY = ["train", "evaluate", "report", "serve"]


@pytest.mark.timeout(600)
def test_pipeline_runs_as_a_ray_job(tmp_path, cache_dir) -> None:
    """`ray start --head`, then `ray job submit --working-dir . -- python jobs/pipeline.py ...`:
    the job joins the cluster through RAY_ADDRESS; the CLI authenticates with the cluster's token."""
    repo = Path(__file__).resolve().parents[1]
    ray = str(Path(sys.executable).parent / "ray")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(DEEPCODER_PATHS__CACHE_DIR=cache_dir, PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}")
    # Ray 2.60 authenticates local clusters with a token: the cluster and the CLI must both run in
    # token mode and read the same token (here from a file of our own, not ~/.ray/auth_token).
    token_file = tmp_path / "auth_token"
    token_file.write_text(secrets.token_hex(32))
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file))
    temp = tempfile.mkdtemp(prefix="rj-", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    out = tmp_path / "job-out"
    port = 6390 + os.getpid() % 50
    dash = 8270 + os.getpid() % 50
    start = subprocess.run([ray, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=true",
                            f"--dashboard-port={dash}", f"--temp-dir={temp}", "--disable-usage-stats"],
                           env=env, capture_output=True, text=True, timeout=180)
    assert start.returncode == 0, start.stdout + start.stderr
    try:
        submit_env = {**env, "RAY_ADDRESS": f"http://127.0.0.1:{dash}"}
        for _ in range(30):  # the dashboard's job API comes up a moment after `ray start` returns
            if subprocess.run([ray, "job", "list"], env=submit_env, capture_output=True,
                              timeout=60).returncode == 0:
                break
            time.sleep(2)
        job = subprocess.run(
            [ray, "job", "submit", "--working-dir", str(repo), "--", "python", "jobs/pipeline.py",
             "--profile", "demo", "--limit", "4", "--skip", ",".join(DATA_ONLY), "--out", str(out)],
            env=submit_env, capture_output=True, text=True, timeout=480)
        assert job.returncode == 0 and "succeeded" in job.stdout, job.stdout[-3000:] + job.stderr[-2000:]
        summary = json.loads((out / "summary.json").read_text())
        assert summary["results"]["generate"]["written"] == 4
        assert summary["results"]["dataset"]["rows_verified"] > 0
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)
