"""A memory and pids cgroup per sandbox, so limits bind the sandbox as a whole.

rlimits are per process: a sandbox with 32 processes of 512 MB each could hold 16 GB. A cgroup
caps the sum (tmpfs pages written in the sandbox included) and counts processes for any uid.
This uses cgroup v1 hierarchies (``/sys/fs/cgroup/memory`` and ``/sys/fs/cgroup/pids``) and
needs root; where they are not writable (unprivileged, or a v2-only host without delegation)
``Cgroups.detect()`` returns None and the sandbox keeps its rlimits only.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_ROOT = Path("/sys/fs/cgroup")
# One parent cgroup per Cgroups (so per Sandbox): two sandboxes in a process (get_sandbox keeps one
# per config) must not create the same sbx-N names, nor remove the parent from under each other.
_INSTANCES = itertools.count()


def _own_path(controller: str) -> str | None:
    """This process's cgroup path in a v1 hierarchy, from /proc/self/cgroup."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3 and controller in parts[1].split(","):
            return parts[2]
    return None


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            kids += [int(x) for x in text.split()]
    except (OSError, ValueError):
        pass
    return kids


@dataclass
class SandboxCgroup:
    """The memory and pids cgroups of one sandbox run."""

    memory: Path
    pids: Path
    memory_bytes: int

    def attach_tree(self, pid: int) -> None:
        """Move ``pid`` and all its descendants in. Parents move first, so a process forked
        meanwhile is born inside, and every one that existed before is found as a child."""
        pending = [pid]
        while pending:
            current = pending.pop()
            for group in (self.memory, self.pids):
                try:
                    (group / "cgroup.procs").write_text(str(current))
                except ProcessLookupError:
                    break
            pending += _children(current)

    def set_memory(self, memory_bytes: int) -> None:
        """Change the cap (memory+swap must never be below memory, so order the two writes)."""
        if memory_bytes == self.memory_bytes:
            return
        limit, swap = self.memory / "memory.limit_in_bytes", self.memory / "memory.memsw.limit_in_bytes"
        order = [limit, swap] if memory_bytes < self.memory_bytes else [swap, limit]
        for path in order:
            if path.exists():
                path.write_text(str(memory_bytes))
        self.memory_bytes = memory_bytes

    def out_of_memory(self) -> bool:
        """Whether the kernel had to OOM-kill inside the sandbox."""
        try:
            for line in (self.memory / "memory.oom_control").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
            return int((self.memory / "memory.failcnt").read_text()) > 0 and \
                int((self.memory / "memory.max_usage_in_bytes").read_text()) >= self.memory_bytes
        except (OSError, ValueError):
            return False

    def remove(self, patience_s: float = 10.0) -> None:
        """Delete both cgroups once their processes are gone (retrying while they are reaped)."""
        deadline = time.monotonic() + patience_s
        for group in (self.memory, self.pids):
            while True:
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        logger.debug("cgroup %s still busy; left behind", group)
                        break
                    time.sleep(0.02)


class Cgroups:
    """Creates per-sandbox cgroups under a parent of this process's own cgroup."""

    def __init__(self, memory_parent: Path, pids_parent: Path) -> None:
        self.memory_parent = memory_parent
        self.pids_parent = pids_parent
        self._names = itertools.count()
        # Removal waits until the kernel has reaped the sandbox's processes (orphaned bwrap
        # helpers are reaped by init, sometimes late), so it happens off the caller's path.
        self._trash: queue.SimpleQueue[SandboxCgroup | None] = queue.SimpleQueue()
        self._janitor: threading.Thread | None = None

    def discard(self, cgroup: SandboxCgroup) -> None:
        """Remove ``cgroup`` in the background once it is empty."""
        if self._janitor is None:
            self._janitor = threading.Thread(target=self._sweep, name="sandbox-cgroup-janitor", daemon=True)
            self._janitor.start()
        self._trash.put(cgroup)

    def _sweep(self) -> None:
        while (cgroup := self._trash.get()) is not None:
            cgroup.remove()

    @classmethod
    def detect(cls) -> "Cgroups | None":
        """Usable cgroup v1 memory + pids hierarchies, or None (then rlimits only)."""
        if os.geteuid() != 0:
            return None
        memory_own, pids_own = _own_path("memory"), _own_path("pids")
        if memory_own is None or pids_own is None:
            return None
        name = f"deepcoder-{os.getpid()}-{next(_INSTANCES)}"
        memory_parent = _ROOT / "memory" / memory_own.lstrip("/") / name
        pids_parent = _ROOT / "pids" / pids_own.lstrip("/") / name
        try:
            memory_parent.mkdir(exist_ok=True)
            pids_parent.mkdir(exist_ok=True)
            probe = cls(memory_parent, pids_parent).create(64 * 1024 * 1024, 8)
            probe.remove()
        except OSError as exc:
            logger.debug("no per-sandbox cgroups (%s); limits are per process", exc)
            return None
        return cls(memory_parent, pids_parent)

    def create(self, memory_bytes: int, max_pids: int) -> SandboxCgroup:
        name = f"sbx-{next(self._names)}"
        memory = self.memory_parent / name
        pids = self.pids_parent / name
        memory.mkdir()
        pids.mkdir()
        (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
        swap = memory / "memory.memsw.limit_in_bytes"
        if swap.exists():
            swap.write_text(str(memory_bytes))  # no swapping past the limit either
        (pids / "pids.max").write_text(str(max_pids))
        return SandboxCgroup(memory, pids, memory_bytes)

    def close(self) -> None:
        """Remove what is left (after the sandboxes were killed) and the parent cgroups."""
        pending = []
        while not self._trash.empty():
            item = self._trash.get()
            if item is not None:
                pending.append(item)
        for cgroup in pending:
            cgroup.remove(patience_s=2.0)
        for parent in (self.memory_parent, self.pids_parent):
            try:
                parent.rmdir()
            except OSError:
                pass
