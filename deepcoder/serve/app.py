"""The agent application: the distilled student as a tool-using agent behind an HTTP API.

Deployments (composed with handles; each has its own resources and autoscaling):

* ``AgentIngress`` (FastAPI via ``serve.ingress``): auth, rate limits, validation, the cache,
  metrics, sessions; runs the one ``Agent`` loop with a ``HandlePolicy`` and remote tools;
* ``StudentModel`` (one or more, by served id): generation (``deepcoder.serve.deployments``);
* ``ToolSandbox``: the shared sandbox (``deepcoder.serve.sandbox_app``);
* ``Retriever``: the BM25 index; ``SessionStore``: multi-turn state.

``serve run serve_config.yaml`` / ``serve deploy serve_config.yaml`` build it with ``build``;
Python callers use ``build_app(config)``. API reference: docs/deploy.md and /docs.
"""

# No `from __future__ import annotations`: the route methods may be pickled by value, and FastAPI
# must see their real annotation objects there, not names to resolve.

import asyncio
import json
import logging
import os
import time
import uuid
from typing import Any, AsyncIterator, Awaitable, Callable

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPBearer
from ray import serve
from ray.serve.handle import DeploymentHandle

from deepcoder import __version__
from deepcoder.agent.format import extract_code
from deepcoder.agent.grading import checking_program
from deepcoder.agent.loop import Agent, AgentLimits
from deepcoder.agent.prompts import system_prompt
from deepcoder.agent.types import Step, Task, Trajectory
from deepcoder.config import Config, load_config
from deepcoder.log import redact
from deepcoder.serve.api import (
    ChatCompletionRequest,
    ErrorInfo,
    ErrorResponse,
    RunRequest,
    RunResponse,
    SessionCreate,
    SessionOut,
    StepOut,
    TurnRequest,
)
from deepcoder.serve.auth import AuthError, KeyStore, RateLimiter
from deepcoder.serve.cache import ResponseCache, cache_key
from deepcoder.serve.deployments import Retriever, SessionStore, StudentModel, model_id
from deepcoder.serve.metrics import Metrics
from deepcoder.serve.remote import HandlePolicy, remote_tools, short, track_failures, untrack_failures
from deepcoder.serve.sandbox_app import ToolSandbox

logger = logging.getLogger("deepcoder.serve")

DESCRIPTION = """The distilled DeepCoder student as a tool-using agent (python sandbox, BM25 retrieval).

Send `Authorization: Bearer <key>` on every `/v1` route. Errors are `{"error": {"type", "message", "detail"}}`."""

api = FastAPI(title="DeepCoder agent API", version=__version__, description=DESCRIPTION)
bearer = HTTPBearer(auto_error=False, description="An API key from serve.api_keys_env / serve.api_keys")
AUTH = [Depends(bearer)]  # documents the scheme in /docs; the check itself is AgentIngress._authorize
ERRORS = {401: {"model": ErrorResponse}, 422: {"model": ErrorResponse}, 429: {"model": ErrorResponse}}
_ingress: "AgentIngress | None" = None  # the replica's ingress, for the middleware


class ApiError(HTTPException):
    def __init__(self, status: int, type_: str, message: str, detail: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status, message, headers)
        self.type = type_
        self.info = ErrorInfo(type=type_, message=message, detail=detail)


def _error(status: int, type_: str, message: str, detail: Any = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": ErrorInfo(type=type_, message=message, detail=detail).model_dump()},
                        status_code=status, headers=headers)


@api.exception_handler(ApiError)
async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse({"error": exc.info.model_dump()}, status_code=exc.status_code, headers=exc.headers)


@api.exception_handler(HTTPException)
async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return _error(exc.status_code, kind, str(exc.detail), headers=getattr(exc, "headers", None))


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", "")} for e in exc.errors()]
    message = "; ".join(f"{'.'.join(e['loc'][1:] or e['loc'])}: {e['msg']}" for e in errors) or "invalid request"
    return _error(422, "invalid_request", message, errors)


def _route_of(scope: dict) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path:
        return path
    return "unmatched"


class _Observe:
    """Body-size guard, request metrics and one redacted access-log line per request (pure ASGI:
    cheaper than a BaseHTTPMiddleware, and it sees the matched route's template in the scope)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        ingress = _ingress
        limit = ingress.cfg.max_body_bytes if ingress else 1_000_000
        status = 500
        length = dict(scope.get("headers") or []).get(b"content-length", b"")

        async def send_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if length.isdigit() and int(length) > limit:
                await _error(413, "invalid_request", f"request body over {limit} bytes")(scope, receive, send_status)
            else:
                await self.app(scope, receive, send_status)
        finally:
            elapsed = time.monotonic() - started
            if ingress is not None:
                ingress.metrics.observe_request(_route_of(scope), scope["method"], status, elapsed)
            logger.info(redact(f"{scope['method']} {scope['path']} {status} {elapsed * 1000:.1f}ms "
                               f"key={scope.get('deepcoder.key', '-')}"))


api.add_middleware(_Observe)


def _sse(event: str, data: str) -> str:
    return f"event: {event}\ndata: {data}\n\n"


def _session_prompt(turns: list[dict], prompt: str) -> str:
    if not turns:
        return prompt
    history = "\n\n".join(f"User: {t['prompt']}\nYour final answer: {t.get('final_answer') or '(none: ' + t['status'] + ')'}"
                          for t in turns)
    return f"Earlier turns of this conversation:\n\n{history}\n\nNew request: {prompt}"


@serve.deployment(
    ray_actor_options={"num_cpus": 0.25},
    max_ongoing_requests=128,
    autoscaling_config={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 32},
)
@serve.ingress(api)
class AgentIngress:
    def __init__(self, config: Config, models: dict[str, DeploymentHandle], sandbox: DeploymentHandle,
                 retriever: DeploymentHandle, sessions: DeploymentHandle) -> None:
        import deepcoder.serve.app as module  # the real module: methods may be pickled by value
        from deepcoder.log import register_secrets, setup_logging

        self.config = config
        self.cfg = config.serve
        setup_logging(config.logging.level, config.secrets())
        self.keys = KeyStore.from_config(self.cfg)
        register_secrets(k.strip() for k in os.environ.get(self.cfg.api_keys_env, "").split(","))
        if not len(self.keys):
            logger.warning("no API keys configured (%s / serve.api_keys): every /v1 request gets 401",
                           self.cfg.api_keys_env)
        self.limiter = RateLimiter(self.cfg.requests_per_minute, self.cfg.key_requests_per_minute)
        self.cache = ResponseCache(self.cfg.cache_ttl_s, self.cfg.cache_max_entries)
        self.metrics = Metrics()
        self.models = models
        self.default_model = next(iter(models))
        self.sandbox = sandbox
        self.retriever = retriever
        self.sessions = sessions
        self.tools = remote_tools(config, sandbox, retriever, self.metrics)
        self.system = system_prompt(self.tools.describe(), self.tools.names())
        self._model_info: dict[str, dict] = {}
        module._ingress = self

    # ---------------------------------------------------------------------------- plumbing

    def _authorize(self, request: Request) -> str:
        try:
            key = self.keys.check(request.headers.get("authorization"))
        except AuthError as exc:
            raise ApiError(401, "unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"}) from None
        request.scope["deepcoder.key"] = key
        wait = self.limiter.acquire(key)
        if wait > 0:
            self.metrics.rate_limited.inc()
            retry = max(1, int(wait + 0.999))
            raise ApiError(429, "rate_limited", f"rate limit of {self.limiter.rpm(key)} requests/minute exceeded; "
                           f"retry in {retry}s", headers={"Retry-After": str(retry)})
        return key

    def _model(self, name: str | None) -> str:
        name = name or self.default_model
        if name not in self.models:
            raise ApiError(404, "not_found", f"unknown model {name!r}; served: {', '.join(self.models)}")
        return name

    async def _info(self, name: str) -> dict:
        if name not in self._model_info:
            self._model_info[name] = await asyncio.wait_for(self.models[name].info.remote(), 30)
        return self._model_info[name]

    def _limits(self, max_steps: int | None, timeout_s: float | None) -> tuple[int, float]:
        if max_steps is not None and max_steps > self.cfg.max_steps:
            raise ApiError(422, "invalid_request", f"max_steps: at most {self.cfg.max_steps} (serve.max_steps)")
        if timeout_s is not None and timeout_s > self.cfg.request_timeout_s:
            raise ApiError(422, "invalid_request",
                           f"timeout_s: at most {self.cfg.request_timeout_s:g} (serve.request_timeout_s)")
        return max_steps or self.cfg.max_steps, timeout_s or self.cfg.request_timeout_s

    def _check_prompt(self, prompt: str, tests: list[str]) -> None:
        if len(prompt) > self.cfg.max_prompt_chars:
            raise ApiError(422, "invalid_request", f"prompt: {len(prompt)} characters, at most "
                           f"{self.cfg.max_prompt_chars} (serve.max_prompt_chars)")
        if sum(len(t) for t in tests) > self.cfg.max_prompt_chars:
            raise ApiError(422, "invalid_request", f"tests: more than {self.cfg.max_prompt_chars} characters in all")

    async def _session(self, method: str, *args: Any) -> Any:
        out = await self.sessions.call.remote(method, *args)
        if "error" in out:
            status, message = out["error"]
            raise ApiError(status, {404: "not_found", 409: "conflict", 429: "rate_limited"}.get(status, "error"),
                           message)
        return out["ok"]

    # ------------------------------------------------------------------------------ agent runs

    async def _verify(self, task: Task, answer: str) -> tuple[bool, str]:
        code = checking_program(task, extract_code(answer))
        try:
            out = await asyncio.wait_for(self.sandbox.execute.remote(code), self.config.sandbox.timeout_s + 30)
        except Exception as exc:  # noqa: BLE001
            self.metrics.sandbox_failures.labels("unavailable").inc()
            return False, f"could not run the tests: {short(exc)}"
        if "error" in out:
            if out["error"] != "input":
                self.metrics.sandbox_failures.labels("sandbox_error").inc()
            return False, f"could not run the tests: {out.get('message')}"
        result = out["result"]
        if result["exit_code"] == 0 and not result["timed_out"]:
            return True, f"{len(task.tests)} test(s) passed"
        tail = (result["stderr"] or result["stdout"]).strip().splitlines()[-3:]
        return False, "tests failed" + (": " + " | ".join(tail) if tail else "")

    async def _run(self, task: Task, model: str, max_steps: int, timeout_s: float,
                   on_step: Callable[[Step], Awaitable[None]] | None = None) -> RunResponse:
        run_id = uuid.uuid4().hex
        started = time.monotonic()
        failures, token = track_failures()
        agent = Agent(HandlePolicy(self.models[model], model), self.tools,
                      AgentLimits(max_steps=max_steps, step_timeout_s=min(self.cfg.step_timeout_s, timeout_s),
                                  episode_timeout_s=timeout_s), system=self.system)

        async def observe(step: Step) -> None:
            self.metrics.tool_calls.labels(step.action or "none", "error" if step.error else "ok").inc()
            if on_step is not None:
                await on_step(step)

        try:
            trajectory = await asyncio.wait_for(agent.arun(task, on_step=observe), timeout_s + 15)
        except asyncio.TimeoutError:  # the loop has its own deadline; this only guards against a hang
            trajectory = Trajectory(task=task, status="timeout", error=f"run timed out after {timeout_s:g}s")
        finally:
            untrack_failures(token)
        verified = verification = None
        answer = trajectory.final_answer
        if trajectory.status == "finished" and task.tests and answer and answer.strip():
            verified, verification = await self._verify(task, answer)
        valid = trajectory.status == "finished" and bool(answer and answer.strip()) and verified is not False
        self.metrics.observe_run(model, trajectory.status, valid)
        error = None
        if trajectory.status != "finished":
            message = trajectory.error or trajectory.status
            kind = ("model_error" if message.startswith("model error") else
                    "timeout" if trajectory.status == "timeout" else trajectory.status)
            error = ErrorInfo(type=kind, message=message)
        response = RunResponse(
            id=run_id, model=model, status=trajectory.status, final_answer=answer, valid_finish=valid,
            verified=verified, verification=verification,
            steps=[StepOut.from_step(i, s) for i, s in enumerate(trajectory.steps)], error=error,
            usage=trajectory.usage, duration_s=time.monotonic() - started)
        response._infra_failures = failures
        return response

    def _stream(self, start: Callable[[Callable[[Step], Awaitable[None]]], Awaitable[RunResponse]]) -> StreamingResponse:
        """SSE: one ``step`` event per step as it happens, then ``final`` (or ``error``)."""
        queue: asyncio.Queue = asyncio.Queue()
        index = 0

        async def on_step(step: Step) -> None:
            nonlocal index
            await queue.put(("step", StepOut.from_step(index, step)))
            index += 1

        task = asyncio.ensure_future(start(on_step))
        task.add_done_callback(lambda _: queue.put_nowait(("done", None)))

        async def events() -> AsyncIterator[str]:
            try:
                while True:
                    kind, item = await queue.get()
                    if kind == "done":
                        break
                    yield _sse("step", item.model_dump_json())
                try:
                    yield _sse("final", task.result().model_dump_json())
                except ApiError as exc:
                    yield _sse("error", json.dumps({"error": exc.info.model_dump()}))
                except Exception as exc:  # noqa: BLE001
                    logger.exception("streamed run failed")
                    yield _sse("error", json.dumps({"error": {"type": "internal_error", "message": short(exc)}}))
            finally:
                if not task.done():
                    task.cancel()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def _cacheable(self, response: RunResponse) -> bool:
        return response.status in ("finished", "max_steps") and not response._infra_failures

    @api.post("/v1/agent/runs", response_model=RunResponse, responses=ERRORS, dependencies=AUTH,
              summary="Run the agent on one task (JSON, or SSE with stream: true)")
    async def create_run(self, body: RunRequest, request: Request):
        key = self._authorize(request)
        model = self._model(body.model)
        self._check_prompt(body.prompt, body.tests)
        max_steps, timeout_s = self._limits(body.max_steps, body.timeout_s)
        prompt = body.prompt
        if body.tests:
            prompt += "\nYour code should pass these tests:\n" + "\n".join(body.tests)
        task = Task(id=f"run-{uuid.uuid4().hex[:12]}", kind=body.kind, prompt=prompt, tests=body.tests)
        if body.stream:
            return self._stream(lambda on_step: self._run(task, model, max_steps, timeout_s, on_step))
        ckey = None
        if self.cache.enabled and (await self._info(model)).get("deterministic"):
            ckey = cache_key("run", key, model, body.prompt, body.kind, body.tests, max_steps)
            hit = self.cache.get(ckey)
            self.metrics.cache.labels("hit" if hit else "miss").inc()
            if hit is not None:
                return JSONResponse({**hit, "cached": True}, headers={"X-Cache": "hit"})
        response = await self._run(task, model, max_steps, timeout_s)
        data = response.model_dump(mode="json")
        if ckey and self._cacheable(response):
            self.cache.put(ckey, data)
        return JSONResponse(data, headers={"X-Cache": "miss"} if ckey else None)

    # -------------------------------------------------------------------------------- sessions

    @api.post("/v1/sessions", status_code=201, response_model=SessionOut, responses=ERRORS, dependencies=AUTH,
              summary="Start a multi-turn session")
    async def create_session(self, body: SessionCreate, request: Request):
        key = self._authorize(request)
        model = self._model(body.model)
        if body.ttl_s is not None and body.ttl_s > self.cfg.session_ttl_s:
            raise ApiError(422, "invalid_request", f"ttl_s: at most {self.cfg.session_ttl_s:g} (serve.session_ttl_s)")
        if body.max_turns is not None and body.max_turns > self.cfg.session_max_turns:
            raise ApiError(422, "invalid_request",
                           f"max_turns: at most {self.cfg.session_max_turns} (serve.session_max_turns)")
        state = await self._session("create", key, body.kind, model, body.ttl_s or self.cfg.session_ttl_s,
                                    body.max_turns or self.cfg.session_max_turns)
        return JSONResponse(state, status_code=201)

    @api.get("/v1/sessions/{session_id}", response_model=SessionOut, responses=ERRORS, dependencies=AUTH,
             summary="A session's state and turns")
    async def get_session(self, session_id: str, request: Request):
        key = self._authorize(request)
        return await self._session("get", session_id, key)

    @api.delete("/v1/sessions/{session_id}", status_code=204, responses=ERRORS, dependencies=AUTH,
                summary="End a session")
    async def delete_session(self, session_id: str, request: Request):
        key = self._authorize(request)
        await self._session("delete", session_id, key)
        return Response(status_code=204)

    @api.post("/v1/sessions/{session_id}/turns", response_model=RunResponse, responses=ERRORS, dependencies=AUTH,
              summary="Post a turn: the agent runs on it with the earlier turns as context")
    async def post_turn(self, session_id: str, body: TurnRequest, request: Request):
        key = self._authorize(request)
        self._check_prompt(body.prompt, body.tests)
        max_steps, timeout_s = self._limits(body.max_steps, body.timeout_s)
        state = await self._session("begin_turn", session_id, key)
        prompt = _session_prompt(state["turns"], body.prompt)
        if body.tests:
            prompt += "\nYour code should pass these tests:\n" + "\n".join(body.tests)
        task = Task(id=f"{session_id}-{len(state['turns'])}", kind=state["kind"], prompt=prompt, tests=body.tests)

        async def turn(on_step=None) -> RunResponse:
            record = None
            try:
                response = await self._run(task, state["model"], max_steps, timeout_s, on_step)
                record = {"prompt": body.prompt, "status": response.status,
                          "final_answer": response.final_answer, "run_id": response.id}
                return response
            finally:
                await asyncio.shield(self._session("end_turn", session_id, key, record))

        if body.stream:
            return self._stream(turn)
        return await turn()

    # -------------------------------------------------------------------- OpenAI-compatible API

    @api.get("/v1/models", responses=ERRORS, dependencies=AUTH, summary="Served models (OpenAI format)")
    async def list_models(self, request: Request):
        self._authorize(request)
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "deepcoder"}
                                           for name in self.models]}

    @api.post("/v1/chat/completions", responses=ERRORS, dependencies=AUTH,
              summary="OpenAI-compatible chat completions with the raw student (no tools)")
    async def chat_completions(self, body: ChatCompletionRequest, request: Request):
        key = self._authorize(request)
        model = self._model(body.model)
        messages = [{"role": "system" if m.role == "developer" else "user" if m.role == "tool" else m.role,
                     "content": m.content or ""} for m in body.messages]
        if sum(len(m["content"]) for m in messages) > self.cfg.max_prompt_chars:
            raise ApiError(422, "invalid_request",
                           f"messages: more than {self.cfg.max_prompt_chars} characters (serve.max_prompt_chars)")
        max_tokens = body.max_completion_tokens or body.max_tokens or self.cfg.max_new_tokens
        if max_tokens > self.cfg.max_new_tokens:
            raise ApiError(422, "invalid_request", f"max_tokens: at most {self.cfg.max_new_tokens} (serve.max_new_tokens)")
        temperature = 0.0 if body.temperature is None else body.temperature
        stop = body.stop_list()
        handle = self.models[model]
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            if body.n != 1:
                raise ApiError(422, "invalid_request", "n: streaming supports n=1 only")
            return StreamingResponse(self._chat_stream(handle, messages, stop, temperature, max_tokens, cid, created,
                                                       model), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        ckey = None
        if self.cache.enabled and temperature == 0 and body.n == 1:
            ckey = cache_key("chat", key, model, messages, stop, max_tokens)
            hit = self.cache.get(ckey)
            self.metrics.cache.labels("hit" if hit else "miss").inc()
            if hit is not None:
                return JSONResponse({**hit, "id": cid, "created": created}, headers={"X-Cache": "hit"})
        try:
            completions = await asyncio.wait_for(
                handle.chat.remote(messages, n=body.n, stop=stop, temperature=temperature, max_tokens=max_tokens),
                self.cfg.request_timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(504, "timeout", f"the model did not answer within {self.cfg.request_timeout_s:g}s") from None
        except Exception as exc:  # noqa: BLE001
            raise ApiError(502, "model_error", f"model {model!r} failed: {short(exc)}") from None
        prompt_tokens = completions[0]["prompt_tokens"] if completions else 0
        completion_tokens = sum(c["completion_tokens"] for c in completions)
        data = {"id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": i, "message": {"role": "assistant", "content": c["text"]},
                             "finish_reason": c["finish_reason"], "logprobs": None} for i, c in enumerate(completions)],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}
        if ckey:
            self.cache.put(ckey, data)
        return JSONResponse(data)

    async def _chat_stream(self, handle, messages, stop, temperature, max_tokens, cid, created, model):
        def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> str:
            body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
            if usage is not None:
                body["usage"] = usage
            return f"data: {json.dumps(body)}\n\n"

        yield chunk({"role": "assistant", "content": ""})
        try:
            gen = handle.options(stream=True).stream_chat.remote(messages, stop=stop, temperature=temperature,
                                                                 max_tokens=max_tokens)
            async for item in gen:
                if "delta" in item:
                    yield chunk({"content": item["delta"]})
                else:
                    yield chunk({}, item.get("finish_reason", "stop"), item.get("usage"))
        except Exception as exc:  # noqa: BLE001 - the stream has started: report in-band, OpenAI style
            yield f"data: {json.dumps({'error': {'type': 'model_error', 'message': short(exc)}})}\n\n"
        yield "data: [DONE]\n\n"

    # ------------------------------------------------------------------------ health, metrics

    @api.get("/healthz", summary="Liveness: the ingress answers")
    async def healthz(self):
        return {"status": "ok"}

    @api.get("/readyz", summary="Readiness: models loaded, sandbox and retriever answering")
    async def readyz(self):
        checks: dict[str, Any] = {}

        async def probe(name: str, call) -> None:
            try:
                checks[name] = {"ok": True, **(await asyncio.wait_for(call, 5.0))}
            except Exception as exc:  # noqa: BLE001
                checks[name] = {"ok": False, "error": short(exc)}

        await asyncio.gather(*[probe(f"model:{n}", h.info.remote()) for n, h in self.models.items()],
                             probe("sandbox", self.sandbox.ping.remote()),
                             probe("retriever", self.retriever.info.remote()))
        ready = all(c["ok"] for c in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @api.get("/metrics", summary="Prometheus metrics of this ingress replica")
    async def metrics_text(self):
        try:
            self.metrics.sessions.set(await asyncio.wait_for(self._session("count"), 2.0))
        except Exception:  # noqa: BLE001 - metrics must not fail because the session store is slow
            pass
        return Response(self.metrics.render(), media_type=self.metrics.content_type)

    @api.get("/v1/stats", responses=ERRORS, dependencies=AUTH,
             summary="Quality over time: share of runs with a valid finish, per model")
    async def stats(self, request: Request):
        self._authorize(request)
        return {**self.metrics.stats(), "cache": {"entries": len(self.cache), "hits": self.cache.hits,
                                                  "misses": self.cache.misses}}


# ------------------------------------------------------------------------------- building


def build_app(config: Config, *, models: dict[str, Any] | None = None,
              actor_options: dict[str, dict[str, Any]] | None = None) -> serve.Application:
    """The agent application for ``serve.run``.

    ``models``: served id -> a bound model deployment (default: one ``StudentModel`` of
    ``serve.model``). ``actor_options``: per deployment name, ``.options(**kwargs)`` overrides
    (resources, replicas) for callers that build in Python; YAML users set ``deployments:``.
    """
    cfg = config.serve
    opts = actor_options or {}

    def option(deployment, **extra):
        merged = {**extra, **opts.get(deployment.name, {})}
        if "ray_actor_options" in merged:  # merge into the defaults (keeps e.g. the sandbox's runtime_env)
            merged["ray_actor_options"] = {**(deployment.ray_actor_options or {}), **merged["ray_actor_options"]}
        return deployment.options(**merged) if merged else deployment

    if models is None:
        name = cfg.model_name or model_id(cfg.model)
        models = {name: option(StudentModel).bind(cfg.model, base=cfg.base_model, tokenizer=cfg.tokenizer,
                                                  name=name, max_new_tokens=cfg.max_new_tokens)}
    if not models:
        raise ValueError("build_app: at least one model")
    sandbox = option(ToolSandbox).bind(sandbox=config.sandbox)
    retriever = option(Retriever).bind(config)
    sessions = option(SessionStore).bind(cfg.max_sessions)
    return option(AgentIngress).bind(config, models, sandbox, retriever, sessions)


def build(args: dict[str, Any] | None = None) -> serve.Application:
    """Application builder for serve_config.yaml (``import_path: deepcoder.serve.app:build``).

    ``args`` (all optional): ``profile``, ``config`` (a YAML file), and ``model``,
    ``base_model``, ``model_name`` overriding ``serve.*``. The environment applies as usual
    (``DEEPCODER_SERVE__MODEL=...``, keys in ``DEEPCODER_API_KEYS``).
    """
    args = dict(args or {})
    overrides = {k: args.pop(k) for k in ("model", "base_model", "model_name", "tokenizer") if args.get(k)}
    profile, config_file = args.pop("profile", None), args.pop("config", None)
    if args:
        raise ValueError(f"unknown serve_config args: {', '.join(sorted(args))}")
    config = load_config(profile, config_file, overrides={"serve": overrides} if overrides else None)
    return build_app(config)
