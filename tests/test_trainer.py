"""SADTrainer on TRL with a tiny Qwen2 built from a config and the shipped Qwen2.5 tokenizer."""

from __future__ import annotations

import json

import pytest
import torch
from datasets import Dataset

from deepcoder.agent.prompts import system_prompt
from deepcoder.agent.types import Step, Task, Trajectory
from deepcoder.data.collator import SADCollator
from deepcoder.data.masks import build_example
from deepcoder.data.tokenizers import load_tokenizer
from deepcoder.train.trainer import MetricsFileCallback, SADLossConfig, SADTrainer, plot_metrics


def trajectory(i: int) -> Trajectory:
    steps = [Step(thought=f"I need {i} plus {i}.", action="python", tool_input={"code": f"print({i} + {i})"},
                  observation=str(2 * i)),
             Step(thought="It printed the sum.", action="finish", action_input=str(2 * i),
                  tool_input={"answer": str(2 * i)})]
    return Trajectory(task=Task(id=f"math/{i}", kind="math", prompt=f"What is {i} + {i}?", answer=str(2 * i)),
                      system_prompt=system_prompt("- python(code): run code", ["python", "finish"]), steps=steps,
                      status="finished", verified=True)


@pytest.fixture(scope="module")
def setup(cache_dir):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = load_tokenizer("qwen2.5", cache_dir=cache_dir)
    rows = [build_example(trajectory(i), tokenizer, 1024).to_row() for i in range(16)]
    dataset = Dataset.from_list(rows)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=True)
    return tokenizer, dataset, config


def make_trainer(setup, out, max_steps, logging_steps=2, **extra):
    from transformers import Qwen2ForCausalLM
    from trl import SFTConfig

    tokenizer, dataset, config = setup
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    args = SFTConfig(output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=2,
                     gradient_accumulation_steps=2, learning_rate=3e-3, logging_steps=logging_steps, save_steps=5,
                     report_to=[], seed=0, use_cpu=True, lr_scheduler_type="constant", **extra)
    return SADTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                      data_collator=SADCollator(pad_token_id=tokenizer.pad_token_id),
                      sad=SADLossConfig(lambda_reason=0.5, lambda_act=1.0),
                      callbacks=[MetricsFileCallback(out)])


def read_metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_per_span_losses_fall_and_are_logged_and_plotted(setup, tmp_path) -> None:
    trainer = make_trainer(setup, tmp_path, max_steps=20)
    trainer.train()
    logs = [r for r in read_metrics(tmp_path) if "loss_reason" in r]
    assert len(logs) >= 5
    first, last = logs[0], logs[-1]
    assert last["loss_reason"] < first["loss_reason"] and last["loss_act"] < first["loss_act"]
    assert 0.0 <= last["accuracy_act"] <= 1.0
    assert (tmp_path / "metrics.csv").read_text().startswith("step,epoch")
    assert plot_metrics(tmp_path / "metrics.jsonl", tmp_path / "curves.png").stat().st_size > 1000


def test_resume_continues_the_same_loss_curve(setup, tmp_path) -> None:
    straight = tmp_path / "straight"
    make_trainer(setup, straight, max_steps=10, logging_steps=1).train()
    resumed = tmp_path / "resumed"
    make_trainer(setup, resumed, max_steps=5, logging_steps=1).train()  # stops after the step-5 checkpoint
    assert (resumed / "checkpoint-5").is_dir()
    make_trainer(setup, resumed, max_steps=10, logging_steps=1).train(
        resume_from_checkpoint=str(resumed / "checkpoint-5"))
    want = {r["step"]: r["loss"] for r in read_metrics(straight) if "loss" in r and r["step"] > 5}
    got = {r["step"]: r["loss"] for r in read_metrics(resumed) if "loss" in r and r["step"] > 5}
    assert want and want.keys() == got.keys()
    for step in want:
        assert got[step] == pytest.approx(want[step], rel=1e-4)
