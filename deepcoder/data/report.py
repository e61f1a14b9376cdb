"""A Markdown quality report over a trajectories file, with plots and the stats as JSON.

Meant to be read before training: it shows how much of the generated data survives the
quality filter, why the rest is dropped, and where (which problem set, which tool) it goes wrong.
Plots are drawn with matplotlib's object API on the Agg canvas, so no display or global
pyplot state is needed and the function is safe to call from a CLI, a test or a Ray worker.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Sequence

from matplotlib.figure import Figure

from deepcoder.config import SandboxConfig
from deepcoder.data.quality import REASONS, Assessment, QualityStats, assess_file, summarise

PLOTS = {
    "steps": ("steps_per_trajectory.png", "Steps per trajectory"),
    "tokens": ("tokens_per_trajectory.png", "Tokens per trajectory"),
    "tools": ("tool_calls_by_tool.png", "Tool calls by tool"),
    "reasons": ("failure_reasons.png", "Failure reasons"),
}
"""Plot key -> (file name in the output folder, title)."""

MAX_EXAMPLES = 20
KEPT_COLOUR, DROPPED_COLOUR = "#2a9d8f", "#e76f51"


# ------------------------------------------------------------------------------------ plots


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _empty(ax, message: str) -> None:
    """An explicit 'nothing to show' beats a blank axis that looks like a rendering bug."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=12, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_steps(assessments: Sequence[Assessment], path: Path) -> None:
    """Histogram of steps per trajectory, one bar per step count, kept and dropped stacked."""
    readable = [a for a in assessments if "unreadable" not in a.reasons]
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    ax.set_title(f"{PLOTS['steps'][1]} ({len(readable)} readable)")
    if not readable:
        _empty(ax, "no readable trajectories")
    else:
        kept = Counter(a.steps for a in readable if a.keep)
        dropped = Counter(a.steps for a in readable if not a.keep)
        low, high = min(a.steps for a in readable), max(a.steps for a in readable)
        xs = list(range(low, high + 1))  # one bar per step count, empty ones included
        ax.bar(xs, [kept[x] for x in xs], color=KEPT_COLOUR, edgecolor="white",
               label=f"kept ({sum(kept.values())})")
        ax.bar(xs, [dropped[x] for x in xs], bottom=[kept[x] for x in xs], color=DROPPED_COLOUR,
               edgecolor="white", label=f"dropped ({sum(dropped.values())})")
        ax.set_xlim(low - 1, high + 1)
        if len(xs) <= 30:
            ax.set_xticks(xs)
        else:
            ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("steps in the trajectory")
        ax.set_ylabel("trajectories")
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.legend()
    _save(fig, path)


def plot_tokens(assessments: Sequence[Assessment], max_tokens: int | None, path: Path) -> None:
    """Histogram of tokens per trajectory, kept and dropped stacked, with the limit marked."""
    readable = [a for a in assessments if "unreadable" not in a.reasons]
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    estimated = sum(a.tokens_estimated for a in readable)
    note = f" ({len(readable)} readable" + (f", {estimated} estimated from text)" if estimated else ")")
    ax.set_title(PLOTS["tokens"][1] + note)
    if not readable:
        _empty(ax, "no readable trajectories")
    else:
        kept = [a.tokens for a in readable if a.keep]
        dropped = [a.tokens for a in readable if not a.keep]
        ax.hist([kept, dropped], bins=min(40, max(5, len(readable) // 2)), stacked=True,
                color=[KEPT_COLOUR, DROPPED_COLOUR], label=[f"kept ({len(kept)})", f"dropped ({len(dropped)})"],
                edgecolor="white")
        if max_tokens is not None:
            ax.axvline(max_tokens, color="black", linestyle="--", linewidth=1.2, label=f"limit ({max_tokens})")
        ax.set_xlabel("tokens in the trajectory")
        ax.set_ylabel("trajectories")
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.legend()
    _save(fig, path)


def plot_tools(stats: QualityStats, path: Path) -> None:
    """Successful and failed calls per tool, side by side, so a flaky tool stands out."""
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    ax.set_title(PLOTS["tools"][1])
    if not stats.tools:
        _empty(ax, "no tool calls")
    else:
        names = list(stats.tools)
        ok = [stats.tools[n]["ok"] for n in names]
        failed = [stats.tools[n]["failed"] for n in names]
        xs = range(len(names))
        width = 0.4
        bars_ok = ax.bar([x - width / 2 for x in xs], ok, width, color=KEPT_COLOUR, label="succeeded")
        bars_failed = ax.bar([x + width / 2 for x in xs], failed, width, color=DROPPED_COLOUR, label="failed")
        ax.bar_label(bars_ok)
        ax.bar_label(bars_failed)
        ax.set_xticks(list(xs), names)
        ax.set_xlabel("tool")
        ax.set_ylabel("calls")
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.margins(y=0.15)
        ax.legend()
    _save(fig, path)


def plot_reasons(stats: QualityStats, path: Path) -> None:
    """Trajectories per failure reason (one trajectory can have several reasons)."""
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    ax.set_title(f"{PLOTS['reasons'][1]} ({stats.dropped} of {stats.total} trajectories dropped)")
    names = list(REASONS)
    counts = [stats.reasons.get(n, 0) for n in names]
    bars = ax.barh(names, counts, color=DROPPED_COLOUR)
    ax.bar_label(bars, padding=3)
    ax.invert_yaxis()  # vocabulary order, top to bottom
    ax.set_xlabel("trajectories (a trajectory can have several reasons)")
    ax.set_ylabel("reason")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.margins(x=0.15)
    _save(fig, path)


# ------------------------------------------------------------------------------------ markdown


def _pct(rate: float | None) -> str:
    return "n/a" if rate is None else f"{100 * rate:.1f}%"


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _number(value: float | int | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:g}" if isinstance(value, float) else str(value)


def render_markdown(stats: QualityStats, assessments: Sequence[Assessment], source: Path) -> str:
    """The report text; plots are referenced by their file names in the same folder."""
    out = [
        "# Trajectory quality report",
        "",
        f"- Source: `{source}`",
        f"- Generated: {time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"- Token limit: {stats.max_tokens if stats.max_tokens is not None else 'none'}",
        f"- Verification: {'re-run with the task checkers' if stats.reverified else 'as stored in the records'}",
        "",
        "## Totals",
        "",
    ]
    out += _table(["", "count", "rate"], [
        ["records", stats.total, ""],
        ["readable", stats.readable, _pct(stats.readable / stats.total if stats.total else None)],
        ["kept", stats.kept, _pct(stats.kept_rate)],
        ["dropped", stats.dropped, _pct(1 - stats.kept_rate if stats.kept_rate is not None else None)],
        ["verified", stats.verified, _pct(stats.verified_rate)],
        ["format valid", stats.format_valid, _pct(stats.format_validity_rate)],
        ["tool calls succeeded", stats.tool_calls - stats.failed_tool_calls, _pct(stats.tool_success_rate)],
    ])
    out += [
        f"Verified rate: **{_pct(stats.verified_rate)}** of readable trajectories. "
        f"Format validity: **{_pct(stats.format_validity_rate)}**. "
        f"Tool success: **{_pct(stats.tool_success_rate)}** "
        f"({stats.tool_calls - stats.failed_tool_calls} of {stats.tool_calls} calls).",
        "",
        "## Failure reasons",
        "",
        "A trajectory is kept only when it has none of these; it can have several.",
        "",
    ]
    out += _table(["reason", "meaning", "trajectories", "share of records"],
                  [[f"`{r}`", REASONS[r], stats.reasons.get(r, 0),
                    _pct(stats.reasons.get(r, 0) / stats.total if stats.total else None)] for r in REASONS])
    out += [f"![{PLOTS['reasons'][1]}]({PLOTS['reasons'][0]})", "", "## Per source", ""]
    out += _table(["source", "records", "kept", "verified", "format valid", "tool success"] + list(REASONS),
                  [[name, row.total, f"{row.kept} ({_pct(row.kept_rate)})", _pct(row.verified_rate),
                    _pct(row.format_validity_rate), _pct(row.tool_success_rate)]
                   + [row.reasons.get(r, 0) for r in REASONS]
                   for name, row in stats.by_source.items()])
    out += ["## Tool calls", ""]
    out += _table(["tool", "calls", "succeeded", "failed", "success rate"],
                  [[name, c["ok"] + c["failed"], c["ok"], c["failed"],
                    _pct(c["ok"] / (c["ok"] + c["failed"]) if c["ok"] + c["failed"] else None)]
                   for name, c in stats.tools.items()] or [["(none)", 0, 0, 0, "n/a"]])
    out += [f"![{PLOTS['tools'][1]}]({PLOTS['tools'][0]})", "", "## Steps and tokens", ""]
    out += _table(["per trajectory", "min", "median", "mean", "p90", "max", "total"],
                  [[label, *(_number(getattr(d, k)) for k in ("min", "median", "mean", "p90", "max", "total"))]
                   for label, d in (("steps", stats.steps), ("tokens", stats.tokens))])
    if stats.tokens_estimated:
        out += [f"Tokens of {stats.tokens_estimated} trajectories had no recorded usage and were estimated "
                "from the text (about 4 characters per token).", ""]
    out += [f"![{PLOTS['steps'][1]}]({PLOTS['steps'][0]})", "",
            f"![{PLOTS['tokens'][1]}]({PLOTS['tokens'][0]})", ""]

    dropped = [a for a in assessments if not a.keep]
    if dropped:
        out += [f"## Dropped examples (first {min(MAX_EXAMPLES, len(dropped))} of {len(dropped)})", ""]
        out += _table(["line", "problem", "source", "reasons", "detail"],
                      [[a.line_no, a.problem_id or "-", a.source, ", ".join(a.reasons), _detail(a)]
                       for a in dropped[:MAX_EXAMPLES]])
    return "\n".join(out)


def _detail(a: Assessment) -> str:
    """The most telling detail for a dropped trajectory, shortened for a table cell."""
    parts = []
    if "unreadable" in a.reasons or "unverified" in a.reasons:
        parts.append(a.verification or "no verdict recorded")
    if "incomplete" in a.reasons:
        parts.append(f"status {a.status}")
    if a.format_problems:
        parts.append(a.format_problems[0])
    if "too_long" in a.reasons:
        parts.append(f"{a.tokens} tokens")
    text = "; ".join(parts)
    return text if len(text) <= 120 else text[:117] + "..."


# ------------------------------------------------------------------------------------ entry


def write_report(trajectories_path: str | Path, out_dir: str | Path, *, max_tokens: int | None,
                 reverify: bool = False, sandbox: SandboxConfig | None = None,
                 progress: bool | None = None) -> Path:
    """Assess ``trajectories_path`` and write ``report.md``, ``quality.json`` and the PNG plots
    into ``out_dir``; returns the path of ``report.md``."""
    source = Path(trajectories_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    assessments = [a for _, a in assess_file(source, max_tokens=max_tokens, reverify=reverify,
                                             sandbox=sandbox, progress=progress)]
    stats = summarise(assessments, max_tokens=max_tokens, reverified=reverify)

    plot_steps(assessments, out / PLOTS["steps"][0])
    plot_tokens(assessments, max_tokens, out / PLOTS["tokens"][0])
    plot_tools(stats, out / PLOTS["tools"][0])
    plot_reasons(stats, out / PLOTS["reasons"][0])
    (out / "quality.json").write_text(json.dumps(stats.to_dict(), indent=2) + "\n", encoding="utf-8")
    report = out / "report.md"
    report.write_text(render_markdown(stats, assessments, source) + "\n", encoding="utf-8")
    return report
