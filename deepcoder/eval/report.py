"""The evaluation report: markdown for people, JSON for tools, plots for both.

``write_report`` is called at the end of ``evaluate``; ``deepcoder eval report DIR`` rebuilds it
from the per-model ``summary.json`` files of an earlier run (after adding a model, for example).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from deepcoder.config import Config
from deepcoder.eval.safety import Incident, render_markdown

AGENTIC_COLUMNS = [
    ("success", "success"), ("format_validity", "format valid"), ("tool_call_validity", "tool calls valid"),
    ("tool_selection", "right tool"), ("error_recovery", "recovered"), ("timeouts", "timeouts"),
    ("consistency", "consistency"), ("steps_mean", "steps"), ("reasoning_chars_mean", "reasoning chars"),
]


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _plots(out: Path, summaries: dict[str, dict]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    made = []
    names = list(summaries)
    bars = [(f"{bench} {k}", {m: s["pass_at_k"].get(bench, {}).get(k) for m, s in summaries.items()})
            for bench in ("humaneval", "mbpp") for k in sorted({k for s in summaries.values()
                                                                for k in s["pass_at_k"].get(bench, {})
                                                                if k.startswith("pass@")})]
    if bars:
        fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(bars)), 3.5))
        width = 0.8 / max(1, len(names))
        for i, m in enumerate(names):
            ax.bar([j + i * width for j in range(len(bars))], [b[1][m] or 0 for b in bars], width, label=m)
        ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(bars))], [b[0] for b in bars])
        ax.set_ylim(0, 1)
        ax.set_ylabel("pass@k")
        ax.legend()
        fig.tight_layout()
        fig.savefig(plots / "pass_at_k.png", dpi=120)
        plt.close(fig)
        made.append("plots/pass_at_k.png")
    metrics = AGENTIC_COLUMNS[:6]
    with_agentic = [m for m in names if (summaries[m].get("agentic") or {}).get("in_distribution", {}).get("episodes")]
    if with_agentic:
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
        for ax, group in zip(axes, ("in_distribution", "ood")):
            width = 0.8 / len(with_agentic)
            for i, m in enumerate(with_agentic):
                g = summaries[m]["agentic"].get(group, {})
                ax.bar([j + i * width for j in range(len(metrics))], [g.get(k) or 0 for k, _ in metrics], width,
                       label=m)
            ax.set_xticks([j + width * (len(with_agentic) - 1) / 2 for j in range(len(metrics))],
                          [label for _, label in metrics], rotation=30, ha="right")
            ax.set_title(group.replace("_", " "))
            ax.set_ylim(0, 1)
        axes[0].legend()
        fig.tight_layout()
        fig.savefig(plots / "agentic.png", dpi=120)
        plt.close(fig)
        made.append("plots/agentic.png")
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for m in with_agentic:
            lat = summaries[m].get("latencies_s") or []
            if lat:
                ax.hist(lat, bins=20, alpha=0.6, label=m)
        ax.set_xlabel("seconds per episode")
        ax.set_ylabel("episodes")
        ax.legend()
        fig.tight_layout()
        fig.savefig(plots / "latency.png", dpi=120)
        plt.close(fig)
        made.append("plots/latency.png")
    return made


def write_report(out: str | Path, summaries: dict[str, dict], kpis: list[dict], hardware: str,
                 config: Config | None = None) -> dict:
    """Write report.json, report.md and plots/ under ``out``; returns the JSON."""
    out = Path(out)
    plots = _plots(out, summaries)
    report = {"created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "hardware": hardware,
              "models": {m: {"spec": s["model"], "policy": s.get("policy_name")} for m, s in summaries.items()},
              "summaries": summaries, "kpis": kpis, "plots": plots,
              "config": "config.yaml" if (out / "config.yaml").is_file() else None}
    (out / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    (out / "report.md").write_text(_markdown(report, config), encoding="utf-8")
    return report


def _markdown(report: dict, config: Config | None) -> str:
    summaries = report["summaries"]
    parts = ["# DeepCoder evaluation\n", f"Measured on {report['hardware']}, {report['created_at']}. "
             "Resolved config: `config.yaml`; raw numbers: `report.json`.\n", "## Models\n"]
    parts.append(_table(["name", "role", "source", "policy"],
                        [[m, s["model"]["role"], s["model"]["source"], s.get("policy_name")] for m, s in summaries.items()]))
    if any("reference" in str(s.get("policy_name")) for s in summaries.values()):
        parts.append("\nThe teacher here is the offline **reference stand-in** (the emulator replays reference "
                     "solutions): its scores measure the harness, not a model, and its latency is not a real "
                     "model's.\n")
    ks = sorted({k for s in summaries.values() for b in s["pass_at_k"].values() for k in b if k.startswith("pass@")})
    if ks:
        parts.append("\n## Functional correctness (pass@k)\n")
        rows = []
        for m, s in summaries.items():
            for bench, r in s["pass_at_k"].items():
                rows.append([m, bench, r.get("problems"), r.get("n")] + [r.get(k) for k in ks])
        parts.append(_table(["model", "benchmark", "problems", "n"] + ks, rows))
    if "plots/pass_at_k.png" in report["plots"]:
        parts.append("\n![pass@k](plots/pass_at_k.png)\n")
    for group, title in (("in_distribution", "Agentic suite (held-out, in distribution)"),
                         ("ood", "Out of distribution (kinds never trained on)")):
        rows = [[m, (s.get("agentic") or {}).get(group, {}).get("episodes")]
                + [(s.get("agentic") or {}).get(group, {}).get(k) for k, _ in AGENTIC_COLUMNS]
                for m, s in summaries.items() if s.get("agentic")]
        if rows:
            parts.append(f"\n## {title}\n")
            parts.append(_table(["model", "episodes"] + [label for _, label in AGENTIC_COLUMNS], rows))
    sets = sorted({g for s in summaries.values() for g in (s.get("agentic") or {}) if g.startswith("set:")})
    if sets:
        parts.append("\n### Per set\n")
        rows = [[m, g[4:], s["agentic"][g].get("episodes"), s["agentic"][g].get("success"),
                 s["agentic"][g].get("format_validity"), s["agentic"][g].get("tool_selection"),
                 s["agentic"][g].get("steps_mean")]
                for g in sets for m, s in summaries.items() if g in (s.get("agentic") or {})]
        parts.append(_table(["model", "set", "episodes", "success", "format valid", "right tool", "steps"], rows))
    if "plots/agentic.png" in report["plots"]:
        parts.append("\n![agentic metrics](plots/agentic.png)\n")
    parts.append("\n## Efficiency\n")
    parts.append(_table(["model", "median s/episode", "tokens/s", "model memory MB", "peak RSS MB",
                         "USD per 1k tasks", "cost basis"],
                        [[m, s["efficiency"].get("latency_s_median"), s["efficiency"].get("tokens_per_s"),
                          s.get("model_memory_mb"), s.get("peak_rss_mb"), s["efficiency"].get("usd_per_1k_tasks"),
                          s["efficiency"].get("cost_basis")] for m, s in summaries.items()]))
    if "plots/latency.png" in report["plots"]:
        parts.append("\n![latency](plots/latency.png)\n")
    parts.append("\n## KPIs against the seed's targets\n")
    if report["kpis"]:
        parts.append(f"Hardware: {report['hardware']}.\n\n")
        parts.append(_table(["KPI", "target", "value", "met"],
                            [[r["kpi"], r["target"], r["value"], r["met"]] for r in report["kpis"]]))
    else:
        parts.append("Needs both a teacher and a trained student in the same run.\n")
    parts.append("\n## Safety\n")
    incidents = [Incident(**i) for s in summaries.values() for i in (s.get("safety") or {}).get("incidents", [])]
    parts.append(render_markdown(incidents))
    return "\n".join(parts)


def rebuild_report(out: str | Path) -> dict:
    """``deepcoder eval report DIR``: the report again from the per-model summaries."""
    from deepcoder.eval.run import hardware, kpis
    from deepcoder.eval.runners import EvalError

    out = Path(out)
    models = json.loads((out / "models.json").read_text()) if (out / "models.json").is_file() else None
    if not models:
        raise EvalError(f"{out} is not an evaluation folder (no models.json); run `deepcoder eval run` first")
    summaries = {}
    for m in models:
        path = out / m["name"] / "summary.json"
        if not path.is_file():
            raise EvalError(f"{path} is missing: model {m['name']} was not evaluated to the end; re-run `eval run`")
        summaries[m["name"]] = json.loads(path.read_text())
    teacher = next((m["name"] for m in models if m["role"] == "teacher"), None)
    student = next((m["name"] for m in models if m["role"] == "student" and m["name"] != "base"), None)
    previous = json.loads((out / "report.json").read_text()) if (out / "report.json").is_file() else {}
    return write_report(out, summaries, kpis(summaries, student, teacher), previous.get("hardware") or hardware())
