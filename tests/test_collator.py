"""The SAD collator and packing: padding values, and no attention across packed examples."""

from __future__ import annotations

import pytest
import torch

from deepcoder.data.collator import SADCollator, block_causal_mask, pack_examples
from deepcoder.data.masks import IGNORE_INDEX


def row(ids: list[int], trained_from: int = 1) -> dict:
    n = len(ids)
    reason = [0] * trained_from + [1] * (n - trained_from)
    return {"input_ids": ids, "labels": [i if r else IGNORE_INDEX for i, r in zip(ids, reason)],
            "reason_mask": reason, "action_mask": [0] * n, "observation_mask": [0] * n}


def test_padding_values_and_shapes() -> None:
    batch = SADCollator(pad_token_id=0, pad_to_multiple_of=8)([row([5, 6, 7]), row([8, 9, 10, 11, 12])])
    assert batch["input_ids"].shape == (2, 8)
    assert batch["input_ids"][0].tolist() == [5, 6, 7, 0, 0, 0, 0, 0]
    assert batch["labels"][0].tolist() == [IGNORE_INDEX, 6, 7] + [IGNORE_INDEX] * 5
    assert batch["attention_mask"][0].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert batch["reason_mask"][1].tolist() == [0, 1, 1, 1, 1, 0, 0, 0]
    assert batch["action_mask"].sum() == 0 and batch["observation_mask"].dtype == torch.long


def test_bad_rows_are_clear_errors() -> None:
    broken = row([1, 2, 3])
    broken["labels"] = [1]
    with pytest.raises(ValueError, match="different lengths"):
        SADCollator(pad_token_id=0)([broken])
    with pytest.raises(ValueError, match="empty batch"):
        SADCollator(pad_token_id=0)([])
    with pytest.raises(ValueError, match="cannot be packed"):
        pack_examples([row(list(range(10)))], max_seq_len=5)


def test_packing_keeps_masks_resets_positions_and_hides_the_first_label() -> None:
    packed = pack_examples([row([1, 2, 3]), row([4, 5]), row([6, 7, 8, 9])], max_seq_len=6)
    assert [p["seq_lengths"] for p in packed] == [[3, 2], [4]]
    first = packed[0]
    assert first["position_ids"] == [0, 1, 2, 0, 1]
    assert first["labels"] == [IGNORE_INDEX, 2, 3, IGNORE_INDEX, 5]  # 4 is never predicted from 3
    assert first["reason_mask"] == [0, 1, 1, 0, 1]


def test_block_mask_is_causal_within_examples_only() -> None:
    mask = block_causal_mask([[2, 2]], 5)[0, 0]
    allowed = (mask == 0).int().tolist()
    assert allowed == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1]]


def test_packed_logits_equal_unpacked_logits_on_a_real_model() -> None:
    """TRL #3728: packing must not let examples attend to each other. A tiny Llama from a config."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64))
    model.eval()
    rows = [row([3, 9, 11, 4]), row([7, 8, 20]), row([5, 6])]
    with torch.no_grad():
        separate = [model(input_ids=torch.tensor([r["input_ids"]])).logits[0] for r in rows]
        batch = SADCollator(pad_token_id=0)(pack_examples(rows, max_seq_len=16))
        packed = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       position_ids=batch["position_ids"]).logits[0]
    start = 0
    for logits in separate:
        n = logits.shape[0]
        assert torch.allclose(packed[start:start + n], logits, atol=1e-5)
        start += n
