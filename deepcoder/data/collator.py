"""Batching for SAD: pad ids, labels and the span masks together; optional packing.

``SADCollator`` right-pads ``input_ids`` with the pad id, ``labels`` with -100 and the masks with
0, and builds ``attention_mask`` from the lengths. For packed rows (``pack_examples``) it also
pads ``position_ids`` (restarting at 0 for each example) and, unless told the model uses a
varlen kernel (flash-attention reads the boundaries from ``position_ids``), builds a 4-D
block-diagonal causal mask so that packed examples never attend to each other (the failure mode
of TRL issue #3728). The first token of every packed example gets label -100, exactly as an
unpacked sequence's first token is never predicted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch

from deepcoder.data.masks import IGNORE_INDEX

MASK_COLUMNS = ("reason_mask", "action_mask", "observation_mask")


def pack_examples(rows: Sequence[dict[str, Any]], max_seq_len: int) -> list[dict[str, Any]]:
    """Greedy, order-keeping packing of whole examples into sequences of at most ``max_seq_len``."""
    packed: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for row in rows:
        n = len(row["input_ids"])
        if n > max_seq_len:
            raise ValueError(f"an example of {n} tokens cannot be packed into {max_seq_len}")
        if current is None or len(current["input_ids"]) + n > max_seq_len:
            current = {"input_ids": [], "labels": [], "position_ids": [], "seq_lengths": [],
                       **{column: [] for column in MASK_COLUMNS}}
            packed.append(current)
        labels = list(row["labels"])
        masks = {column: list(row[column]) for column in MASK_COLUMNS}
        labels[0] = IGNORE_INDEX  # never predict an example's first token from the previous example
        for column in ("reason_mask", "action_mask"):
            masks[column][0] = 0
        current["input_ids"] += list(row["input_ids"])
        current["labels"] += labels
        current["position_ids"] += list(range(n))
        current["seq_lengths"].append(n)
        for column in MASK_COLUMNS:
            current[column] += masks[column]
    return packed


def block_causal_mask(seq_lengths: Sequence[Sequence[int]], length: int, dtype=torch.float32) -> torch.Tensor:
    """(batch, 1, length, length) additive mask: causal inside each packed example, -inf elsewhere."""
    batch = len(seq_lengths)
    allowed = torch.zeros(batch, length, length, dtype=torch.bool)
    causal = torch.tril(torch.ones(length, length, dtype=torch.bool))
    for b, lengths in enumerate(seq_lengths):
        start = 0
        for n in lengths:
            allowed[b, start:start + n, start:start + n] = causal[:n, :n]
            start += n
        for pad in range(start, length):  # padding attends to itself only, so no row is all -inf
            allowed[b, pad, pad] = True
    mask = torch.zeros(batch, 1, length, length, dtype=dtype)
    return mask.masked_fill(~allowed[:, None], torch.finfo(dtype).min)


@dataclass
class SADCollator:
    """Pads a list of dataset rows into tensors; see the module docstring."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None
    packed_attention: Literal["4d", "position_ids"] = "4d"

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty batch")
        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        for f in features:
            lengths = {len(f[c]) for c in ("input_ids", "labels", *MASK_COLUMNS) if c in f}
            if len(lengths) != 1:
                raise ValueError(f"row columns have different lengths: {sorted(lengths)}")

        def pad(column: str, value: int) -> torch.Tensor:
            return torch.tensor([list(f[column]) + [value] * (longest - len(f[column])) for f in features],
                                dtype=torch.long)

        batch = {
            "input_ids": pad("input_ids", self.pad_token_id),
            "labels": pad("labels", IGNORE_INDEX),
            "attention_mask": torch.tensor([[1] * len(f["input_ids"]) + [0] * (longest - len(f["input_ids"]))
                                            for f in features], dtype=torch.long),
        }
        for column in MASK_COLUMNS:
            if column in features[0]:
                batch[column] = pad(column, 0)
        if "position_ids" in features[0]:
            batch["position_ids"] = pad("position_ids", 0)
            if self.packed_attention == "4d":
                batch["attention_mask"] = block_causal_mask([f["seq_lengths"] for f in features], longest)
        return batch
