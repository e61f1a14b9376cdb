"""SAD training on Ray Train V2: a ``TorchTrainer`` whose workers each run ``train_student``.

Train V2 hands ``train_loop_config`` only to a function with a required ``config`` parameter, so
``_train_loop(config)`` takes one dict: the resolved ``Config``, the dataset folder, the run
folder and the step budget. Each worker's HF trainer gets ``RayTrainReportCallback`` (metrics and
checkpoints go to Ray, kept per ``CheckpointConfig``) and ``prepare_trainer``; when Ray restarts
a failed worker group (``FailureConfig.max_failures``), the loop resumes from the checkpoint Ray
restored, so the loss curve continues where it stopped.

``training.num_workers`` workers, with ``training.use_gpu`` a GPU each; the run's storage is
``<paths.output_dir>/ray_train`` unless ``storage_path`` is given (use shared or cloud storage on a
cluster).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from deepcoder.config import Config

logger = logging.getLogger(__name__)


def _train_loop(config: dict[str, Any]) -> None:
    import ray.train
    from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer

    from deepcoder.train.run import train_student

    resume_from = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:  # RayTrainReportCallback stores the HF checkpoint here
            target = Path(config["out"]) / "restored"
            target.mkdir(parents=True, exist_ok=True)
            import shutil

            source = Path(folder) / RayTrainReportCallback.CHECKPOINT_NAME
            restored = target / source.name
            shutil.rmtree(restored, ignore_errors=True)
            shutil.copytree(source, restored)
            resume_from = str(restored)
        logger.info("resuming from the checkpoint Ray restored: %s", resume_from)
    callbacks = [RayTrainReportCallback(), *config.get("callbacks", [])]
    train_student(config["config"], config["dataset"], config["out"], max_steps=config.get("max_steps"),
                  extra_callbacks=callbacks, resume_from=resume_from, prepare=prepare_trainer)


def ray_train(config: Config, dataset_dir: str | Path, out: str | Path, *, max_steps: int | None = None,
              storage_path: str | None = None, max_failures: int = 2, callbacks: list | None = None,
              name: str = "sad-train"):
    """Run SAD training on Ray Train; returns Ray's ``Result`` (metrics, checkpoint, path)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    training = config.training
    storage = storage_path or str((Path(config.paths.output_dir) / "ray_train").absolute())
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={"config": config, "dataset": str(Path(dataset_dir).absolute()),
                           "out": str(Path(out).absolute()), "max_steps": max_steps, "callbacks": callbacks or []},
        scaling_config=ScalingConfig(num_workers=training.num_workers, use_gpu=training.use_gpu),
        run_config=RunConfig(name=name, storage_path=storage,
                             checkpoint_config=CheckpointConfig(num_to_keep=3),
                             failure_config=FailureConfig(max_failures=max_failures)),
    )
    return trainer.fit()
