"""λ sweep with Ray Tune: one TorchTrainer run per trial, results table and heatmap."""

from __future__ import annotations

import pandas as pd

from test_train_run import config, folders  # noqa: F401


def test_grid_sweep_writes_table_and_heatmap(ray_cluster, folders, cache_dir, tmp_path) -> None:  # noqa: F811
    from deepcoder.train.sweep import sweep

    cfg = config(folders, cache_dir)
    cfg.training.num_workers = 1
    cfg.sweep.lambda_reason = [0.5, 1.0]
    cfg.sweep.lambda_act = [1.0]
    cfg.sweep.learning_rate = [5e-3]
    table = sweep(cfg, folders / "dataset", tmp_path / "sweep", search="grid", max_steps=3)
    assert len(table) == 2 and set(table["lambda_reason"]) == {0.5, 1.0}
    assert table["eval_loss_span_sum"].notna().all()  # the λ-free metric the sweep ranks by
    saved = pd.read_csv(tmp_path / "sweep" / "results.csv")
    assert list(saved["lambda_reason"]) == list(table["lambda_reason"])
    assert (tmp_path / "sweep" / "heatmap.png").stat().st_size > 1000
    assert "lambda_reason" in (tmp_path / "sweep" / "results.md").read_text()
    assert (tmp_path / "sweep" / "trials" / "lr0.5_la1_lr0.005" / "train_summary.json").is_file()
