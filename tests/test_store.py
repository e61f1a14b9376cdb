"""The trajectory store: durable appends, torn tails dropped, resume without duplicates."""

from __future__ import annotations

import pytest

from deepcoder.agent.types import Task, Trajectory
from deepcoder.data.store import StoreError, TrajectoryStore, read_keys


def record(n: int, sample: int = 0) -> Trajectory:
    return Trajectory(task=Task(id=f"p/{n}", kind="math", prompt=f"{n}?", answer=str(n)), sample=sample,
                      status="finished", final_answer=str(n), verified=True)


def test_append_and_refuse_duplicates(tmp_path) -> None:
    path = tmp_path / "t.jsonl"
    with TrajectoryStore(path) as store:
        assert store.append(record(1)) and store.append(record(1, sample=1))
        assert not store.append(record(1))  # same (problem, sample): written once
    assert read_keys(path) == ["p/1#0", "p/1#1"]


def test_existing_output_needs_resume(tmp_path) -> None:
    path = tmp_path / "t.jsonl"
    with TrajectoryStore(path) as store:
        store.append(record(1))
    with pytest.raises(StoreError, match="--resume"):
        TrajectoryStore(path)
    with TrajectoryStore(path, resume=True) as store:
        assert store.done == {"p/1#0"}
        assert not store.append(record(1)) and store.append(record(2))
    assert read_keys(path) == ["p/1#0", "p/2#0"]


@pytest.mark.parametrize("tail", [b'{"version": 1, "id": "abc", "task": {"id"', b"{}", b'{"version":1'])
def test_torn_last_line_is_dropped_on_resume(tmp_path, tail) -> None:
    path = tmp_path / "t.jsonl"
    with TrajectoryStore(path) as store:
        store.append(record(1))
        store.append(record(2))
    good = path.read_bytes()
    path.write_bytes(good + tail)  # a kill -9 in the middle of a write
    with TrajectoryStore(path, resume=True) as store:
        assert store.dropped_tail and store.done == {"p/1#0", "p/2#0"}
        store.append(record(3))
    assert path.read_bytes().startswith(good)
    assert read_keys(path) == ["p/1#0", "p/2#0", "p/3#0"]


def test_complete_json_without_newline_is_treated_as_torn(tmp_path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(record(1).model_dump_json().encode() + b"\n" + record(2).model_dump_json().encode())
    with TrajectoryStore(path, resume=True) as store:
        assert store.done == {"p/1#0"}  # record 2 will be generated again, not half-trusted
        store.append(record(2))
    assert read_keys(path) == ["p/1#0", "p/2#0"]


def test_corruption_in_the_middle_is_an_error(tmp_path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(record(1).model_dump_json().encode() + b"\nnot json\n" + record(2).model_dump_json().encode()
                     + b"\n")
    with pytest.raises(StoreError, match=r"line\(s\) \[2\]"):
        TrajectoryStore(path, resume=True)
