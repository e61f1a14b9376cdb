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


# --------------------------------------------------------------------------------------------
# Phase checks: `deepcoder verify --phase N [--run DIR]` checks a pipeline run's artefacts.

PHASES = {1: "teacher, tools and trajectories", 2: "span accuracy and mask alignment",
          3: "training, checkpoint, agent format", 4: "benchmarks and metrics", 5: "the serving API"}


def _guard(name: str, fn: Callable[[], CheckResult]) -> CheckResult:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - a crashed check is a failed check, with the reason
        return CheckResult(name, "fail", f"check crashed: {type(exc).__name__}: {str(exc)[:300]}")


def _teacher_reachable(config: Config) -> CheckResult:
    """A real request to the teacher: the emulator (started here) or the configured endpoint."""
    if not config.teacher.use_emulator:
        return check_teacher(config)
    import asyncio

    from deepcoder.agent.prompts import build_messages
    from deepcoder.data.problems import load_problem_set
    from deepcoder.eval.runners import ModelSpec, open_policy

    task = load_problem_set("math", split="heldout", limit=1)[0]
    with open_policy(ModelSpec("teacher", "teacher"), config, [task]) as teacher:
        reply = asyncio.run(teacher.agenerate(build_messages("", task, [])))
    ok = bool(reply.text.strip() or (reply.reasoning or "").strip())
    return CheckResult("teacher", "pass" if ok else "fail",
                       "emulator answered a chat completion through the groq client" if ok else "empty reply")


def _tools_work(config: Config) -> CheckResult:
    from deepcoder.tools.registry import build_tools

    tools = build_tools(config)
    python = tools.call("python", {"code": "print(6 * 7)"})
    found = tools.call("retrieve", {"query": "greatest common divisor of integers"})
    ok = python.ok and python.observation.strip() == "42" and found.ok and "gcd" in found.observation
    return CheckResult("tools", "pass" if ok else "fail",
                       "python ran in the sandbox, retrieve found math.gcd" if ok
                       else f"python: {python.observation[:100]!r}; retrieve: {found.observation[:100]!r}")


def _trajectories_verify(config: Config, run: Path, sample: int = 40) -> CheckResult:
    """Re-check a sample of stored trajectories with the task checkers (>= 90% must pass)."""
    from deepcoder.agent.grading import check
    from deepcoder.eval.agentic import read_trajectories

    path = run / "trajectories.jsonl"
    if not path.is_file():
        return CheckResult("trajectories", "fail", f"{path} not found: run the pipeline (or `deepcoder generate`)")
    trajectories = read_trajectories(path)
    if not trajectories:
        return CheckResult("trajectories", "fail", f"{path} is empty")
    step = max(1, len(trajectories) // sample)
    chosen = trajectories[::step][:sample]
    passed = sum(check(t.task, t.final_answer, sandbox=config.sandbox).passed for t in chosen)
    rate = passed / len(chosen)
    return CheckResult("trajectories", "pass" if rate >= 0.9 else "fail",
                       f"{passed}/{len(chosen)} re-verified = {rate:.0%} (target 90%) of {len(trajectories)} stored")


def _span_accuracy(run: Path, sample: int = 200, *, required: bool = True) -> CheckResult:
    """Render each step, segment and parse it again: the REASON/ACT spans must give back the same
    thought, action and input (target 98% of steps)."""
    from deepcoder.agent.format import parse_steps
    from deepcoder.eval.agentic import read_trajectories

    path = run / "trajectories.jsonl"
    if not path.is_file():
        return CheckResult("span accuracy", "fail" if required else "warn", f"{path} not found")
    total = same = 0
    for t in read_trajectories(path)[:sample]:
        parsed = parse_steps(t.text()).steps
        for original, again in zip(t.steps, parsed):
            total += 1
            same += (original.action == again.action and (original.thought or "").strip() == (again.thought or "").strip()
                     and original.tool_input == again.tool_input)
        total += max(0, len(t.steps) - len(parsed))
    rate = same / total if total else 0.0
    return CheckResult("span accuracy", "pass" if rate >= 0.98 else "fail",
                       f"{same}/{total} steps segment back to the same thought/action/input = {rate:.1%} (target 98%)")


def _mask_alignment(folder: Path) -> CheckResult:
    from deepcoder.data.build import verify_dataset

    if not (folder / "hf").is_dir():
        return CheckResult("mask alignment", "fail", f"{folder} has no built dataset")
    result = verify_dataset(folder)
    ok = not result["problems"] and result["rows_checked"] > 0
    return CheckResult("mask alignment", "pass" if ok else "fail",
                       f"{result['rows_checked']} rows checked, {len(result['problems'])} problems"
                       + (f": {result['problems'][:2]}" if result["problems"] else ""))


def _training_ran(run: Path) -> CheckResult:
    import json

    summary_path = run / "train" / "train_summary.json"
    if not summary_path.is_file():
        return CheckResult("training", "fail", f"{summary_path} not found: training did not finish")
    summary = json.loads(summary_path.read_text())
    logs = [json.loads(line) for line in (run / "train" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logs if "loss" in r and "eval_loss" not in r]
    fell = len(losses) >= 2 and losses[-1] < losses[0]
    ok = summary["global_step"] > 0 and fell
    return CheckResult("training", "pass" if ok else "fail",
                       f"{summary['global_step']} steps; train loss {losses[0]:.3f} -> {losses[-1]:.3f}"
                       if losses else "no logged losses")


def _student_emits_format(config: Config, run: Path) -> CheckResult:
    """Load the exported student and ask it two held-out tasks: a reply must parse into a
    Thought and an Action."""
    from deepcoder.agent.format import parse_steps
    from deepcoder.agent.prompts import OBSERVATION_STOP, build_messages, system_prompt
    from deepcoder.agent.student import StudentPolicy
    from deepcoder.data.problems import load_problem_set
    from deepcoder.tools.registry import build_tools

    merged = run / "train" / "final" / "merged"
    if not (merged / "config.json").is_file():
        return CheckResult("student format", "fail", f"{merged} holds no exported model")
    student = StudentPolicy.load(str(merged), max_new_tokens=160)
    tools = build_tools(config)
    system = system_prompt(tools.describe(), tools.names())
    tasks = load_problem_set("math", split="heldout", limit=1) + load_problem_set("mbpp", split="heldout", limit=1)
    parsed = []
    for task in tasks:
        reply = student.generate(build_messages(system, task, []), stop=OBSERVATION_STOP).text
        steps = parse_steps(reply).steps
        parsed.append(bool(steps and steps[0].thought and steps[0].action))
    ok = any(parsed)
    return CheckResult("student format", "pass" if ok else "fail",
                       f"checkpoint loads; {sum(parsed)}/{len(parsed)} held-out replies parse as Thought + Action")


def _benchmarks_recorded(run: Path) -> CheckResult:
    import json

    path = run / "eval" / "report.json"
    if not path.is_file():
        return CheckResult("benchmarks", "fail", f"{path} not found: the evaluate stage did not finish")
    report = json.loads(path.read_text())
    problems, seen = [], []
    for model, summary in report["summaries"].items():
        for bench, result in summary["pass_at_k"].items():
            values = [v for k, v in result.items() if k.startswith("pass@")]
            if not values or not all(0 <= v <= 1 for v in values):
                problems.append(f"{model}/{bench}: no pass@k")
            seen.append(f"{model}/{bench}")
        agentic = (summary.get("agentic") or {}).get("in_distribution") or {}
        if agentic.get("episodes", 0) <= 0:
            problems.append(f"{model}: no agentic episodes")
        else:
            seen.append(f"{model}/agentic")
    for name in report.get("plots", []):
        if not (run / "eval" / name).is_file():
            problems.append(f"plot {name} missing")
    ok = not problems and bool(seen)
    return CheckResult("benchmarks", "pass" if ok else "fail",
                       f"recorded: {', '.join(seen)}" if ok else "; ".join(problems) or "nothing recorded")


def _serving_api(config: Config, run: Path) -> CheckResult:
    from deepcoder.serve.smoke import serve_smoke

    merged = run / "train" / "final" / "merged"
    result = serve_smoke(config, model=str(merged) if (merged / "config.json").is_file() else None,
                         check_limits=True)
    ok = result.get("ok", False)
    return CheckResult("serving", "pass" if ok else "fail", result.get("detail", str(result))[:400])


def run_phase(config: Config, phase: int, run: Path, *, dataset: Path | None = None) -> list[CheckResult]:
    """The checks of one phase against the pipeline output folder ``run`` (phase 2 checks the
    masks of ``dataset`` instead of the run's when given)."""
    checks: dict[int, list[tuple[str, Callable[[], CheckResult]]]] = {
        1: [("teacher", lambda: _teacher_reachable(config)), ("tools", lambda: _tools_work(config)),
            ("trajectories", lambda: _trajectories_verify(config, run))],
        2: [("span accuracy", lambda: _span_accuracy(run, required=dataset is None)), ("mask alignment", lambda: _mask_alignment(dataset or run / "dataset"))],
        3: [("training", lambda: _training_ran(run)), ("student format", lambda: _student_emits_format(config, run))],
        4: [("benchmarks", lambda: _benchmarks_recorded(run))],
        5: [("serving", lambda: _serving_api(config, run))],
    }
    return [_guard(name, fn) for name, fn in checks[phase]]
