"""`deepcoder verify`: is this machine ready to run DeepCoder? (the seed's verify_environment)

Each check returns pass / warn / fail with a one-line detail; any fail makes the command exit 1.
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Literal

from deepcoder.config import Config

Status = Literal["pass", "warn", "fail"]


@dataclass
class CheckResult:
    name: str
    status: Status
    detail: str


def _pinned_requirements() -> dict[str, str]:
    """Exact pins from requirements.txt when running from a checkout (none when installed)."""
    path = Path(__file__).resolve().parent.parent / "requirements.txt"
    pins: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if "==" in line:
                name, version = line.split("==", 1)
                pins[name.split("[", 1)[0].strip()] = version.strip()
    return pins


def check_python() -> CheckResult:
    version = platform.python_version()
    if sys.version_info < (3, 11):
        return CheckResult("python", "fail", f"Python {version}; DeepCoder needs 3.11 or newer")
    return CheckResult("python", "pass", f"Python {version} ({sys.executable})")


def check_packages() -> CheckResult:
    pins = _pinned_requirements()
    names = list(pins) or ["torch", "ray", "transformers", "trl", "datasets", "peft", "pydantic"]
    missing, mismatched, found = [], [], []
    for name in names:
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        pinned = pins.get(name)
        if pinned and installed.split("+", 1)[0] != pinned.split("+", 1)[0]:
            mismatched.append(f"{name} {installed} (pinned {pinned})")
        found.append(f"{name} {installed}")
    if missing:
        return CheckResult("packages", "fail", "missing: " + ", ".join(missing) + " (pip install -r requirements.txt)")
    if mismatched:
        return CheckResult("packages", "warn", "differs from requirements.txt: " + ", ".join(mismatched))
    key = [f for f in found if f.split()[0] in {"torch", "ray", "transformers", "trl", "datasets", "peft"}]
    return CheckResult("packages", "pass", ", ".join(key))


def check_torch() -> CheckResult:
    try:
        import torch
    except ImportError as exc:
        return CheckResult("torch device", "fail", f"torch does not import: {exc}")
    if torch.cuda.is_available():
        names = []
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            names.append(f"cuda:{index} {props.name} {props.total_memory / 2**30:.0f} GiB")
        return CheckResult("torch device", "pass", f"torch {torch.__version__}; " + "; ".join(names))
    return CheckResult("torch device", "warn",
                       f"torch {torch.__version__}: no CUDA GPU, CPU only (fine for the demo profile)")


def check_ray(config: Config) -> CheckResult:
    try:
        import ray
    except ImportError as exc:
        return CheckResult("ray", "fail", f"ray does not import: {exc}")
    started_here = False
    t0 = time.monotonic()
    try:
        if not ray.is_initialized():
            ray.init(address=config.ray.address, num_cpus=None if config.ray.address else (config.ray.num_cpus or 1),
                     include_dashboard=False, log_to_driver=False, configure_logging=False)
            started_here = True
        value = ray.get(ray.remote(lambda: 41 + 1).remote(), timeout=60)
        resources = ray.cluster_resources()
    except Exception as exc:  # noqa: BLE001 - report any failure to start
        return CheckResult("ray", "fail", f"Ray did not start on this node: {str(exc).splitlines()[0][:300]}")
    finally:
        if started_here and ray.is_initialized():
            ray.shutdown()
    if value != 42:
        return CheckResult("ray", "fail", "a Ray task returned a wrong result")
    return CheckResult("ray", "pass", f"Ray {ray.__version__} ran a task in {time.monotonic() - t0:.1f}s; "
                       f"CPUs {resources.get('CPU', 0):g}, GPUs {resources.get('GPU', 0):g}")


def check_sandbox() -> CheckResult:
    from deepcoder.tools.sandbox import isolation_status

    ok, detail = isolation_status()
    return CheckResult("sandbox", "pass" if ok else "fail", detail)


def check_teacher(config: Config) -> CheckResult:
    teacher = config.teacher
    if teacher.use_emulator:
        return CheckResult("teacher", "pass", "profile uses the loopback emulator (no key needed)")
    if teacher.api_key is None:
        return CheckResult("teacher", "warn", f"no key in {teacher.api_key_env}; endpoint not checked "
                           "(the demo profile needs none)")
    import httpx

    if teacher.provider == "groq":
        base = (teacher.base_url or "https://api.groq.com").rstrip("/") + "/openai/v1"
    else:
        base = (teacher.base_url or "https://api.deepseek.com").rstrip("/")
    try:
        response = httpx.get(f"{base}/models", timeout=10,
                             headers={"Authorization": f"Bearer {teacher.api_key.get_secret_value()}"})
    except httpx.HTTPError as exc:
        return CheckResult("teacher", "fail", f"{base} unreachable: {type(exc).__name__}")
    if response.status_code in (401, 403):
        return CheckResult("teacher", "fail", f"{base} rejected the key in {teacher.api_key_env} "
                           f"(HTTP {response.status_code})")
    if response.status_code != 200:
        return CheckResult("teacher", "fail", f"{base}/models answered HTTP {response.status_code}")
    models = [m.get("id") for m in response.json().get("data", []) if isinstance(m, dict)]
    if models and teacher.model not in models:
        return CheckResult("teacher", "fail", f"{base} does not serve model {teacher.model!r} "
                           "(decommissioned or misspelt); set teacher.model")
    return CheckResult("teacher", "pass", f"{base} reachable, model {teacher.model}")


def check_wandb(config: Config) -> CheckResult:
    mode = config.wandb.mode
    if mode == "online" and config.wandb.api_key is None:
        return CheckResult("wandb", "warn", "mode online but WANDB_API_KEY is not set; runs will fail to sync")
    return CheckResult("wandb", "pass", f"mode {mode}" + (" (key set)" if config.wandb.api_key else ""))


def run_checks(config: Config, *, skip_ray: bool = False) -> list[CheckResult]:
    checks: list[Callable[[], CheckResult]] = [
        check_python, check_packages, check_torch,
        *([] if skip_ray else [lambda: check_ray(config)]),
        check_sandbox, lambda: check_teacher(config), lambda: check_wandb(config),
    ]
    results = []
    for check in checks:
        try:
            results.append(check())
        except Exception as exc:  # noqa: BLE001 - a broken check is a failed check
            name = getattr(check, "__name__", "check").removeprefix("check_")
            results.append(CheckResult(name, "fail", f"check crashed: {type(exc).__name__}: {exc}"))
    return results
