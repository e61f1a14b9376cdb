"""Start the agent app, answer one real request over HTTP, stop: ``deepcoder serve smoke``, the
pipeline's serve stage and ``verify --phase 5`` all use ``serve_smoke``."""

from __future__ import annotations

import secrets
import socket
import time
from typing import Any

from deepcoder.config import Config

# Small CPU reservations: the smoke check must fit next to whatever else holds the cluster.
SMOKE_OPTIONS = {"AgentIngress": {"ray_actor_options": {"num_cpus": 0.1}},
                 "StudentModel": {"ray_actor_options": {"num_cpus": 0.5}},
                 "ToolSandbox": {"ray_actor_options": {"num_cpus": 0.2}},
                 "Retriever": {"ray_actor_options": {"num_cpus": 0.1}}}


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout_s: float, poll_s: float = 0.5) -> bool:
    """Poll ``GET /readyz`` until the app answers 200 (True) or ``timeout_s`` passes (False)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=10).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(poll_s)
    return False


def serve_smoke(config: Config, *, model: str | None = None, port: int | None = None,
                prompt: str = "What is 2**10? Use the python tool.", kind: str = "math", max_steps: int = 2,
                timeout_s: float = 600.0, check_limits: bool = False) -> dict[str, Any]:
    """Serve ``model`` (default ``serve.model``) with a throwaway key, post one agent run, stop.

    Returns ``ok`` (HTTP 200 and a run that ended as finished or max_steps; with
    ``check_limits`` also 401 without a key, 422 for too many steps, 429 over a key's limit),
    ``detail``, ``status_code``, ``seconds`` (the request), ``run_status`` and the run summary.
    Starts Ray when it is not up (and stops it again); never leaves the app running.
    """
    import httpx
    import ray
    from pydantic import SecretStr
    from ray import serve

    from deepcoder.cluster import init_ray
    from deepcoder.log import register_secrets
    from deepcoder.serve.app import build_app
    from deepcoder.serve.auth import key_id

    config = config.model_copy(deep=True)
    key, limited = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    register_secrets([key, limited])
    config.serve.api_keys = [*config.serve.api_keys, SecretStr(key), SecretStr(limited)]
    config.serve.key_requests_per_minute = {**config.serve.key_requests_per_minute, key_id(limited): 1}
    if model:
        config.serve.model = model
    host = config.serve.host
    port = port or _free_port(host)
    url = f"http://{host}:{port}"
    started_ray = init_ray(config, log_to_driver=False)
    result: dict[str, Any] = {"ok": False, "url": url, "model": config.serve.model}
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(build_app(config, actor_options=SMOKE_OPTIONS), name="agent", route_prefix="/")
        if not wait_ready(url, timeout_s):
            result["detail"] = f"the app was not ready within {timeout_s:g}s"
            return result
        auth = {"Authorization": f"Bearer {key}"}
        t0 = time.monotonic()
        response = httpx.post(f"{url}/v1/agent/runs", headers=auth, timeout=timeout_s,
                              json={"prompt": prompt, "kind": kind, "max_steps": max_steps})
        result["seconds"] = time.monotonic() - t0
        result["status_code"] = response.status_code
        run = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        result.update(run_status=run.get("status"), served_model=run.get("model"), steps=len(run.get("steps", [])),
                      final_answer=run.get("final_answer"), valid_finish=run.get("valid_finish"),
                      error=run.get("error"))
        problems = []
        if response.status_code != 200 or run.get("status") not in ("finished", "max_steps"):
            problems.append(f"run: HTTP {response.status_code}, status {run.get('status')}, error {run.get('error')}")
        if check_limits:
            checks = {
                "401 without a key": httpx.get(f"{url}/v1/models", timeout=30).status_code == 401,
                "422 over serve.max_steps": httpx.post(
                    f"{url}/v1/agent/runs", headers=auth, timeout=30,
                    json={"prompt": "x", "max_steps": config.serve.max_steps + 1}).status_code == 422,
                "429 over a key's limit": [httpx.get(f"{url}/v1/models", timeout=30,
                                                     headers={"Authorization": f"Bearer {limited}"}).status_code
                                           for _ in range(2)] == [200, 429],
                "metrics": "deepcoder_http_requests_total" in httpx.get(f"{url}/metrics", timeout=30).text,
            }
            result["checks"] = checks
            problems += [f"failed: {name}" for name, passed in checks.items() if not passed]
        result["ok"] = not problems
        result["detail"] = "; ".join(problems) if problems else (
            f"HTTP 200 in {result['seconds']:.1f}s: run {run.get('status')} after {result['steps']} step(s)"
            + (", 401/422/429 and metrics checked" if check_limits else ""))
        return result
    except Exception as exc:  # noqa: BLE001 - a smoke check reports, it does not crash its caller
        result["detail"] = f"{type(exc).__name__}: {exc}"[:500]
        return result
    finally:
        try:
            serve.shutdown()
        finally:
            if started_ray:
                ray.shutdown()
