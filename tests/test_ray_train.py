"""SAD training on Ray Train V2: a worker killed mid-run resumes from the last checkpoint."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

from test_train_run import config, folders  # noqa: F401 - the tiny model and dataset fixture


class CrashOnce(TrainerCallback):
    """Kills the worker process once, after the step-3 checkpoint was reported."""

    def __init__(self, marker: str, step: int) -> None:
        self.marker, self.step = marker, step

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if state.global_step == self.step and not os.path.exists(self.marker):
            Path(self.marker).write_text("crashed")
            time.sleep(3)  # let the controller register the reported checkpoint first
            os._exit(1)


def test_worker_killed_mid_run_resumes_from_checkpoint(ray_cluster, folders, cache_dir, tmp_path) -> None:  # noqa: F811
    import ray.cloudpickle

    from deepcoder.train.ray_train import ray_train

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cfg = config(folders, cache_dir)
    cfg.training.num_workers = 1
    marker = tmp_path / "crashed"
    out = tmp_path / "run"
    result = ray_train(cfg, folders / "dataset", out, max_steps=6, storage_path=str(tmp_path / "storage"),
                       max_failures=1, callbacks=[CrashOnce(str(marker), step=4)])
    assert marker.exists()  # the first attempt really died
    assert result.error is None and result.checkpoint is not None
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["global_step"] == 6 and summary["resumed_from"]
    restored_state = json.loads((Path(summary["resumed_from"]) / "trainer_state.json").read_text())
    assert restored_state["global_step"] == 3  # Ray restored the step-3 checkpoint
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert 6 in steps and steps.count(4) == 1  # step 4 logged once: by the resumed attempt
    assert (out / "final" / "merged" / "config.json").is_file()
