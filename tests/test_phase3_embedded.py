"""The seed's phase-3 check on the embedded CPU default (slow: about 7 minutes on 2 cores).

Generate with the emulator, build the masks with SmolLM2's tokenizer, SAD-train SmolLM2-135M
(from the shipped GGUF) with LoRA on CPU: the run finishes, the per-span losses fall, checkpoints
are saved, and the exported student loads for inference and answers in the agent format.
"""

from __future__ import annotations

import json

import pytest

from deepcoder.agent.format import parse_steps
from deepcoder.agent.prompts import build_messages, system_prompt
from deepcoder.config import load_config
from deepcoder.data.build import build_dataset, verify_dataset
from deepcoder.data.problems import load_problem_set
from deepcoder.teacher.generate import generate
from deepcoder.tools.registry import build_tools
from deepcoder.train.model import load_for_inference
from deepcoder.train.run import train_student


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_embedded_student_trains_and_emits_the_agent_format(ray_cluster, cache_dir, tmp_path) -> None:
    config = load_config("demo", env={}, overrides={
        "paths": {"cache_dir": cache_dir, "output_dir": str(tmp_path / "runs")},
        "data": {"tokenizer": "smollm2", "max_seq_len": 1024},
        "student": {"model_name_or_path": "smollm2"},
        "generation": {"max_problems": 40},
        "training": {"max_steps": 40, "learning_rate": 1e-3, "save_steps": 20, "logging_steps": 5},
        "wandb": {"mode": "disabled"},
    })
    generate(config, tmp_path / "t.jsonl", show_progress=False)
    build_dataset(config, str(tmp_path / "t.jsonl"), tmp_path / "dataset")
    assert verify_dataset(tmp_path / "dataset")["problems"] == []

    summary = train_student(config, tmp_path / "dataset", tmp_path / "train")
    assert summary["global_step"] == 40 and summary["loading_path"] == "cpu-lora"
    logs = [json.loads(line) for line in (tmp_path / "train" / "metrics.jsonl").read_text().splitlines()]
    spans = [r for r in logs if "loss_reason" in r and "eval_loss" not in r]
    assert spans[-1]["loss_reason"] < spans[0]["loss_reason"] and spans[-1]["loss_act"] < spans[0]["loss_act"]
    assert (tmp_path / "train" / "checkpoint-20").is_dir() and (tmp_path / "train" / "checkpoint-40").is_dir()

    student = load_for_inference(summary["export"]["merged"])
    tools = build_tools(config)
    task = load_problem_set("math", split="heldout", limit=1)[0]
    messages = build_messages(system_prompt(tools.describe(), tools.names()), task, [])
    prompt = student.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    encoded = student.tokenizer(prompt, return_tensors="pt")
    output = student.model.generate(**encoded, max_new_tokens=120, do_sample=False)
    reply = student.tokenizer.decode(output[0][encoded["input_ids"].shape[1]:], skip_special_tokens=True)
    parsed = parse_steps(reply)
    print(f"student reply: {reply!r}")
    assert parsed.steps and parsed.steps[0].thought and parsed.steps[0].action, reply
