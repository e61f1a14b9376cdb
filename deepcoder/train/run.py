"""Phase 3 driver: SAD-train the student on a phase-2 dataset, locally or on Ray Train workers.

``train_student`` is the whole training run of one process (load the student, ``SADTrainer``,
checkpoints every ``training.save_steps``, resume, final export of the adapter and a merged
16-bit model, metrics files and curves). ``train`` runs it in this process when
``training.num_workers`` is 0, and otherwise on a Ray Train V2 ``TorchTrainer`` (see
``ray_train.py``), where each worker runs the same function.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from deepcoder.config import Config

logger = logging.getLogger(__name__)


def _wandb_env(config: Config) -> list[str]:
    """``report_to`` for the HF Trainer; wandb is offline unless a key is set (see the config)."""
    if config.wandb.mode == "disabled":
        return []
    os.environ.setdefault("WANDB_MODE", config.wandb.mode)
    os.environ.setdefault("WANDB_PROJECT", config.wandb.project)
    if config.wandb.entity:
        os.environ.setdefault("WANDB_ENTITY", config.wandb.entity)
    if config.wandb.api_key is not None:
        os.environ.setdefault("WANDB_API_KEY", config.wandb.api_key.get_secret_value())
    os.environ.setdefault("WANDB_DIR", str(Path(config.paths.output_dir).absolute()))
    return ["wandb"]


def sft_args(config: Config, out: Path, *, max_steps: int | None = None, report_to: list[str] | None = None,
             **overrides: Any):
    """The TRL ``SFTConfig`` for a SAD run, from ``training``."""
    import torch
    from trl import SFTConfig

    training = config.training
    gpu = torch.cuda.is_available() and training.use_gpu
    return SFTConfig(
        output_dir=str(out), seed=training.seed, learning_rate=training.learning_rate,
        num_train_epochs=training.num_epochs, max_steps=max_steps if max_steps is not None else training.max_steps,
        per_device_train_batch_size=training.per_device_batch_size,
        per_device_eval_batch_size=training.per_device_batch_size,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        logging_steps=training.logging_steps, save_steps=training.save_steps, save_total_limit=3,
        eval_strategy="steps", eval_steps=training.save_steps, report_to=report_to if report_to is not None else [],
        use_cpu=not gpu, bf16=gpu, lr_scheduler_type="cosine", **overrides,
    )


def train_student(config: Config, dataset_dir: str | Path, out: str | Path, *, resume: bool = False,
                  max_steps: int | None = None, extra_callbacks: list | None = None,
                  resume_from: str | None = None, prepare=None) -> dict[str, Any]:
    """One process's training run; returns the final metrics and where the export went.

    ``resume`` continues from the last checkpoint in ``out``; ``resume_from`` names a checkpoint
    folder (Ray Train passes the one it restored). ``prepare`` wraps the trainer (Ray Train's
    ``prepare_trainer``) before training starts.
    """
    import datasets
    from transformers.trainer_utils import get_last_checkpoint

    from deepcoder.data.collator import SADCollator
    from deepcoder.train.model import export_student, load_student
    from deepcoder.train.trainer import MetricsFileCallback, SADLossConfig, SADTrainer, plot_metrics

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = datasets.load_from_disk(str(Path(dataset_dir) / "hf"))
    loaded = load_student(config)
    tokenizer = loaded.tokenizer
    if tokenizer.pad_token_id is None:
        raise ValueError("the student's tokenizer has no pad token")
    args = sft_args(config, out, max_steps=max_steps, report_to=_wandb_env(config))
    eval_set = dataset["validation"] if len(dataset["validation"]) else None
    if eval_set is None:
        args.eval_strategy = "no"
    trainer = SADTrainer(
        model=loaded.model, args=args, train_dataset=dataset["train"], eval_dataset=eval_set,
        processing_class=tokenizer, data_collator=SADCollator(pad_token_id=tokenizer.pad_token_id),
        sad=SADLossConfig.from_config(config.training),
        callbacks=[MetricsFileCallback(out), *(extra_callbacks or [])],
    )
    if prepare is not None:
        trainer = prepare(trainer)
    checkpoint = resume_from or (get_last_checkpoint(str(out)) if resume and any(out.glob("checkpoint-*")) else None)
    if resume and checkpoint is None:
        logger.info("no checkpoint in %s; starting from scratch", out)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    metrics = dict(result.metrics)
    if eval_set is not None:
        metrics.update(trainer.evaluate())
    exported = export_student(trainer.model, tokenizer, out / "final") if trainer.is_world_process_zero() else {}
    if (out / "metrics.jsonl").is_file():
        plot_metrics(out / "metrics.jsonl", out / "curves.png")
    summary = {"metrics": metrics, "export": exported, "loading_path": loaded.path, "resumed_from": checkpoint,
               "global_step": trainer.state.global_step}
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return summary
