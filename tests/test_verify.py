"""`deepcoder verify`: each check reports pass/warn/fail, and a fail exits 1."""

from __future__ import annotations

import shutil

from deepcoder.config import load_config
from deepcoder.verify import check_sandbox, check_teacher, check_wandb, run_checks


def test_all_checks_pass_or_warn_here(config, ray_cluster) -> None:
    results = {r.name: r for r in run_checks(config)}
    assert {"python", "packages", "torch device", "ray", "sandbox", "teacher", "wandb"} <= set(results)
    failed = {name: r.detail for name, r in results.items() if r.status == "fail"}
    assert not failed
    assert "Ray" in results["ray"].detail and "CPUs 2" in results["ray"].detail


def test_sandbox_check_fails_without_bubblewrap(monkeypatch) -> None:
    import deepcoder.tools.sandbox as sandbox

    real_which = shutil.which
    monkeypatch.setattr(sandbox.shutil, "which", lambda name, *a, **k: None if name == "bwrap" else real_which(name))
    result = check_sandbox()
    assert result.status == "fail" and "bubblewrap" in result.detail


def test_teacher_check_with_unreachable_endpoint_fails_without_leaking_key() -> None:
    key = "gsk_verify_canary_987654321"
    config = load_config("default", env={"GROQ_API_KEY": key, "DEEPCODER_TEACHER__BASE_URL": "http://127.0.0.1:9"})
    result = check_teacher(config)
    assert result.status == "fail" and "unreachable" in result.detail and key not in result.detail


def test_teacher_without_key_warns_and_wandb_online_without_key_warns() -> None:
    config = load_config("default", env={})
    assert check_teacher(config).status == "warn"
    config = load_config("default", env={"WANDB_MODE": "online"})
    assert check_wandb(config).status == "warn"


def test_cli_exit_code_reflects_failures(monkeypatch, capsys) -> None:
    from deepcoder import cli
    from deepcoder.verify import CheckResult

    monkeypatch.setattr("deepcoder.verify.run_checks", lambda config, skip_ray=False: [
        CheckResult("python", "pass", "ok"), CheckResult("sandbox", "fail", "no bwrap")])
    assert cli.main(["verify", "--skip-ray"]) == 1
    monkeypatch.setattr("deepcoder.verify.run_checks", lambda config, skip_ray=False: [
        CheckResult("python", "pass", "ok"), CheckResult("torch device", "warn", "cpu")])
    assert cli.main(["verify", "--skip-ray"]) == 0
