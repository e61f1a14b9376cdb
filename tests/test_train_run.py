"""`deepcoder train`: a local SAD run on a phase-2 dataset folder, checkpoints, resume, export."""

from __future__ import annotations

import json

import pytest
import torch
from datasets import Dataset, DatasetDict

from deepcoder.config import load_config
from deepcoder.data.masks import build_example
from deepcoder.data.tokenizers import load_tokenizer
from deepcoder.train.run import train_student

from test_trainer import trajectory


@pytest.fixture(scope="module")
def folders(tmp_path_factory, cache_dir):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = load_tokenizer("qwen2.5", cache_dir=cache_dir)
    root = tmp_path_factory.mktemp("train-run")
    rows = [build_example(trajectory(i), tokenizer, 1024).to_row() for i in range(12)]
    DatasetDict({"train": Dataset.from_list(rows[:10]), "validation": Dataset.from_list(rows[10:])}).save_to_disk(
        str(root / "dataset" / "hf"))
    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
                     ).save_pretrained(root / "tiny")
    return root


def config(root, cache_dir):
    return load_config("demo", env={}, overrides={
        "paths": {"cache_dir": cache_dir, "output_dir": str(root / "runs")},
        "student": {"model_name_or_path": str(root / "tiny"), "target_modules": ["q_proj", "v_proj"]},
        "data": {"tokenizer": "qwen2.5"},
        "training": {"max_steps": 6, "save_steps": 3, "logging_steps": 1, "per_device_batch_size": 2,
                     "learning_rate": 5e-3},
        "wandb": {"mode": "disabled"},
    })


def test_train_checkpoint_resume_and_export(folders, cache_dir) -> None:
    out = folders / "run"
    first = train_student(config(folders, cache_dir), folders / "dataset", out, max_steps=3)
    assert first["global_step"] == 3 and (out / "checkpoint-3").is_dir()
    second = train_student(config(folders, cache_dir), folders / "dataset", out, resume=True)
    assert second["global_step"] == 6 and second["resumed_from"].endswith("checkpoint-3")
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps[:6] == [1, 2, 3, 4, 5, 6]  # one curve, continued, not restarted
    assert "eval_loss" in second["metrics"] and second["loading_path"] == "cpu-lora"
    assert (out / "final" / "adapter" / "adapter_config.json").is_file()
    assert (out / "final" / "merged" / "config.json").is_file() and (out / "curves.png").is_file()


def test_cli_refuses_a_folder_that_is_not_a_dataset(tmp_path) -> None:
    from deepcoder import cli

    assert cli.main(["train", "--dataset", str(tmp_path)]) == 2
