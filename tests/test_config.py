"""The one config: profiles, layering, env overrides, clear errors, masked secrets."""

from __future__ import annotations

import json

import pytest

from deepcoder.config import PROFILES, Config, ConfigError, config_reference, load_config


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_loads(profile: str) -> None:
    config = load_config(profile, env={})
    assert isinstance(config, Config)
    assert config.profile == profile


def test_profiles_differ_where_they_should() -> None:
    demo, cluster = load_config("demo", env={}), load_config("cluster", env={})
    assert demo.teacher.use_emulator and not cluster.teacher.use_emulator
    assert demo.student.model_name_or_path == "smollm2" and demo.data.tokenizer == "smollm2"
    assert cluster.student.model_name_or_path == "Qwen/Qwen2.5-3B-Instruct"
    assert cluster.training.use_gpu and not demo.training.use_gpu


def test_layers_file_then_env_then_overrides(tmp_path) -> None:
    file = tmp_path / "mine.yaml"
    file.write_text("sandbox:\n  timeout_s: 3\n  memory_mb: 256\ntraining:\n  lambda_reason: 0.5\n")
    env = {"DEEPCODER_SANDBOX__TIMEOUT_S": "4", "DEEPCODER_EVAL__K": "[1, 5]"}
    config = load_config("demo", file, env=env, overrides={"training": {"lambda_act": 2.0}})
    assert config.sandbox.timeout_s == 4  # env beats file
    assert config.sandbox.memory_mb == 256  # file beats profile
    assert config.training.lambda_reason == 0.5 and config.training.lambda_act == 2.0
    assert config.eval.k == [1, 5]
    assert config.generation.max_steps == 6  # from the demo profile


def test_profile_and_file_from_environment(tmp_path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("logging:\n  level: DEBUG\n")
    config = load_config(env={"DEEPCODER_PROFILE": "cluster", "DEEPCODER_CONFIG": str(file)})
    assert config.profile == "cluster" and config.logging.level == "DEBUG"


def test_unknown_key_in_file_names_key_and_file(tmp_path) -> None:
    file = tmp_path / "typo.yaml"
    file.write_text("sandbox:\n  timeot_s: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config("demo", file, env={})
    assert "sandbox.timeot_s" in str(err.value) and str(file) in str(err.value)


def test_unknown_section_names_the_file(tmp_path) -> None:
    file = tmp_path / "typo.yaml"
    file.write_text("sandbx: {}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'sandbx' \(set in .*typo.yaml\)"):
        load_config("demo", file, env={})


def test_wrong_type_from_env_names_the_variable() -> None:
    with pytest.raises(ConfigError) as err:
        load_config("demo", env={"DEEPCODER_TRAINING__LAMBDA_ACT": "lots"})
    message = str(err.value)
    assert "training.lambda_act" in message and "DEEPCODER_TRAINING__LAMBDA_ACT" in message


def test_unknown_env_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match="DEEPCODER_SANDBOX__NOPE"):
        load_config("demo", env={"DEEPCODER_SANDBOX__NOPE": "1"})


def test_bad_yaml_missing_file_and_bad_profile(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sandbox: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config("demo", bad, env={})
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("demo", tmp_path / "nope.yaml", env={})
    with pytest.raises(ConfigError, match="unknown profile 'prod'"):
        load_config("prod", env={})
    top = tmp_path / "list.yaml"
    top.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config("demo", top, env={})


def test_secrets_come_from_env_and_are_masked() -> None:
    key = "gsk_live_canary_1234567890"
    config = load_config("default", env={"GROQ_API_KEY": key, "WANDB_API_KEY": "w" * 40})
    assert config.teacher.api_key is not None and config.teacher.api_key.get_secret_value() == key
    assert config.wandb.mode == "online"  # a wandb key turns syncing on
    for text in (repr(config), str(config), json.dumps(config.masked_dict()), config.model_dump_json()):
        assert key not in text and "w" * 40 not in text
    assert set(config.secrets()) == {key, "w" * 40}


def test_wandb_mode_env_wins_and_key_env_is_configurable() -> None:
    config = load_config("default", env={"WANDB_API_KEY": "x" * 40, "WANDB_MODE": "disabled",
                                         "DEEPCODER_TEACHER__API_KEY_ENV": "DEEPSEEK_API_KEY",
                                         "DEEPSEEK_API_KEY": "sk-deepseek-canary-123456"})
    assert config.wandb.mode == "disabled"
    assert config.teacher.api_key.get_secret_value() == "sk-deepseek-canary-123456"


def test_secret_never_in_validation_errors() -> None:
    with pytest.raises(ConfigError) as err:
        load_config("demo", env={"DEEPCODER_TEACHER__API_KEY": "[gsk_canary_in_a_list_123]"})
    assert "gsk_canary" not in str(err.value)


def test_cross_field_validation() -> None:
    with pytest.raises(ConfigError, match="default_k"):
        load_config("demo", env={}, overrides={"retrieval": {"default_k": 30, "max_k": 5}})


def test_reference_doc_is_current() -> None:
    """docs/configuration.md is generated; regenerate with `make docs`."""
    from pathlib import Path

    doc = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
    assert doc.read_text(encoding="utf-8").strip() == config_reference().strip()
