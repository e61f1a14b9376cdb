"""The Ray Serve agent app, end to end: serve.run on a real local cluster, real HTTP on loopback.

One app per module: a tiny random Llama (the smollm2 tokenizer, 2 layers of width 32: garbage
replies, so it exercises format errors, max_steps and token streaming) served as ``tiny``, and
the scripted stand-in as ``scripted`` (deterministic finished runs, tool and model failures).
"""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from deepcoder.config import load_config
from deepcoder.serve.auth import key_id
from deepcoder.serve.smoke import wait_ready

KEY, OTHER, LIMITED = "test-key-0123456789", "other-key-0123456789", "limited-key-0123456789"
H = {"Authorization": f"Bearer {KEY}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from deepcoder.data.tokenizers import load_tokenizer

    tok = load_tokenizer("smollm2")
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-student")
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def base_url(ray_cluster, tiny_model, cache_dir, tmp_path_factory):
    from ray import serve

    from deepcoder.serve.app import build_app
    from deepcoder.serve.deployments import StudentModel
    from deepcoder.serve.testing import ScriptedModel

    config = load_config("demo", env={}, overrides={
        "paths": {"cache_dir": cache_dir, "output_dir": str(tmp_path_factory.mktemp("runs"))},
        "serve": {"api_keys": [KEY, OTHER, LIMITED], "requests_per_minute": 10000,
                  "key_requests_per_minute": {key_id(LIMITED): 2}, "max_steps": 4, "request_timeout_s": 60,
                  "session_max_turns": 3, "max_prompt_chars": 2000, "max_new_tokens": 16},
        "sandbox": {"max_code_bytes": 1000},
    })
    models = {"scripted": ScriptedModel.bind(),
              "tiny": StudentModel.options(name="StudentModel-tiny").bind(tiny_model, name="tiny", max_new_tokens=12)}
    small = {"AgentIngress": {"ray_actor_options": {"num_cpus": 0.1}},
             "ToolSandbox": {"ray_actor_options": {"num_cpus": 0.2}},
             "Retriever": {"ray_actor_options": {"num_cpus": 0.1}}}
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(config, models=models, actor_options=small), name="agent", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    assert wait_ready(url, 120), "the app did not become ready"
    yield url
    serve.shutdown()


@pytest.fixture
def client(base_url):
    with httpx.Client(base_url=base_url, timeout=120) as c:
        yield c


def _events(text: str) -> list[tuple[str, dict]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        out.append((lines.get("event", "message"), json.loads(lines["data"])))
    return out


# ------------------------------------------------------------------------------------ probes


def test_health_ready_docs(client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert ready.json()["checks"]["model:tiny"]["loaded"] is True
    assert "/v1/agent/runs" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


# -------------------------------------------------------------------------------------- auth


def test_auth_required(client) -> None:
    body = {"prompt": "x", "model": "scripted"}
    missing = client.post("/v1/agent/runs", json=body)
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "unauthorized"
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = client.post("/v1/agent/runs", json=body, headers={"Authorization": "Bearer nope-nope-nope"})
    assert wrong.status_code == 401 and "invalid API key" in wrong.json()["error"]["message"]
    assert client.get("/v1/models", headers={"Authorization": "Basic abc"}).status_code == 401
    assert client.get("/v1/models", headers=H).status_code == 200


def test_rate_limit_429_with_retry_after(client) -> None:
    headers = {"Authorization": f"Bearer {LIMITED}"}
    codes = [client.get("/v1/models", headers=headers).status_code for _ in range(4)]
    assert codes[:2] == [200, 200] and codes[-1] == 429
    limited = client.get("/v1/models", headers=headers)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["type"] == "rate_limited"
    assert client.get("/v1/models", headers=H).status_code == 200  # other keys are unaffected


def test_validation_errors(client) -> None:
    cases = [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "kind": "poetry"}, "kind"),
        ({"prompt": "x", "max_steps": 99}, "max_steps: at most 4"),
        ({"prompt": "x", "timeout_s": 1e6}, "timeout_s: at most 60"),
        ({"prompt": "x" * 2001}, "prompt: 2001 characters, at most 2000"),
        ({"prompt": "x", "surprise": 1}, "surprise"),
    ]
    for body, needle in cases:
        r = client.post("/v1/agent/runs", json=body, headers=H)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["type"] == "invalid_request" and needle in r.json()["error"]["message"], r.text
    bad_json = client.post("/v1/agent/runs", content=b"{not json", headers={**H, "content-type": "application/json"})
    assert bad_json.status_code == 422
    huge = client.post("/v1/agent/runs", content=b"x" * 1_000_001, headers={**H, "content-type": "application/json"})
    assert huge.status_code == 413 and "over 1000000 bytes" in huge.json()["error"]["message"]
    unknown = client.post("/v1/agent/runs", json={"prompt": "x", "model": "gpt-9"}, headers=H)
    assert unknown.status_code == 404 and "unknown model" in unknown.json()["error"]["message"]


# ---------------------------------------------------------------------------------- agent runs


def test_scripted_run_finishes_with_sandbox_and_cache(client) -> None:
    body = {"prompt": "What is six times seven?", "kind": "math", "model": "scripted"}
    first = client.post("/v1/agent/runs", json=body, headers=H)
    assert first.status_code == 200, first.text
    run = first.json()
    assert run["status"] == "finished" and run["final_answer"] == "42" and run["valid_finish"] is True
    assert [s["action"] for s in run["steps"]] == ["python", "finish"]
    assert run["steps"][0]["observation"] == "42" and run["cached"] is False
    second = client.post("/v1/agent/runs", json=body, headers=H)
    assert second.json()["cached"] is True and second.headers["x-cache"] == "hit"
    assert second.json()["id"] == run["id"]
    other_key = client.post("/v1/agent/runs", json=body, headers={"Authorization": f"Bearer {OTHER}"})
    assert other_key.json()["cached"] is False  # the cache is per key


def test_tests_are_checked_in_the_sandbox(client) -> None:
    code = "def add(a, b):\n    return a + b"
    script = ["Thought: write it\nAction: finish\nAction Input: ```python\n" + code + "\n```"]
    body = {"prompt": "Write add. SCRIPT:" + json.dumps(script), "model": "scripted",
            "tests": ["assert add(1, 2) == 3"]}
    run = client.post("/v1/agent/runs", json=body, headers=H).json()
    assert run["status"] == "finished" and run["verified"] is True and run["valid_finish"] is True
    body["tests"] = ["assert add(1, 2) == 4"]
    run = client.post("/v1/agent/runs", json=body, headers=H).json()
    assert run["verified"] is False and run["valid_finish"] is False and "tests failed" in run["verification"]


def test_tool_failure_is_a_structured_step_error(client) -> None:
    script = ["Thought: t\nAction: python\nAction Input: ```python\nraise ValueError('boom')\n```",
              "Thought: t\nAction: python\nAction Input: ```python\n" + "x = 1\n" * 200 + "```"]
    body = {"prompt": "fail. SCRIPT:" + json.dumps(script), "model": "scripted", "max_steps": 3}
    r = client.post("/v1/agent/runs", json=body, headers=H)
    assert r.status_code == 200
    run = r.json()
    assert "ValueError: boom" in run["steps"][0]["observation"] and run["steps"][0]["error"]
    assert run["steps"][1]["error"] == "tool_error" and "code is" in run["steps"][1]["observation"]
    assert run["status"] == "finished"  # the run went on after both failures


def test_model_failure_is_a_structured_error(client) -> None:
    body = {"prompt": 'SCRIPT:["__raise__"]', "model": "scripted"}
    r = client.post("/v1/agent/runs", json=body, headers=H)
    assert r.status_code == 200
    run = r.json()
    assert run["status"] == "error" and run["error"]["type"] == "model_error"
    assert "scripted model failure" in run["error"]["message"]


def test_tiny_model_hits_max_steps(client) -> None:
    r = client.post("/v1/agent/runs", json={"prompt": "Say hi", "model": "tiny", "max_steps": 2}, headers=H)
    run = r.json()
    assert r.status_code == 200 and run["status"] == "max_steps" and len(run["steps"]) == 2
    assert run["error"]["type"] == "max_steps" and run["valid_finish"] is False
    assert all(s["error"] for s in run["steps"])


def test_streaming_one_event_per_step(client) -> None:
    body = {"prompt": "six times seven", "kind": "math", "model": "scripted", "stream": True}
    with client.stream("POST", "/v1/agent/runs", json=body, headers=H) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    events = _events(text)
    assert [e for e, _ in events] == ["step", "step", "final"]
    assert [d["index"] for _, d in events[:2]] == [0, 1] and events[0][1]["action"] == "python"
    assert events[-1][1]["status"] == "finished" and events[-1][1]["final_answer"] == "42"
    body = {"prompt": "hi", "model": "tiny", "stream": True, "max_steps": 3}
    with client.stream("POST", "/v1/agent/runs", json=body, headers=H) as r:
        events = _events("".join(r.iter_text()))
    assert [e for e, _ in events] == ["step", "step", "step", "final"]
    assert events[-1][1]["status"] == "max_steps"


# ------------------------------------------------------------------------------------ sessions


def test_sessions_turns_limits_and_delete(client) -> None:
    created = client.post("/v1/sessions", json={"kind": "math", "model": "scripted", "max_turns": 2}, headers=H)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    t1 = client.post(f"/v1/sessions/{sid}/turns", json={"prompt": "six times seven"}, headers=H)
    assert t1.status_code == 200 and t1.json()["final_answer"] == "42"
    script = ["Thought: recall\nAction: finish\nAction Input: still 42"]
    t2 = client.post(f"/v1/sessions/{sid}/turns", json={"prompt": "again? SCRIPT:" + json.dumps(script)}, headers=H)
    assert t2.json()["final_answer"] == "still 42"
    state = client.get(f"/v1/sessions/{sid}", headers=H).json()
    assert [t["prompt"] for t in state["turns"]] == ["six times seven", "again? SCRIPT:" + json.dumps(script)]
    assert state["turns"][0]["final_answer"] == "42" and state["max_turns"] == 2
    full = client.post(f"/v1/sessions/{sid}/turns", json={"prompt": "third"}, headers=H)
    assert full.status_code == 409 and "max_turns" in full.json()["error"]["message"]
    assert client.get(f"/v1/sessions/{sid}", headers={"Authorization": f"Bearer {OTHER}"}).status_code == 404
    assert client.delete(f"/v1/sessions/{sid}", headers=H).status_code == 204
    assert client.get(f"/v1/sessions/{sid}", headers=H).status_code == 404
    too_many = client.post("/v1/sessions", json={"max_turns": 50}, headers=H)
    assert too_many.status_code == 422 and "max_turns: at most 3" in too_many.json()["error"]["message"]


def test_session_ttl_expiry_and_streamed_turn(client) -> None:
    sid = client.post("/v1/sessions", json={"kind": "math", "model": "scripted", "ttl_s": 1.5},
                      headers=H).json()["id"]
    with client.stream("POST", f"/v1/sessions/{sid}/turns", json={"prompt": "go", "stream": True}, headers=H) as r:
        events = _events("".join(r.iter_text()))
    assert [e for e, _ in events] == ["step", "step", "final"]
    assert len(client.get(f"/v1/sessions/{sid}", headers=H).json()["turns"]) == 1
    time.sleep(2.0)
    gone = client.get(f"/v1/sessions/{sid}", headers=H)
    assert gone.status_code == 404 and "expired" in gone.json()["error"]["message"]


# ------------------------------------------------------------------------ OpenAI compatibility


def test_openai_client_chat_and_stream(base_url) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{base_url}/v1", api_key=KEY, max_retries=0)
    assert {m.id for m in client.models.list().data} == {"scripted", "tiny"}
    reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello"}],
                                           max_tokens=8, temperature=0)
    assert reply.object == "chat.completion" and reply.model == "tiny"
    assert isinstance(reply.choices[0].message.content, str) and reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens <= 8 and reply.usage.prompt_tokens > 0
    again = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello"}],
                                           max_tokens=8, temperature=0)
    assert again.choices[0].message.content == reply.choices[0].message.content  # greedy, and cached
    stream = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello"}],
                                            max_tokens=8, temperature=0, stream=True)
    chunks = list(stream)
    assert len(chunks) >= 3 and chunks[-1].choices[0].finish_reason in ("stop", "length")
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert streamed.strip() == reply.choices[0].message.content.strip()
    scripted = client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": "ping"}])
    assert scripted.choices[0].message.content == "echo: ping"
    import openai

    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=f"{base_url}/v1", api_key="wrong-key-123", max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])


# --------------------------------------------------------------------------- metrics and stats


def test_metrics_and_stats(client) -> None:
    client.post("/v1/agent/runs", json={"prompt": "seven sixes", "kind": "math", "model": "scripted"}, headers=H)
    text = client.get("/metrics").text
    assert 'deepcoder_http_requests_total{method="POST",route="/v1/agent/runs",status="200"}' in text
    assert 'route="/v1/agent/runs",status="401"' in text and 'status="429"' in text
    assert "deepcoder_http_request_duration_seconds_bucket" in text
    assert 'deepcoder_tool_calls_total{outcome="ok",tool="python"}' in text
    assert 'deepcoder_agent_valid_finish_ratio{model="scripted"}' in text
    assert "deepcoder_sandbox_failures_total" in text or "deepcoder_sandbox_failures" in text
    stats = client.get("/v1/stats", headers=H).json()
    scripted = stats["models"]["scripted"]
    assert scripted["runs"] >= 1 and 0 < scripted["valid_finish_share"] <= 1 and scripted["hourly"]
    assert stats["models"]["tiny"]["valid_finish_share"] == 0
    assert client.get("/v1/stats").status_code == 401
