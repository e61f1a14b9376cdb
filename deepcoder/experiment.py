"""`deepcoder experiment sad-vs-sft`: our small version of the SAD paper's main comparison.

Two students are trained on the same dataset with the same budget (steps, learning rate, seed,
LoRA settings) and differ only in the loss:

* **SAD**: span-weighted, ``normalize=span_mean`` with the configured λ_reason and λ_act, so
  REASON and ACT spans count as kinds, whatever their lengths;
* **SFT**: the standard causal-LM loss on every assistant token (``token_mean`` with every λ = 1
  and observations masked), which our tests show equals transformers' own loss.

Both (and the untrained base) then run the same agentic suite. Each part resumes: a finished
training run (its export exists) is not redone, and stored episodes are kept.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from deepcoder.config import Config


def sft_config(config: Config) -> Config:
    """The plain-SFT twin of ``config``: same budget, standard causal-LM loss."""
    sft = config.model_copy(deep=True)
    sft.training.normalize = "token_mean"
    sft.training.lambda_reason = sft.training.lambda_act = 1.0
    sft.training.lambda_obs = 0.0
    return sft


def sad_config(config: Config) -> Config:
    sad = config.model_copy(deep=True)
    sad.training.normalize = "span_mean"
    return sad


def _train(config: Config, dataset: Path, out: Path, console: Console) -> dict:
    from deepcoder.train.run import train_student

    summary_path = out / "train_summary.json"
    if summary_path.is_file() and (out / "final" / "merged" / "config.json").is_file():
        console.print(f"{out}: already trained, kept")
        return json.loads(summary_path.read_text(encoding="utf-8"))
    return train_student(config, dataset, out, resume=True)


METRICS = [("success", "success"), ("format_validity", "format valid"), ("tool_call_validity", "tool calls valid"),
           ("tool_selection", "right tool"), ("steps_mean", "steps"), ("reasoning_chars_mean", "reasoning chars")]


def sad_vs_sft(config: Config, dataset: str | Path, out: str | Path, *, console: Console | None = None) -> dict:
    """Train SAD and SFT students on ``dataset``, evaluate both and the base; write the table."""
    from deepcoder.eval.run import evaluate, hardware
    from deepcoder.eval.runners import ModelSpec

    console = console or Console()
    out, dataset = Path(out), Path(dataset)
    if not (dataset / "hf").is_dir():
        raise FileNotFoundError(f"{dataset} is not a build-dataset folder (no hf/); run the pipeline or "
                                "`deepcoder build-dataset` first")
    trained = {}
    for name, variant in (("sad", sad_config(config)), ("sft", sft_config(config))):
        console.rule(f"[bold]train {name.upper()}[/] ({variant.training.normalize}, λ_reason "
                     f"{variant.training.lambda_reason}, λ_act {variant.training.lambda_act})")
        trained[name] = _train(variant, dataset, out / name, console)
    console.rule("[bold]evaluate base, SAD and SFT on the agentic suite[/]")
    eval_config = config.model_copy(deep=True)
    eval_config.eval.benchmarks = ["agentic"]
    models = [ModelSpec("base", "student", config.student.model_name_or_path),
              ModelSpec("sad", "student", str(out / "sad" / "final" / "merged")),
              ModelSpec("sft", "student", str(out / "sft" / "final" / "merged"))]
    report = evaluate(eval_config, models, out / "eval", student="sad")
    result = {
        "hardware": hardware(), "student": config.student.model_name_or_path,
        "dataset": {"path": str(dataset), **json.loads((dataset / "stats.json").read_text(encoding="utf-8"))},
        "budget": {"max_steps": config.training.max_steps, "learning_rate": config.training.learning_rate,
                   "batch": config.training.per_device_batch_size * config.training.gradient_accumulation_steps,
                   "lora_r": config.student.lora_r, "seed": config.training.seed},
        "training": {n: {"steps": t["global_step"], "eval_loss": t["metrics"].get("eval_loss"),
                         "eval_loss_reason": t["metrics"].get("eval_loss_reason"),
                         "eval_loss_act": t["metrics"].get("eval_loss_act")} for n, t in trained.items()},
        "agentic": {m: report["summaries"][m]["agentic"] for m in ("base", "sad", "sft")},
    }
    (out / "sad_vs_sft.json").write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    (out / "sad_vs_sft.md").write_text(render(result), encoding="utf-8")
    _plot(result, out / "sad_vs_sft.png")
    console.print(render(result))
    return result


def _fmt(v) -> str:
    return "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def render(result: dict) -> str:
    """The comparison table in Markdown (for the report and the README)."""
    ds, budget = result["dataset"], result["budget"]
    lines = [f"SAD vs SFT, student `{result['student']}`, {ds.get('train')} training examples, "
             f"{budget['max_steps']} steps at lr {budget['learning_rate']} (batch {budget['batch']}, LoRA r "
             f"{budget['lora_r']}, seed {budget['seed']}); measured on {result['hardware']}.", "",
             "| model | episodes | " + " | ".join(label for _, label in METRICS) + " | held-out loss REASON | ACT |",
             "|---|---|" + "---|" * (len(METRICS) + 2)]
    for name in ("base", "sad", "sft"):
        g = (result["agentic"].get(name) or {}).get("in_distribution") or {}
        t = result["training"].get(name, {})
        lines.append(f"| {name} | {_fmt(g.get('episodes'))} | " + " | ".join(_fmt(g.get(k)) for k, _ in METRICS)
                     + f" | {_fmt(t.get('eval_loss_reason'))} | {_fmt(t.get('eval_loss_act'))} |")
    return "\n".join(lines) + "\n"


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = METRICS[:4]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for i, name in enumerate(("base", "sad", "sft")):
        g = (result["agentic"].get(name) or {}).get("in_distribution") or {}
        ax.bar([j + i * 0.27 for j in range(len(rates))], [g.get(k) or 0 for k, _ in rates], 0.27, label=name)
    ax.set_xticks([j + 0.27 for j in range(len(rates))], [label for _, label in rates])
    ax.set_ylim(0, 1)
    ax.set_title("agentic suite, held-out (in distribution)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
