"""The whole distillation as one resumable job: generate, QC, dataset, train, evaluate, report, serve.

Each stage writes its outputs under ``out`` and then a marker ``stages/<stage>.json`` holding a
fingerprint of what it was run from: the config sections it reads and the fingerprints of the
stages it consumes. A re-run skips a stage whose marker matches and whose outputs still check
out, so a crash or kill costs only the stage that was running (and that stage resumes too:
generation keeps stored trajectories, training restarts from its last checkpoint, evaluation
keeps stored samples and episodes). ``force`` redoes named stages; stages downstream of a redone
one re-run because their fingerprints change.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from rich.console import Console
from rich.table import Table

from deepcoder.config import Config

logger = logging.getLogger(__name__)

STAGES = ("generate", "qc", "dataset", "train", "evaluate", "report", "serve")


class PipelineError(RuntimeError):
    """A stage finished but its outputs are not usable (names the stage and what to do)."""


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    sections: tuple[str, ...]  # config sections whose change invalidates the stage
    inputs: tuple[str, ...]  # stages it consumes


STAGE_SPECS = {s.name: s for s in (
    Stage("generate", "generate trajectories (teacher via Ray actors, sandbox, retrieval)",
          ("teacher", "emulator", "generation"), ()),
    Stage("qc", "quality report", ("data",), ("generate",)),
    Stage("dataset", "build the dataset (Ray Data: REASON/ACT masks)", ("data", "student"), ("generate",)),
    Stage("train", "SAD-train the student (LoRA)", ("student", "training"), ("dataset",)),
    Stage("evaluate", "evaluate teacher, base and SAD student", ("eval", "sandbox"), ("train",)),
    Stage("report", "write the pipeline report", (), ("generate", "qc", "dataset", "train", "evaluate")),
    Stage("serve", "serve the SAD student, answer one request, stop", ("serve",), ("train",)),
)}

FORCE_CLEARS = {"generate": ["trajectories.jsonl"], "qc": ["qc"], "dataset": ["dataset"], "train": ["train"],
                "evaluate": ["eval"], "report": ["report.md"], "serve": []}


class Pipeline:
    """Runs ``STAGES`` in order into ``out`` (see the module docstring)."""

    def __init__(self, config: Config, out: str | Path, *, force: Sequence[str] = (), skip: Sequence[str] = (),
                 console: Console | None = None) -> None:
        unknown = [s for s in (*force, *skip) if s not in STAGES]
        if unknown:
            raise PipelineError(f"unknown stage(s) {', '.join(unknown)}; stages are {', '.join(STAGES)}")
        self.config = config
        self.out = Path(out)
        self.force = set(force)
        self.skip = set(skip)
        self.console = console or Console()
        self.fingerprints: dict[str, str] = {}
        self.results: dict[str, dict] = {}
        self.timings: dict[str, tuple[str, float]] = {}

    # -- markers ----------------------------------------------------------------------------------

    def _marker(self, name: str) -> Path:
        return self.out / "stages" / f"{name}.json"

    def _fingerprint(self, stage: Stage) -> str:
        dump = self.config.masked_dict()
        payload = {"stage": stage.name, "config": {s: dump.get(s) for s in stage.sections},
                   "inputs": {i: self.fingerprints.get(i) for i in stage.inputs}}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def _cached(self, stage: Stage, fingerprint: str) -> dict | None:
        marker = self._marker(stage.name)
        if stage.name in self.force or not marker.is_file():
            return None
        try:
            saved = json.loads(marker.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return None
        if saved.get("fingerprint") != fingerprint or not self._outputs_ok(stage.name, saved.get("result", {})):
            return None
        return saved["result"]

    def _clear(self, name: str) -> None:
        """Remove a forced stage's outputs so it starts afresh instead of resuming."""
        for rel in FORCE_CLEARS[name]:
            path = self.out / rel
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    def _outputs_ok(self, name: str, result: dict) -> bool:
        paths = {"generate": ["trajectories.jsonl"], "qc": ["qc/quality.json"], "dataset": ["dataset/stats.json"],
                 "train": ["train/final/merged/config.json"], "evaluate": ["eval/report.json"],
                 "report": ["report.md"], "serve": []}[name]
        return all((self.out / p).exists() for p in paths)

    # -- running ----------------------------------------------------------------------------------

    def run(self) -> dict:
        from deepcoder.cluster import init_ray

        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "stages").mkdir(exist_ok=True)
        started_ray = False
        started = time.monotonic()
        try:
            for number, name in enumerate(STAGES, 1):
                stage = STAGE_SPECS[name]
                fingerprint = self._fingerprint(stage)
                self.fingerprints[name] = fingerprint
                if name in self.skip:
                    self.timings[name] = ("skipped (--skip)", 0.0)
                    continue
                cached = self._cached(stage, fingerprint)
                if cached is not None:
                    self.console.rule(f"[bold]{number}. {stage.title}[/] [green](done, skipped)[/]")
                    self.results[name] = cached
                    self.timings[name] = ("cached", 0.0)
                    continue
                self.console.rule(f"[bold]{number}. {stage.title}[/]")
                if name in self.force:
                    self._clear(name)
                if name in ("generate", "dataset") and not started_ray:
                    started_ray = init_ray(self.config, log_to_driver=False)
                t0 = time.monotonic()
                result = getattr(self, f"_run_{name}")()
                seconds = time.monotonic() - t0
                self.results[name] = result
                self.timings[name] = ("ran", seconds)
                self._marker(name).write_text(json.dumps({"fingerprint": fingerprint, "seconds": seconds,
                                                          "finished_at": time.time(), "result": result},
                                                         indent=2, default=str), encoding="utf-8")
                self.console.print(f"[green]{name} done[/] in {seconds:.0f}s")
        finally:
            if started_ray:
                import ray

                ray.shutdown()
        total = time.monotonic() - started
        self._print_timings(total)
        summary = {"out": str(self.out), "seconds": total, "timings": self.timings, "results": self.results}
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
        return summary

    def _print_timings(self, total: float) -> None:
        table = Table(title=f"pipeline: {total:.0f}s")
        table.add_column("stage")
        table.add_column("status")
        table.add_column("seconds", justify="right")
        for name in STAGES:
            status, seconds = self.timings.get(name, ("not run", 0.0))
            table.add_row(name, status, f"{seconds:.0f}")
        self.console.print(table)

    # -- stages -----------------------------------------------------------------------------------

    @property
    def trajectories(self) -> Path:
        return self.out / "trajectories.jsonl"

    def _run_generate(self) -> dict:
        from deepcoder.teacher.generate import generate

        summary = generate(self.config, self.trajectories, resume=True)
        if summary.lost:
            raise PipelineError(f"generate: {summary.lost} episode(s) were not stored; re-run the pipeline to "
                                "resume them (stored trajectories are kept)")
        self.console.print(f"{summary.written} new, {summary.skipped} already stored, {summary.verified} verified; "
                           f"teacher: {summary.teacher}")
        return summary.to_dict()

    def _run_qc(self) -> dict:
        from deepcoder.data.report import write_report

        report = write_report(self.trajectories, self.out / "qc", max_tokens=self.config.data.max_seq_len,
                              sandbox=self.config.sandbox)
        stats = json.loads((report.parent / "quality.json").read_text(encoding="utf-8"))
        self.console.print(f"kept {stats['kept']}/{stats['total']}; report: {report}")
        return {k: stats[k] for k in ("total", "kept", "verified")} | {"report": str(report)}

    def _run_dataset(self) -> dict:
        from deepcoder.data.build import build_dataset, verify_dataset

        stats = build_dataset(self.config, str(self.trajectories), self.out / "dataset", overwrite=True)
        check = verify_dataset(self.out / "dataset")
        if check["problems"]:
            raise PipelineError(f"dataset: {len(check['problems'])} rows fail the mask alignment check: "
                                f"{check['problems'][:3]}")
        self.console.print(f"{stats['train']} train / {stats['validation']} validation examples, "
                           f"{stats['trained_tokens']} trained tokens; {check['rows_checked']} rows verified")
        return {k: stats[k] for k in ("train", "validation", "dropped", "trained_tokens")} | {
            "rows_verified": check["rows_checked"]}

    def _run_train(self) -> dict:
        from deepcoder.train.run import train_student

        summary = train_student(self.config, self.out / "dataset", self.out / "train", resume=True)
        m = summary["metrics"]
        self.console.print(f"{summary['global_step']} steps ({summary['loading_path']}); eval loss "
                           f"{m.get('eval_loss', float('nan')):.3f}; merged: {summary['export'].get('merged')}")
        return {"global_step": summary["global_step"], "loading_path": summary["loading_path"],
                "export": summary["export"], "metrics": {k: v for k, v in m.items() if isinstance(v, (int, float))}}

    def _run_evaluate(self) -> dict:
        from deepcoder.eval.run import evaluate
        from deepcoder.eval.runners import ModelSpec

        models = [ModelSpec("teacher", "teacher"),
                  ModelSpec("base", "student", self.config.student.model_name_or_path),
                  ModelSpec("sad", "student", str(self.out / "train" / "final" / "merged"))]
        report = evaluate(self.config, models, self.out / "eval", student="sad", teacher="teacher")
        return {"report": str(self.out / "eval" / "report.md"), "comparison": compare(report["summaries"])}

    def _run_report(self) -> dict:
        path = write_pipeline_report(self.out, self.results, self.timings)
        self.console.print(f"report: {path}")
        return {"report": str(path)}

    def _run_serve(self) -> dict:
        from deepcoder.serve.smoke import serve_smoke

        result = serve_smoke(self.config, model=str(self.out / "train" / "final" / "merged"))
        self.console.print(f"served one request: HTTP {result.get('status_code')} in "
                           f"{result.get('seconds', 0):.1f}s, run status {result.get('run_status')}")
        return result


def compare(summaries: dict[str, dict], base: str = "base", student: str = "sad") -> dict:
    """Did the student improve over the base on format validity and task success (agentic,
    in-distribution), and by how much. Reported whatever the direction."""
    out = {}
    for metric in ("success", "format_validity", "tool_call_validity", "tool_selection", "steps_mean",
                   "reasoning_chars_mean"):
        b = ((summaries.get(base, {}).get("agentic") or {}).get("in_distribution") or {}).get(metric)
        s = ((summaries.get(student, {}).get("agentic") or {}).get("in_distribution") or {}).get(metric)
        out[metric] = {"base": b, "sad": s, "delta": None if b is None or s is None else s - b}
    for bench in ("humaneval", "mbpp"):
        b = summaries.get(base, {}).get("pass_at_k", {}).get(bench, {}).get("pass@1")
        s = summaries.get(student, {}).get("pass_at_k", {}).get(bench, {}).get("pass@1")
        out[f"{bench}_pass@1"] = {"base": b, "sad": s, "delta": None if b is None or s is None else s - b}
    return out



def _row(cells: Sequence) -> str:
    def fmt(c):
        return "–" if c is None else (f"{c:.3f}" if isinstance(c, float) else str(c))
    return "| " + " | ".join(fmt(c) for c in cells) + " |"


def write_pipeline_report(out: Path, results: dict[str, dict], timings: dict[str, tuple[str, float]]) -> Path:
    """``out/report.md``: what each stage produced, and base vs SAD student, in one page."""
    gen, qc, data = results.get("generate", {}), results.get("qc", {}), results.get("dataset", {})
    train, ev = results.get("train", {}), results.get("evaluate", {})
    lines = ["# DeepCoder pipeline report", "",
             "Stages and wall time (cached = done by an earlier run):", "",
             "| stage | status | seconds |", "|---|---|---|"]
    lines += [_row([name, *timings.get(name, ("not run", 0.0))]) for name in STAGES[:STAGES.index("report")]]
    lines += ["", "## Data", "",
              f"- Teacher: {gen.get('teacher')}; {gen.get('planned')} episodes planned, "
              f"{gen.get('verified')} verified in this run, {gen.get('lost')} lost.",
              f"- Quality control: kept {qc.get('kept')}/{qc.get('total')} ([report](qc/report.md)).",
              f"- Dataset: {data.get('train')} train / {data.get('validation')} validation examples, "
              f"{data.get('trained_tokens')} trained tokens, {data.get('rows_verified')} rows mask-verified.",
              "", "## Training", "",
              f"- {train.get('global_step')} steps on path `{train.get('loading_path')}`; final eval loss "
              f"{train.get('metrics', {}).get('eval_loss')}.", "", "![training curves](train/curves.png)", "",
              "## Base vs SAD student", "",
              "Agentic suite (held-out, in distribution) and pass@1 subsets; positive delta = the SAD student "
              "is better (for steps and reasoning length, a change, not a verdict).", "",
              "| metric | base | SAD | delta | improved |", "|---|---|---|---|---|"]
    for metric, row in (ev.get("comparison") or {}).items():
        better = None if row["delta"] is None else (row["delta"] > 0 if metric not in ("steps_mean", "reasoning_chars_mean")
                                                    else None)
        lines.append(_row([metric, row["base"], row["sad"], row["delta"],
                           "–" if better is None else ("yes" if better else "no")]))
    lines += ["", "Full evaluation (teacher, KPIs, OOD, safety, plots): [eval/report.md](eval/report.md).", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
