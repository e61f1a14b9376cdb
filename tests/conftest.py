"""Shared fixtures: a clean environment, a demo config with a per-session cache, and real Ray."""

from __future__ import annotations

import os

import pytest

from deepcoder.config import Config, load_config

_LEAKY = ("GROQ_API_KEY", "WANDB_API_KEY", "WANDB_MODE", "DEEPSEEK_API_KEY", "OPENAI_API_KEY")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's keys or DEEPCODER_* settings."""
    for name in list(os.environ):
        if name.startswith("DEEPCODER_") or name in _LEAKY:
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One retrieval-index cache for the whole session, so the index is built once."""
    return str(tmp_path_factory.mktemp("deepcoder-cache"))


@pytest.fixture
def config(cache_dir: str, tmp_path) -> Config:
    """The demo profile with caches and outputs under pytest's temp dirs."""
    return load_config("demo", env={}, overrides={"paths": {"cache_dir": cache_dir,
                                                            "output_dir": str(tmp_path / "runs")}})


@pytest.fixture(scope="module")
def ray_cluster():
    """A real single-node Ray cluster with 2 CPUs, one per test module."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
