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

from deepcoder.config import SandboxConfig, load_config
from deepcoder.tools.sandbox import SandboxError, SandboxInputError, get_sandbox


class RunRequest(BaseModel):
    code: str = Field(max_length=1_000_000)
    stdin: str | None = Field(None, max_length=1_000_000)
    timeout_s: float | None = Field(None, gt=0, le=60)


# Ray workers carry gRPC threads; with gRPC's fork support on, a fork for a sandbox can restart
# gRPC's poller in the child before exec, which then aborts and writes into the sandbox's output.
# The sandbox never needs gRPC in a forked child, so its replicas run with fork support off.
SANDBOX_ENV = {"GRPC_ENABLE_FORK_SUPPORT": "0"}


@serve.deployment(
    ray_actor_options={"num_cpus": 0.5, "runtime_env": {"env_vars": SANDBOX_ENV}},
    autoscaling_config={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 4},
)
class ToolSandbox:
    """The shared sandbox. ``sandbox`` (the core ``SandboxConfig``) wins over ``profile``'s."""

    def __init__(self, profile: str | None = None, sandbox: SandboxConfig | None = None) -> None:
        self.limits = sandbox or load_config(profile).sandbox
        self.sandbox = get_sandbox(self.limits)
        self.sandbox.warm_up()

    async def run(self, code: str, stdin: str | None = None, timeout_s: float | None = None) -> dict:
        """For DeploymentHandle callers: the ExecResult as a dict; raises on bad input or a broken sandbox."""
        result = await self.sandbox.arun(code, stdin=stdin, timeout_s=timeout_s)
        return result.to_dict()

    async def execute(self, code: str, stdin: str | None = None, timeout_s: float | None = None) -> dict:
        """Like ``run``, but failures come back as data: ``{"result": ExecResult dict}``, or
        ``{"error": "input" | "sandbox", "message": ...}`` (the agent app's python tool uses this)."""
        try:
            return {"result": await self.run(code, stdin, timeout_s)}
        except SandboxInputError as exc:
            return {"error": "input", "message": str(exc)}
        except SandboxError as exc:
            return {"error": "sandbox", "message": str(exc)}

    def ping(self) -> dict:
        return {"ok": True, "timeout_s": self.limits.timeout_s, "memory_mb": self.limits.memory_mb}

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
