"""The real groq (and openai) SDK against the loopback Groq emulator; the rate-limit logic."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from pydantic import SecretStr

from deepcoder.agent.loop import TRUNCATED, Agent, step_from_output
from deepcoder.agent.policy import PolicyOutput
from deepcoder.config import TeacherConfig
from deepcoder.data.problems import load_math_tasks, load_mbpp, load_retrieval_tasks
from deepcoder.teacher.client import TeacherClient, TeacherError, TeacherUnavailable, langchain_chat_model
from deepcoder.teacher.emulator import EmulatorServer, create_app, reference_app
from deepcoder.teacher.ratelimit import LocalLimiter, TokenBudget, format_duration, parse_duration
from deepcoder.tools.registry import build_tools

KEY = "gsk_emulator_test_key_0001"
TASKS = load_mbpp("train")[:2] + load_math_tasks()[:2] + load_retrieval_tasks()[:1]
MATH = TASKS[2]


def teacher(**overrides) -> TeacherConfig:
    return TeacherConfig(api_key=SecretStr(KEY), max_retries=3, timeout_s=10, **overrides)


@pytest.fixture(scope="module")
def emulator():
    with EmulatorServer(reference_app(TASKS, api_key=KEY)) as server:
        yield server


def ask(server, config: TeacherConfig, messages=None, **kwargs):
    client = TeacherClient(config, base_url=server.base_url, **kwargs)
    messages = messages or [{"role": "user", "content": f"Task: {MATH.prompt}\n\nCompute the answer with the "
                                                         "python tool, then finish with the number only."}]
    return client, asyncio.run(client.agenerate(messages, stop=["\nObservation:"]))


@pytest.mark.parametrize(("fmt", "source"), [("parsed", "reasoning_field"), ("raw", "think_block"), ("hidden", "none")])
def test_reasoning_formats_become_the_thought(emulator, config, fmt, source) -> None:
    config.teacher = teacher(reasoning_format=fmt)
    client = TeacherClient(config.teacher, base_url=emulator.base_url)
    trajectory = Agent(client, build_tools(config)).run(MATH)
    assert trajectory.status == "finished" and trajectory.final_answer == MATH.answer
    first = trajectory.steps[0]
    assert first.reasoning_source == source
    assert (first.thought is None) == (fmt == "hidden")
    assert trajectory.usage["total_tokens"] > 0


def test_rate_limit_headers_and_response_shape(emulator) -> None:
    response = httpx.post(f"{emulator.base_url}/openai/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                          json={"model": "openai/gpt-oss-120b", "messages": [{"role": "user", "content": f"Task: {MATH.prompt}\n\nCompute the answer with the python tool, then finish with the number only."}]})
    assert response.status_code == 200
    for name in ("limit-requests", "limit-tokens", "remaining-requests", "remaining-tokens", "reset-requests",
                 "reset-tokens"):
        assert f"x-ratelimit-{name}" in response.headers
    assert parse_duration(response.headers["x-ratelimit-reset-tokens"]) is not None
    body = response.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
    assert set(body["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}


def test_server_errors_are_retried(emulator) -> None:
    httpx.post(f"{emulator.base_url}/emulator/faults", json={"statuses": [503, 500]})
    client, output = ask(emulator, teacher())
    assert "Action: python" in output.text
    assert client.stats.requests == 3 and client.stats.retries == 2 and client.stats.server_errors == 2


@pytest.mark.parametrize(("overrides", "match"), [
    ({"api_key": SecretStr("gsk_wrong_key_99999999")}, "HTTP 401"),
    ({"model": "no-such/model"}, "does not exist"),
    ({"model": "deepseek-r1-distill-llama-70b"}, "decommissioned"),
])
def test_fatal_errors_fail_fast_without_retries(emulator, overrides, match) -> None:
    before = emulator.stats.requests
    with pytest.raises(TeacherError, match=match) as err:
        ask(emulator, teacher(**{k: v for k, v in overrides.items() if k != "api_key"}) if "api_key" not in overrides
            else TeacherConfig(api_key=overrides["api_key"], max_retries=3))
    assert emulator.stats.requests - before == 1
    assert "gsk_wrong_key" not in str(err.value)


def test_429_honours_retry_after_and_feeds_the_limiter() -> None:
    app = reference_app(TASKS, api_key=KEY, requests_per_minute=60, window_s=1.0)  # 1 request, refilled 1/s
    with EmulatorServer(app) as server:
        limiter = LocalLimiter(requests_per_minute=10_000, tokens_per_minute=10_000_000)
        client = TeacherClient(teacher(), base_url=server.base_url, limiter=limiter)
        messages = [{"role": "user", "content": f"Task: {MATH.prompt}\n\nCompute the answer with the python "
                                                "tool, then finish with the number only."}]
        started = time.monotonic()

        async def two():
            return await asyncio.gather(client.agenerate(messages), client.agenerate(messages))

        outputs = asyncio.run(two())
        assert all("Action: python" in o.text for o in outputs)
        assert client.stats.rate_limited >= 1 and server.stats.rate_limited >= 1
        assert time.monotonic() - started >= 0.9  # waited for retry-after (1 s)
        assert limiter.budget.stats.rate_limited >= 1


def test_retries_run_out_with_a_clear_error(emulator) -> None:
    httpx.post(f"{emulator.base_url}/emulator/faults", json={"statuses": [502, 502, 502]})
    with pytest.raises(TeacherUnavailable, match="3 attempts"):
        ask(emulator, TeacherConfig(api_key=SecretStr(KEY), max_retries=2))


def test_unreachable_endpoint_is_retried_then_reported() -> None:
    client = TeacherClient(TeacherConfig(api_key=SecretStr(KEY), max_retries=1, timeout_s=2),
                           base_url="http://127.0.0.1:9")
    with pytest.raises(TeacherUnavailable):
        asyncio.run(client.agenerate([{"role": "user", "content": "hi"}]))
    assert client.stats.retries == 1
    assert KEY not in repr(client)


def test_invalid_responses_are_failed_steps() -> None:
    truncated = step_from_output(PolicyOutput(text="Thought: long\nAction: python\nAction Input: print(1",
                                              finish_reason="length"))
    assert truncated.error == TRUNCATED
    assert step_from_output(PolicyOutput(text="")).error == "empty reply"
    assert step_from_output(PolicyOutput(text="Thought: hmm")).error == "no action in reply"


def test_over_long_output_is_not_executed(config) -> None:
    with EmulatorServer(reference_app(TASKS, api_key=KEY)) as server:
        config.teacher = teacher(max_tokens=8)
        trajectory = Agent(TeacherClient(config.teacher, base_url=server.base_url), build_tools(config),).run(MATH)
    assert trajectory.steps[0].error == TRUNCATED and "token limit" in trajectory.steps[0].observation


def test_openai_compatible_provider_and_sync_path(emulator) -> None:
    config = teacher(provider="openai", model="deepseek-reasoner", reasoning_format=None)
    client = TeacherClient(config, base_url=emulator.base_url + "/v1")
    output = client.generate([{"role": "user", "content": f"Task: {MATH.prompt}\n\nCompute the answer with the "
                                                          "python tool, then finish with the number only."}])
    assert "<think>" in output.text and "Action: python" in output.text
    assert "deepseek-reasoner" in client.list_models()


def test_langchain_chatgroq_from_the_same_config(emulator) -> None:
    chat = langchain_chat_model(teacher(reasoning_format="parsed"), base_url=emulator.base_url)
    reply = chat.invoke([("user", f"Task: {MATH.prompt}\n\nCompute the answer with the python tool, then finish "
                                  "with the number only.")])
    assert "Action: python" in reply.content


def test_unknown_task_is_a_400_from_the_reference_teacher(emulator) -> None:
    with pytest.raises(TeacherError, match="only knows the tasks"):
        ask(emulator, teacher(), messages=[{"role": "user", "content": "Task: something else"}])


# ------------------------------------------------------------------------------------------ limiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_budget_paces_requests_at_the_rate() -> None:
    clock = FakeClock()
    budget = TokenBudget(requests_per_minute=60, tokens_per_minute=1e9, burst_s=1.0, clock=clock)
    delays = [budget.reserve(10)[0] for _ in range(5)]  # 1 request/s, burst of one
    assert delays == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0])
    clock.now += 10
    assert budget.reserve(10)[0] == 0.0


def test_token_budget_tokens_settle_observe_and_penalize() -> None:
    clock = FakeClock()
    budget = TokenBudget(requests_per_minute=1e6, tokens_per_minute=600, burst_s=1.0, clock=clock,
                         expected_completion=0)  # 10 tokens/s
    assert budget.reserve(10) == (0.0, 10)
    delay, reserved = budget.reserve(20)
    assert delay == pytest.approx(2.0) and reserved == 20
    budget.settle(reserved=20, actual=5)  # the response was cheaper than reserved
    assert budget.reserve(1)[0] == pytest.approx(0.6)
    budget.penalize(5.0)
    assert budget.reserve(0)[0] >= 5.0
    clock.now += 100
    budget.observe({"x-ratelimit-remaining-tokens": "0"})  # another client spent the key's budget
    assert budget.reserve(5)[0] == pytest.approx(0.5)


def test_expected_completion_learns_from_usage() -> None:
    budget = TokenBudget(requests_per_minute=1e6, tokens_per_minute=1e9, clock=FakeClock(), expected_completion=500)
    for _ in range(30):
        _, reserved = budget.reserve(100)
        budget.settle(reserved, 100 + 50, completion=50)
    assert budget.reserve(100)[1] == pytest.approx(150, abs=5)


def test_go_durations() -> None:
    assert parse_duration("7.66s") == pytest.approx(7.66)
    assert parse_duration("2m59.56s") == pytest.approx(179.56)
    assert parse_duration("120ms") == pytest.approx(0.12)
    assert parse_duration("1h2m3s") == pytest.approx(3723)
    assert parse_duration("3") == 3.0 and parse_duration("") is None and parse_duration("soon") is None
    assert parse_duration(format_duration(75.5)) == pytest.approx(75.5)


def test_limiter_actor_shares_one_budget_across_callers(ray_cluster) -> None:
    from deepcoder.teacher.ratelimit import RayLimiter, get_rate_limiter

    actor = get_rate_limiter("test-limiter", requests_per_minute=600, tokens_per_minute=1e9)  # 10/s
    same = get_rate_limiter("test-limiter", requests_per_minute=1, tokens_per_minute=1)
    assert same._actor_id == actor._actor_id  # one budget per name, cluster-wide

    async def many():
        limiter = RayLimiter(actor)
        return await asyncio.gather(*(limiter.reserve(1) for _ in range(40)))

    delays = sorted(delay for delay, _ in asyncio.run(many()))
    assert delays[-1] == pytest.approx(3.0, abs=0.3)  # 40 requests at 10/s after a burst of 10
    assert ray_cluster.get(actor.stats.remote())["reservations"] == 40
    ray_cluster.kill(actor)


def test_emulator_rejects_bad_requests(emulator) -> None:
    url = f"{emulator.base_url}/openai/v1/chat/completions"
    auth = {"Authorization": f"Bearer {KEY}"}
    assert httpx.post(url, headers=auth, json={"model": "openai/gpt-oss-120b", "messages": []}).status_code == 400
    assert httpx.post(url, headers=auth, content=b"{not json").status_code == 400
    assert httpx.post(url, json={"model": "openai/gpt-oss-120b"}).status_code == 401


def test_custom_policy_is_pluggable() -> None:
    app = create_app(lambda messages: "Thought: always\nAction: finish\nAction Input: 7", api_key=KEY)
    with EmulatorServer(app) as server:
        _, output = ask(server, teacher(reasoning_format="parsed"))
    assert output.reasoning == "always" and output.text == "Action: finish\nAction Input: 7"
