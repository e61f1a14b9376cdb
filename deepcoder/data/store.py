"""A durable, resumable JSONL store of trajectories: one record per line, one writer.

Each record is written with a single ``write`` on an append-only descriptor and fsynced (per
record, or per small batch), so a ``kill -9`` can only ever leave a torn *last* line. Opening the
store finds that torn tail, drops it (truncating to the last complete line) and reports the keys
already done, so a resumed run skips them: nothing is lost but in-flight episodes, and nothing is
written twice.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from pydantic import ValidationError

from deepcoder.agent.types import Trajectory

logger = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """The output cannot be used as asked (exists without --resume, corrupt in the middle)."""


def _scan(path: Path) -> tuple[set[str], int, int, list[int]]:
    """(keys, byte offset after the last good line, good lines, bad line numbers)."""
    keys: set[str] = set()
    good_end = 0
    count = 0
    bad: list[int] = []
    with path.open("rb") as handle:
        offset = 0
        for number, line in enumerate(handle, start=1):
            offset += len(line)
            complete = line.endswith(b"\n")
            try:
                record = Trajectory.model_validate_json(line)
            except (ValidationError, ValueError):
                bad.append(number)
                continue
            if not complete:  # valid JSON but no newline: the write may still have been cut
                bad.append(number)
                continue
            keys.add(record.key)
            good_end = offset
            count += 1
    return keys, good_end, count, bad


class TrajectoryStore:
    """Append trajectories durably; ``done`` holds the keys already stored."""

    def __init__(self, path: str | os.PathLike[str], *, resume: bool = False, fsync_every: int = 1) -> None:
        self.path = Path(path)
        self.fsync_every = max(1, fsync_every)
        self.done: set[str] = set()
        self.dropped_tail = False
        self._pending = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size > 0:
            if not resume:
                raise StoreError(f"{self.path} already holds trajectories; pass --resume to continue it "
                                 "or choose another --out")
            self._recover()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _recover(self) -> None:
        keys, good_end, count, bad = _scan(self.path)
        size = self.path.stat().st_size
        last_line = count + len(bad)
        torn = [n for n in bad if n == last_line and good_end < size]
        middle = [n for n in bad if n not in torn]
        if middle:
            raise StoreError(f"{self.path}: unreadable records on line(s) {middle[:10]}; the file was changed "
                             "by something other than this store")
        if torn:
            logger.warning("%s: dropping a torn last line (%d bytes) left by an interrupted run",
                           self.path, size - good_end)
            with self.path.open("r+b") as handle:
                handle.truncate(good_end)
                os.fsync(handle.fileno())
            self.dropped_tail = True
        self.done = keys
        logger.info("resuming %s: %d trajectories already stored", self.path, len(keys))

    def append(self, trajectory: Trajectory) -> bool:
        """Store one trajectory; False (and nothing written) if its key is already stored."""
        if trajectory.key in self.done:
            return False
        data = (trajectory.model_dump_json() + "\n").encode("utf-8")
        written = os.write(self._fd, data)
        if written != len(data):  # a short write on a regular file means the disk is full
            raise StoreError(f"short write to {self.path} ({written} of {len(data)} bytes): disk full?")
        self.done.add(trajectory.key)
        self._pending += 1
        if self._pending >= self.fsync_every:
            self.flush()
        return True

    def flush(self) -> None:
        os.fsync(self._fd)
        self._pending = 0

    def close(self) -> None:
        if self._fd >= 0:
            self.flush()
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "TrajectoryStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_keys(path: str | os.PathLike[str]) -> list[str]:
    """Keys of the records in a store, in file order (for checks and tests)."""
    keys = []
    with Path(path).open("r", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                keys.append(f"{record['problem_id']}#{record.get('sample', 0)}")
    return keys
