"""The embedded-default demo: what exists of the pipeline, end to end, with no key and no GPU.

1. **Generate**: the loopback Groq emulator plays the teacher (the reference teacher, an offline
   stand-in), the real groq client talks to it from Ray actors under the shared rate limiter,
   tools run in the sandbox and the BM25 index, trajectories are stored durably.
2. **QC report**: every trajectory is parsed and checked again; a Markdown report with plots.
3. **Dataset**: Ray Data turns the trajectories into REASON/ACT token masks in the student's chat
   format (train/validation DatasetDict, Parquet, tokenizer, stats), then every row is verified.

Re-running resumes: stored trajectories are kept and skipped. Later stages (dataset, training,
evaluation, serving) extend this demo as they land.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from deepcoder.config import Config
from deepcoder.data.build import build_dataset, verify_dataset
from deepcoder.data.report import write_report
from deepcoder.teacher.generate import generate


def run_demo(config: Config, out_dir: str | Path, limit: int | None = None, console: Console | None = None) -> dict:
    """Run the demo into ``out_dir``; returns the generation summary and the quality stats."""
    console = console or Console()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trajectories = out / "trajectories.jsonl"
    console.rule("[bold]1. generate[/] (Groq emulator + reference teacher, Ray actors, sandbox, retrieval)")
    summary = generate(config, trajectories, limit=limit, resume=True)
    console.print(f"{summary.written} new, {summary.skipped} already stored; teacher: {summary.teacher}")
    console.rule("[bold]2. quality report[/]")
    report = write_report(trajectories, out / "report", max_tokens=config.data.max_seq_len, sandbox=config.sandbox)
    stats = json.loads((report.parent / "quality.json").read_text(encoding="utf-8"))

    table = Table(title="Trajectories by source")
    for column in ("source", "records", "kept", "verified", "format valid", "tool success"):
        table.add_column(column)
    for source, row in sorted(stats["by_source"].items()):
        table.add_row(source, str(row["total"]), str(row["kept"]), _pct(row.get("verified_rate")),
                      _pct(row.get("format_validity_rate")), _pct(row.get("tool_success_rate")))
    console.print(table)
    console.print(f"kept {stats['kept']}/{stats['total']}; trajectories: {trajectories}; report: {report}")
    console.rule("[bold]3. dataset[/] (Ray Data: segment, chat template, tokenize, masks)")
    dataset = build_dataset(config, str(trajectories), out / "dataset", overwrite=True)
    check = verify_dataset(out / "dataset")
    console.print(f"{dataset['train']} train / {dataset['validation']} validation examples, "
                  f"{dataset['trained_tokens']} trained tokens (REASON {dataset['span_share']['reason']:.0%}, "
                  f"ACT {dataset['span_share']['act']:.0%}); alignment check: {check['rows_checked']} rows, "
                  f"{len(check['problems'])} problems")
    result = {"generation": summary.to_dict(), "quality": {k: stats[k] for k in ("total", "kept", "verified")},
              "dataset": {k: dataset[k] for k in ("train", "validation", "dropped", "trained_tokens")},
              "alignment_problems": len(check["problems"])}
    (out / "summary.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"
