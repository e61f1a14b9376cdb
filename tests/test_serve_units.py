"""The serving building blocks without Ray: keys, rate limits, cache, sessions, metrics, builder."""

from __future__ import annotations

import pytest

from deepcoder.config import load_config
from deepcoder.serve.auth import AuthError, KeyStore, RateLimiter, digest, key_id
from deepcoder.serve.cache import ResponseCache, cache_key
from deepcoder.serve.metrics import Metrics
from deepcoder.serve.sessions import SessionError, SessionStore


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_keys_are_hashed_and_checked() -> None:
    config = load_config("demo", env={}, overrides={"serve": {"api_keys": ["cfg-key-123"],
                                                              "api_key_hashes": [digest("hashed-key-1")]}})
    store = KeyStore.from_config(config.serve, env={"DEEPCODER_API_KEYS": " env-key-1 , env-key-2,"})
    assert len(store) == 4 and "env-key-1" not in repr(store.__dict__)
    assert store.check("Bearer env-key-2") == key_id("env-key-2") and len(key_id("x")) == 12
    assert store.check("bearer hashed-key-1") == key_id("hashed-key-1")
    for header in (None, "", "Bearer", "Token env-key-1", "Bearer env-key-3"):
        with pytest.raises(AuthError):
            store.check(header)
    with pytest.raises(ValueError, match="SHA-256"):
        KeyStore(["not-a-digest"])
    assert "cfg-key-123" in config.secrets()  # redacted from logs


def test_rate_limiter_bucket_and_retry_after() -> None:
    clock = Clock()
    limiter = RateLimiter(60, {"slow": 2}, clock=clock)
    assert [limiter.acquire("slow") for _ in range(2)] == [0.0, 0.0]
    wait = limiter.acquire("slow")
    assert wait == pytest.approx(30.0)
    clock.t += 30
    assert limiter.acquire("slow") == 0.0
    assert all(limiter.acquire("fast") == 0.0 for _ in range(60)) and limiter.acquire("fast") > 0


def test_cache_ttl_and_lru() -> None:
    clock = Clock()
    cache = ResponseCache(ttl_s=10, max_entries=2, clock=clock)
    k1, k2, k3 = (cache_key("run", i) for i in range(3))
    assert cache_key({"a": 1, "b": 2}) == cache_key({"b": 2, "a": 1})
    cache.put(k1, 1)
    cache.put(k2, 2)
    assert cache.get(k1) == 1
    cache.put(k3, 3)  # evicts k2, the least recently used
    assert cache.get(k2) is None and cache.get(k3) == 3
    clock.t += 11
    assert cache.get(k1) is None and cache.hits == 2
    assert ResponseCache(0, 10).get(k1) is None and not ResponseCache(0, 10).enabled


def test_sessions_ttl_turns_owner() -> None:
    clock = Clock()
    store = SessionStore(max_sessions=2, clock=clock)
    s = store.create("k1", "code", "m", ttl_s=10, max_turns=1)
    with pytest.raises(SessionError) as err:
        store.get(s["id"], "k2")
    assert err.value.status == 404
    store.begin_turn(s["id"], "k1")
    with pytest.raises(SessionError) as err:
        store.begin_turn(s["id"], "k1")
    assert err.value.status == 409 and "already running" in err.value.message
    clock.t += 100  # a busy session does not expire under a running turn
    store.end_turn(s["id"], "k1", {"prompt": "p", "status": "finished", "final_answer": "a", "run_id": "r"})
    with pytest.raises(SessionError, match="max_turns"):
        store.begin_turn(s["id"], "k1")
    clock.t += 11
    with pytest.raises(SessionError, match="expired"):
        store.get(s["id"], "k1")
    store.create("k1", "code", "m", 10, 1)
    store.create("k1", "code", "m", 10, 1)
    with pytest.raises(SessionError) as err:
        store.create("k1", "code", "m", 10, 1)
    assert err.value.status == 429


def test_quality_metric_per_model() -> None:
    metrics = Metrics()
    for valid in (True, False, True, True):
        metrics.observe_run("v1", "finished" if valid else "max_steps", valid, now=7200.0)
    metrics.observe_run("v2", "error", False, now=7200.0)
    stats = metrics.stats()
    assert stats["models"]["v1"]["valid_finish_share"] == 0.75 and stats["models"]["v2"]["runs"] == 1
    assert stats["models"]["v1"]["hourly"] == [{"start": 7200, "runs": 4, "valid_finishes": 3,
                                                 "valid_finish_share": 0.75}]
    text = metrics.render().decode()
    assert 'deepcoder_agent_valid_finish_ratio{model="v1"} 0.75' in text
    assert 'deepcoder_agent_runs_total{model="v1",status="finished"} 3.0' in text


def test_builder_args_and_app_graph() -> None:
    from deepcoder.serve.app import build, build_app

    app = build({"profile": "demo", "model": "smollm2", "model_name": "student-v1"})
    assert app._bound_deployment.name == "AgentIngress"
    models = app._bound_deployment.init_args[1]
    assert list(models) == ["student-v1"]
    with pytest.raises(ValueError, match="unknown serve_config args"):
        build({"modle": "x"})
    with pytest.raises(ValueError, match="at least one model"):
        build_app(load_config("demo", env={}), models={})


def test_serve_config_yaml_matches_serve_schema() -> None:
    import yaml
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(yaml.safe_load(open("serve_config.yaml")))
    agent = next(a for a in schema.applications if a.name == "agent")
    assert agent.import_path == "deepcoder.serve.app:build" and agent.route_prefix == "/"
    assert {d.name for d in agent.deployments} == {"AgentIngress", "StudentModel", "ToolSandbox", "Retriever",
                                                       "SessionStore"}
    raw = yaml.safe_load(open("serve_config.yaml"))
    cpus = sum(d.get("ray_actor_options", {}).get("num_cpus", 0) for a in raw["applications"]
               for d in a.get("deployments", []))
    assert cpus <= 2  # both apps fit a 2-core laptop


def test_cluster_yaml_is_a_valid_launcher_config() -> None:
    import yaml
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load(open("cluster.yaml"))
    validate_config(prepare_config(config))
    workers = config["available_node_types"]["gpu_worker"]
    assert workers["resources"]["GPU"] >= 1 and config["head_node_type"] == "head"
    assert any("requirements-gpu.txt" in c for c in config["worker_setup_commands"])
    assert all("RAY_AUTH_MODE=token" in " ".join(config[k]) for k in ("head_start_ray_commands",
                                                                      "worker_start_ray_commands"))


def test_alert_rules_parse() -> None:
    import yaml

    rules = yaml.safe_load(open("deploy/alerts.yaml"))["groups"][0]["rules"]
    exprs = " ".join(r["expr"] for r in rules)
    for metric in ("deepcoder_http_requests_total", "deepcoder_http_request_duration_seconds_bucket",
                   "deepcoder_sandbox_failures_total", "deepcoder_agent_valid_finish_ratio"):
        assert metric in exprs
