"""The data we ship: intact (checksums), licensed, and loaded with the right splits."""

from __future__ import annotations

import hashlib
from importlib import resources

from deepcoder.data.problems import load_humaneval, load_math_tasks, load_mbpp, load_retrieval_tasks


def test_checksums_match() -> None:
    root = resources.files("deepcoder.resources.data")
    sums = root.joinpath("SHA256SUMS").read_text().splitlines()
    assert len(sums) >= 8
    for line in sums:
        digest, name = line.split(maxsplit=1)
        data = root.joinpath(name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, name
    assert "MIT License" in root.joinpath("LICENSES.md").read_text()
    assert "Apache License" in resources.files("deepcoder.resources.tokenizers").joinpath("qwen2.5/LICENSE").read_text()


def test_mbpp_splits_follow_the_readme() -> None:
    sizes = {split: len(load_mbpp(split)) for split in ("prompt", "test", "validation", "train")}
    assert sizes == {"prompt": 10, "test": 500, "validation": 90, "train": 374}
    assert len(load_mbpp("all")) == 974
    assert len(load_mbpp("all", sanitized=True)) == 427
    train_ids = {t.id for t in load_mbpp("train")}
    assert not train_ids & {t.id for t in load_mbpp("test")}


def test_humaneval_and_small_sets() -> None:
    humaneval = load_humaneval()
    assert len(humaneval) == 164 and humaneval[0].entry_point
    assert all(t.answer for t in load_math_tasks()) and all(t.answer for t in load_retrieval_tasks())
