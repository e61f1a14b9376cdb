"""``SADTrainer``: TRL's ``SFTTrainer`` with the span-weighted SAD loss.

The dataset is the phase-2 output (already tokenized: ``input_ids``, ``labels`` and the span
masks), so TRL's own preparation is skipped and ``SADCollator`` batches it; the masks travel in
the batch to ``compute_loss``. Per-span losses and token accuracies are logged with TRL's metrics
(console, ``metrics.jsonl`` / ``metrics.csv`` through ``MetricsFileCallback``, and wandb when
enabled), and ``plot_metrics`` draws the curves.

Gradient accumulation: the trainer counts each span kind's trained tokens over all micro-batches
of a step (as transformers counts labels) and hands those counts to ``sad_loss``, so the step's
loss and gradients equal those of one big batch.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from trl import SFTTrainer

from deepcoder.train.loss import sad_loss

MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids")


@dataclass
class SADLossConfig:
    """The loss settings (from ``training`` in the config)."""

    lambda_reason: float = 1.0
    lambda_act: float = 1.0
    lambda_obs: float = 0.0
    normalize: str = "span_mean"

    @classmethod
    def from_config(cls, training) -> "SADLossConfig":
        return cls(training.lambda_reason, training.lambda_act, training.lambda_obs, training.normalize)


class SADTrainer(SFTTrainer):
    """SFTTrainer whose loss is ``sad_loss`` over the REASON and ACT masks."""

    def __init__(self, *args: Any, sad: SADLossConfig | None = None, **kwargs: Any) -> None:
        args_obj = kwargs.get("args")
        if args_obj is not None:
            args_obj.remove_unused_columns = False  # the masks must reach the collator
            args_obj.dataset_kwargs = {**(args_obj.dataset_kwargs or {}), "skip_prepare_dataset": True}
        super().__init__(*args, **kwargs)
        self.sad = sad or SADLossConfig()
        # Our loss divides by the step's own token counts, so the Trainer must not divide by the
        # number of accumulation steps again.
        self.model_accepts_loss_kwargs = True
        self._span_counts: dict[str, torch.Tensor] | None = None

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device):
        counts = {"reason": torch.zeros((), dtype=torch.long), "act": torch.zeros((), dtype=torch.long),
                  "observation": torch.zeros((), dtype=torch.long)}
        for batch in batch_samples:  # position t is trained on token t+1, hence [:, 1:]
            counts["reason"] += batch["reason_mask"][:, 1:].sum().cpu()
            counts["act"] += batch["action_mask"][:, 1:].sum().cpu()
            if "observation_mask" in batch:
                counts["observation"] += batch["observation_mask"][:, 1:].sum().cpu()
        counts = {k: v.to(device) for k, v in counts.items()}
        if self.accelerator.num_processes > 1:
            counts = {k: self.accelerator.gather(v).sum() for k, v in counts.items()}
        self._span_counts = counts
        return super()._get_num_items_in_batch(batch_samples, device)

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        labels = inputs["labels"]
        outputs = model(**{k: inputs[k] for k in MODEL_INPUTS if k in inputs}, use_cache=False)
        if num_items_in_batch is None or self._span_counts is None:
            items = None  # evaluation, or no accumulation bookkeeping: this batch's own counts
        elif self.sad.normalize == "span_mean":
            items = self._span_counts
        else:
            items = sum(self._span_counts[k] for k in ("reason", "act")) + (
                self._span_counts["observation"] if self.sad.lambda_obs else 0)
        loss, parts = sad_loss(
            outputs.logits, labels, inputs["reason_mask"], inputs["action_mask"],
            lambda_reason=self.sad.lambda_reason, lambda_act=self.sad.lambda_act,
            lambda_obs=self.sad.lambda_obs, observation_mask=inputs.get("observation_mask"),
            input_ids=inputs["input_ids"], normalize=self.sad.normalize,  # type: ignore[arg-type]
            num_items_in_batch=items,
        )
        if self.accelerator.num_processes > 1 and items is not None:
            loss = loss * self.accelerator.num_processes  # DDP averages gradients over processes
        mode = "train" if model.training else "eval"
        for key, value in parts.items():
            if key.startswith(("loss_", "accuracy_")):
                self._metrics[mode][key].append(float(value))
        # λ-free quality for comparing runs with different λ (sweeps): REASON + ACT cross-entropy
        self._metrics[mode]["loss_span_sum"].append(float(parts["loss_reason"] + parts["loss_act"]))
        return (loss, outputs) if return_outputs else loss


class MetricsFileCallback(TrainerCallback):
    """Writes every log to ``metrics.jsonl`` and ``metrics.csv`` under the output dir."""

    def __init__(self, output_dir: str | Path) -> None:
        self.dir = Path(output_dir)

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001 - transformers' signature
        if not logs or not state.is_world_process_zero:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        record = {"step": state.global_step, "epoch": state.epoch, **logs}
        with (self.dir / "metrics.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        rows = [json.loads(line) for line in (self.dir / "metrics.jsonl").read_text().splitlines()]
        columns = ["step", "epoch"] + sorted({key for row in rows for key in row} - {"step", "epoch"})
        with (self.dir / "metrics.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)


def plot_metrics(metrics_jsonl: str | Path, out_png: str | Path) -> Path:
    """Loss curves (total, REASON, ACT; train and eval) and per-span token accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in Path(metrics_jsonl).read_text().splitlines() if line.strip()]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for key, style in (("loss", "-"), ("loss_reason", "--"), ("loss_act", ":"), ("eval_loss", "-"),
                       ("eval_loss_reason", "--"), ("eval_loss_act", ":")):
        points = [(r["step"], r[key]) for r in rows if key in r]
        if points:
            left.plot(*zip(*points), style, marker="o" if key.startswith("eval") else None, label=key)
    left.set(title="SAD losses", xlabel="step", ylabel="loss")
    left.legend()
    for key in ("accuracy_reason", "accuracy_act", "eval_accuracy_reason", "eval_accuracy_act"):
        points = [(r["step"], r[key]) for r in rows if key in r]
        if points:
            right.plot(*zip(*points), label=key)
    right.set(title="Token accuracy per span", xlabel="step", ylabel="accuracy")
    right.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return Path(out_png)
