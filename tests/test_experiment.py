"""`experiment sad-vs-sft` end to end on a tiny model: two trainings with the same budget that
differ only in the loss, one evaluation of base, SAD and SFT, and the table."""

from __future__ import annotations

import json

from deepcoder.experiment import sad_config, sad_vs_sft, sft_config
from deepcoder.pipeline import Pipeline


def test_sft_twin_changes_only_the_loss(config) -> None:
    config.training.lambda_reason, config.training.lambda_act = 2.0, 0.5
    sft, sad = sft_config(config), sad_config(config)
    assert (sft.training.normalize, sft.training.lambda_reason, sft.training.lambda_act,
            sft.training.lambda_obs) == ("token_mean", 1.0, 1.0, 0.0)
    assert (sad.training.normalize, sad.training.lambda_reason) == ("span_mean", 2.0)
    for field in ("learning_rate", "max_steps", "seed", "per_device_batch_size"):
        assert getattr(sft.training, field) == getattr(sad.training, field) == getattr(config.training, field)
    assert config.training.lambda_reason == 2.0  # the original is untouched


def test_sad_vs_sft_trains_both_and_compares(config, ray_cluster, tmp_path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from deepcoder.data.tokenizers import load_tokenizer

    tok = load_tokenizer("smollm2")
    tiny = tmp_path / "tiny"
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                                 eos_token_id=tok.eos_token_id)).save_pretrained(tiny)
    tok.save_pretrained(tiny)
    config.student.model_name_or_path = str(tiny)
    config.generation.max_problems = 4
    config.training.max_steps = 2
    config.training.save_steps = 2
    config.wandb.mode = "disabled"
    config.eval.agentic_sets, config.eval.ood_sets = ["math"], ["ood"]
    config.eval.agentic_per_set, config.eval.max_steps, config.eval.max_new_tokens = 1, 1, 8
    Pipeline(config, tmp_path / "run", skip=["train", "evaluate", "report", "serve"]).run()

    result = sad_vs_sft(config, tmp_path / "run" / "dataset", tmp_path / "svs")
    assert set(result["agentic"]) == {"base", "sad", "sft"}
    assert result["training"]["sad"]["steps"] == result["training"]["sft"]["steps"] == 2
    saved = json.loads((tmp_path / "svs" / "sad_vs_sft.json").read_text())
    assert saved["budget"]["max_steps"] == 2
    table = (tmp_path / "svs" / "sad_vs_sft.md").read_text()
    assert "| sad |" in table and "| sft |" in table and (tmp_path / "svs" / "sad_vs_sft.png").is_file()
    for name in ("sad", "sft"):
        assert (tmp_path / "svs" / name / "final" / "merged" / "config.json").is_file()
    again = sad_vs_sft(config, tmp_path / "run" / "dataset", tmp_path / "svs")  # resumes: nothing retrained
    assert again["training"] == result["training"]
