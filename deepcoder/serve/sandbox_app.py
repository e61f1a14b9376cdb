"""The sandbox as a Ray Serve deployment: POST {"code", "stdin"?, "timeout_s"?} -> ExecResult JSON.

The agent application composes this deployment through a handle; on its own it lets a cluster
run untrusted code on CPU nodes. It listens where Serve's proxy listens (127.0.0.1 by default).
"""

from __future__ import annotations

import json

from pydantic import BaseModel, Field, ValidationError
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from deepcoder.config import load_config
from deepcoder.tools.sandbox import SandboxError, SandboxInputError, get_sandbox


class RunRequest(BaseModel):
    code: str = Field(max_length=1_000_000)
    stdin: str | None = Field(None, max_length=1_000_000)
    timeout_s: float | None = Field(None, gt=0, le=60)


@serve.deployment(
    ray_actor_options={"num_cpus": 0.5},
    autoscaling_config={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 4},
)
class ToolSandbox:
    def __init__(self, profile: str | None = None) -> None:
        self.config = load_config(profile)
        self.sandbox = get_sandbox(self.config.sandbox)
        self.sandbox.warm_up()

    async def run(self, code: str, stdin: str | None = None, timeout_s: float | None = None) -> dict:
        """For DeploymentHandle callers (the agent app)."""
        result = await self.sandbox.arun(code, stdin=stdin, timeout_s=timeout_s)
        return result.to_dict()

    async def __call__(self, request: Request) -> JSONResponse:
        try:
            body = RunRequest.model_validate(await request.json())
        except (ValidationError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            return JSONResponse({"error": "invalid request", "detail": str(exc)[:500]}, status_code=422)
        try:
            return JSONResponse(await self.run(body.code, body.stdin, body.timeout_s))
        except SandboxInputError as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        except SandboxError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)


app = ToolSandbox.bind()
