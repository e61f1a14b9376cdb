"""Phase 4 end to end: for each model, benchmark samples + pass@k, the agentic suite, safety and
efficiency; then the comparison and the report.

Layout of ``out``::

    config.yaml            the resolved config (secrets masked)
    models.json            the model specs evaluated
    <model>/humaneval.jsonl (+ _results.jsonl), mbpp.jsonl (+ _results.jsonl), agentic.jsonl
    <model>/summary.json   pass@k, agentic metrics by group, efficiency, safety
    report.md, report.json, plots/

Every stage resumes: samples and episodes already stored are kept; pass@k is recomputed (it
takes seconds).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import statistics
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import yaml

from deepcoder.config import Config
from deepcoder.eval.agentic import load_suite, metrics_by_group, run_suite
from deepcoder.eval.runners import EvalError, ModelSpec, open_policy, sample_benchmark
from deepcoder.eval.safety import scan, summarise

logger = logging.getLogger(__name__)


def hardware() -> str:
    """What the numbers were measured on, for the KPI table."""
    import torch

    cpu = platform.processor() or platform.machine()
    text = f"{os.cpu_count()} CPU cores ({cpu}), {platform.system()}"
    if torch.cuda.is_available():  # pragma: no cover - GPU
        text += f", GPU {torch.cuda.get_device_name(0)}"
    else:
        text += ", no GPU"
    return text


def benchmark_tasks(name: str, limit: int | None):
    from deepcoder.data.problems import load_humaneval, load_mbpp

    tasks = load_humaneval() if name == "humaneval" else load_mbpp("test")
    return tasks[:limit] if limit else tasks


def _model_memory_mb(policy) -> float | None:
    model = getattr(policy, "model", None)
    if model is None or not hasattr(model, "parameters"):
        return None
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    total += sum(b.numel() * b.element_size() for b in model.buffers())
    return total / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def evaluate_model(spec: ModelSpec, config: Config, out: Path, *, show_progress: bool = True) -> dict:
    """One model through every configured benchmark; returns (and writes) its summary."""
    ev = config.eval
    folder = out / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    summary: dict = {"model": asdict(spec), "pass_at_k": {}, "agentic": None}
    bench = {name: benchmark_tasks(name, ev.max_problems) for name in ("humaneval", "mbpp") if name in ev.benchmarks}
    suite = load_suite(config) if "agentic" in ev.benchmarks else []
    known = [t for tasks in bench.values() for t in tasks] + suite
    started = time.monotonic()
    with open_policy(spec, config, known) as policy:
        summary["policy_name"] = getattr(policy, "name", spec.name)
        summary["model_memory_mb"] = _model_memory_mb(policy)
        for name, tasks in bench.items():
            from deepcoder.eval.functional import evaluate_samples

            samples = sample_benchmark(policy, name, tasks, folder / f"{name}.jsonl", n=ev.num_samples,
                                       temperature=ev.temperature, max_new_tokens=ev.max_new_tokens,
                                       concurrency=ev.concurrency, show_progress=show_progress)
            result = evaluate_samples(name, samples, k=ev.k, timeout_s=ev.timeout_s, workers=ev.workers,
                                      sandbox_config=config.sandbox, allow_subset=True,
                                      show_progress=show_progress)
            summary["pass_at_k"][name] = {"problems": len(tasks), "n": ev.num_samples, **_pass_at_k(result)}
        if suite:
            if hasattr(policy, "temperature"):
                policy.temperature = ev.agentic_temperature
            trajectories = run_suite(policy, suite, config, folder / "agentic.jsonl", show_progress=show_progress)
            summary["agentic"] = metrics_by_group(trajectories)
            summary["safety"] = summarise(scan(trajectories, spec.name))
            summary["latencies_s"] = [t.duration_s for t in trajectories if t.duration_s is not None]
        from deepcoder.agent.student import GenerationStats

        stats = getattr(policy, "stats", None)
        summary["generation"] = ({"tokens_per_s": stats.tokens_per_s, "completion_tokens": stats.completion_tokens,
                                  "seconds": stats.seconds} if isinstance(stats, GenerationStats) else None)
    summary["seconds"] = time.monotonic() - started
    summary["peak_rss_mb"] = _peak_rss_mb()
    summary["efficiency"] = efficiency(summary, spec, config)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def _pass_at_k(result: dict) -> dict:
    """The pass@k values of ``evaluate_samples``' result (it may nest them)."""
    values = result.get("pass_at_k", result)
    return {k: v for k, v in values.items() if str(k).startswith("pass@")}


def efficiency(summary: dict, spec: ModelSpec, config: Config) -> dict:
    """Latency, throughput and cost per 1k agentic tasks (teacher: price per token; student: the
    machine's hourly price times the measured time, one episode at a time)."""
    ev = config.eval
    agentic = (summary.get("agentic") or {})
    overall = _merge_groups(agentic)
    latencies = summary.get("latencies_s") or []
    out = {"latency_s_median": statistics.median(latencies) if latencies else None,
           "tokens_per_s": overall.get("tokens_per_s")}
    episodes = overall.get("episodes") or 0
    if episodes:
        if spec.role == "teacher":
            tokens_in = overall.get("prompt_tokens", 0) / episodes
            tokens_out = overall.get("completion_tokens", 0) / episodes
            out["usd_per_1k_tasks"] = 1000 * (tokens_in * ev.teacher_usd_per_mtok_in
                                              + tokens_out * ev.teacher_usd_per_mtok_out) / 1e6
            out["cost_basis"] = (f"teacher price ${ev.teacher_usd_per_mtok_in}/M in, "
                                 f"${ev.teacher_usd_per_mtok_out}/M out")
        elif overall.get("latency_s_mean"):
            out["usd_per_1k_tasks"] = 1000 * overall["latency_s_mean"] / 3600 * ev.student_usd_per_hour
            out["cost_basis"] = f"self-hosted at ${ev.student_usd_per_hour}/hour, one episode at a time"
    return out


def _merge_groups(agentic: dict) -> dict:
    """In-distribution and OOD together (weighted by episodes) for the efficiency figures."""
    groups = [g for name, g in agentic.items() if name in ("in_distribution", "ood") and g.get("episodes")]
    if not groups:
        return {}
    episodes = sum(g["episodes"] for g in groups)
    merged = {"episodes": episodes,
              "prompt_tokens": sum(g.get("prompt_tokens", 0) for g in groups),
              "completion_tokens": sum(g.get("completion_tokens", 0) for g in groups)}
    lat = [(g["latency_s_mean"], g["episodes"]) for g in groups if g.get("latency_s_mean") is not None]
    if lat:
        merged["latency_s_mean"] = sum(v * n for v, n in lat) / sum(n for _, n in lat)
        total_s = sum(v * n for v, n in lat)
        merged["tokens_per_s"] = merged["completion_tokens"] / total_s if total_s else None
    return merged


def kpis(summaries: dict[str, dict], student: str | None, teacher: str | None) -> list[dict]:
    """The seed's targets: the student keeps >= 85% of the teacher's success and is >= 10x faster."""
    if not student or not teacher or student not in summaries or teacher not in summaries:
        return []
    s, t = summaries[student], summaries[teacher]
    rows = []
    s_ok = ((s.get("agentic") or {}).get("in_distribution") or {}).get("success")
    t_ok = ((t.get("agentic") or {}).get("in_distribution") or {}).get("success")
    if s_ok is not None and t_ok:
        rows.append({"kpi": "agentic success, student / teacher", "target": ">= 0.85",
                     "value": s_ok / t_ok, "met": s_ok / t_ok >= 0.85})
    for bench in ("humaneval", "mbpp"):
        sp, tp = s["pass_at_k"].get(bench, {}).get("pass@1"), t["pass_at_k"].get(bench, {}).get("pass@1")
        if sp is not None and tp:
            rows.append({"kpi": f"{bench} pass@1, student / teacher", "target": ">= 0.85",
                         "value": sp / tp, "met": sp / tp >= 0.85})
    s_lat, t_lat = s["efficiency"].get("latency_s_median"), t["efficiency"].get("latency_s_median")
    if s_lat and t_lat:
        rows.append({"kpi": "episode latency, teacher / student (speed-up)", "target": ">= 10",
                     "value": t_lat / s_lat, "met": t_lat / s_lat >= 10})
    return rows


def evaluate(config: Config, models: Sequence[ModelSpec], out: str | Path, *, show_progress: bool = True,
             student: str | None = None, teacher: str | None = None) -> dict:
    """Evaluate ``models`` into ``out`` and write the report; returns the report's JSON."""
    from deepcoder.eval.report import write_report

    if not models:
        raise EvalError("no models to evaluate: pass --model NAME=SOURCE and/or --model teacher")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise EvalError(f"model names must be unique, got {names}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config.masked_dict(), sort_keys=False), encoding="utf-8")
    (out / "models.json").write_text(json.dumps([asdict(m) for m in models], indent=2), encoding="utf-8")
    summaries = {m.name: evaluate_model(m, config, out, show_progress=show_progress) for m in models}
    teacher = teacher or next((m.name for m in models if m.role == "teacher"), None)
    student = student or next((m.name for m in models if m.role == "student" and m.name != "base"), None)
    return write_report(out, summaries, kpis(summaries, student, teacher), hardware(), config)
