"""λ sweeps with Ray Tune over SAD training runs (Ray Train V2 driver pattern).

Each Tune trial is a small driver function that launches one ``TorchTrainer`` run (the same
``_train_loop`` as ``deepcoder train``) with ``TuneReportCallback``, so the workers' reports reach
Tune and ASHA can stop weak trials early. Trial drivers take a fraction of a CPU (Tune rejects
``{"cpu": 0}``); the training workers take their own resources. Trial names are derived from the
parameters, so a re-run finds the same folders.

The metric (``sweep.metric``) must not depend on λ: the SAD loss itself does (λ scales its
terms), so the default is ``eval_loss_span_sum``, the unweighted REASON + ACT loss on validation.

Search: ``grid`` over ``sweep.lambda_reason`` x ``sweep.lambda_act`` x ``sweep.learning_rate``, or
``random`` (``num_samples`` draws from the same values). Output: ``results.csv``, ``results.md``
and ``heatmap.png`` (the metric against λ_reason and λ_act).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deepcoder.config import Config

TRIAL_DRIVER_CPU = 0.1


def trial_name(params: dict[str, Any]) -> str:
    return f"lr{params['lambda_reason']:g}_la{params['lambda_act']:g}_lr{params['learning_rate']:g}"


def _trial(params: dict[str, Any]) -> None:
    """One Tune trial: a Ray Train run with these λ and learning rate."""
    from ray import tune
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from deepcoder.train.ray_train import _train_loop

    config: Config = params["base"].model_copy(deep=True)
    config.training.lambda_reason = params["lambda_reason"]
    config.training.lambda_act = params["lambda_act"]
    config.training.learning_rate = params["learning_rate"]
    name = trial_name(params)
    out = Path(params["out"]) / "trials" / name
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={"config": config, "dataset": params["dataset"], "out": str(out),
                           "max_steps": params.get("max_steps")},
        scaling_config=ScalingConfig(num_workers=max(1, config.training.num_workers),
                                     use_gpu=config.training.use_gpu),
        run_config=RunConfig(name=name, storage_path=str(Path(params["out"]) / "ray_train"),
                             callbacks=[TuneReportCallback()]),
    )
    trainer.fit()
    summary = json.loads((out / "train_summary.json").read_text(encoding="utf-8"))
    tune.report({**{k: v for k, v in summary["metrics"].items() if isinstance(v, (int, float))}, "done": True})


def sweep(config: Config, dataset_dir: str | Path, out: str | Path, *, search: str = "grid",
          num_samples: int = 4, max_steps: int | None = None):
    """Run the sweep; returns the results as a pandas DataFrame (also written under ``out``)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    sweep_cfg = config.sweep
    out = Path(out).absolute()
    values = {"lambda_reason": sweep_cfg.lambda_reason, "lambda_act": sweep_cfg.lambda_act,
              "learning_rate": sweep_cfg.learning_rate}
    if search == "grid":
        space = {k: tune.grid_search(v) for k, v in values.items()}
        samples = 1
    elif search == "random":
        space = {k: tune.choice(v) for k, v in values.items()}
        samples = num_samples
    else:
        raise ValueError(f"search must be 'grid' or 'random', got {search!r}")
    space |= {"base": config, "dataset": str(Path(dataset_dir).absolute()), "out": str(out),
              "max_steps": max_steps}
    tuner = tune.Tuner(
        tune.with_resources(_trial, {"cpu": TRIAL_DRIVER_CPU}),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=sweep_cfg.metric, mode=sweep_cfg.mode, num_samples=samples,
            max_concurrent_trials=sweep_cfg.max_concurrent_trials,
            scheduler=ASHAScheduler(grace_period=1, reduction_factor=2),
            trial_name_creator=lambda trial: trial_name(trial.config),
            trial_dirname_creator=lambda trial: trial_name(trial.config),
        ),
        run_config=tune.RunConfig(name="sad-sweep", storage_path=str(out / "tune")),
    )
    grid = tuner.fit()
    frame = grid.get_dataframe()
    keep = [c for c in frame.columns if c.startswith("config/lambda") or c == "config/learning_rate"
            or c in (sweep_cfg.metric, "eval_loss", "eval_loss_reason", "eval_loss_act", "training_iteration")]
    table = frame[keep].rename(columns=lambda c: c.removeprefix("config/")).sort_values(sweep_cfg.metric,
                                                                                          ascending=sweep_cfg.mode == "min")
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "results.csv", index=False)
    (out / "results.md").write_text(_markdown(table), encoding="utf-8")
    _heatmap(table, sweep_cfg.metric, out / "heatmap.png")
    return table


def _markdown(table) -> str:
    columns = list(table.columns)
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c])
                                        for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _heatmap(table, metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = table.groupby(["lambda_reason", "lambda_act"])[metric].min().unstack()
    fig, ax = plt.subplots(figsize=(5, 4))
    image = ax.imshow(best.values, cmap="viridis_r", origin="lower", aspect="auto")
    ax.set_xticks(range(len(best.columns)), [f"{v:g}" for v in best.columns])
    ax.set_yticks(range(len(best.index)), [f"{v:g}" for v in best.index])
    ax.set(xlabel="λ_act", ylabel="λ_reason", title=f"{metric} (best over learning rates)")
    for i in range(best.shape[0]):
        for j in range(best.shape[1]):
            if best.values[i, j] == best.values[i, j]:  # not NaN
                ax.text(j, i, f"{best.values[i, j]:.3f}", ha="center", va="center", color="white")
    fig.colorbar(image)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
