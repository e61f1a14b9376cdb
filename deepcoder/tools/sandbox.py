"""Sandboxed Python for untrusted code: the model's tool calls and benchmark checks.

Each run gets a fresh bubblewrap sandbox: new user, pid, network, ipc, uts and cgroup
namespaces (so no network at all, loopback included, and no view of host processes), a
read-only ``/usr`` holding the interpreter and nothing else of the host (no project, no /tmp,
no home), a size-limited tmpfs work dir, a cleared environment and, when we are root, an
unprivileged uid of its own. Inside, rlimits bound memory, processes, CPU time, file size and
open files; outside, a wall-clock deadline kills the whole sandbox. When the sandbox's first
process exits, the kernel kills everything else in its pid namespace, so nothing outlives a call.

Starting bubblewrap plus an interpreter costs more than the code usually needs, so a small pool
of sandboxes is started ahead of time; a warm sandbox waits for its one payload and is never
reused. See docs/sandbox.md for the threat model and measured overhead.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import itertools
import logging
import marshal
import math
import os
import queue
import random
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import PurePosixPath
from typing import Mapping

from deepcoder.config import SandboxConfig
from deepcoder.tools.cgroups import Cgroups, SandboxCgroup

logger = logging.getLogger(__name__)

TRUNCATION_MARKER = "\n[... {n} bytes truncated ...]\n"
_MAX_FILES_BYTES = 16 * 1024 * 1024
_MAX_STDIN_BYTES = 16 * 1024 * 1024


class SandboxError(RuntimeError):
    """The sandbox itself cannot run (not the user's code failing)."""


class SandboxUnavailable(SandboxError):
    """No OS sandbox on this machine and the unsandboxed mode is not allowed."""


class SandboxInputError(ValueError):
    """The code, stdin or files given to the sandbox are unusable (empty, too large, bad names)."""


@dataclass(frozen=True)
class ExecResult:
    """What one run produced. ``exit_code`` is negative when the process was killed by a signal."""

    stdout: str
    stderr: str
    exit_code: int
    timed_out: bool
    duration_s: float
    truncated: bool

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def to_dict(self) -> dict:
        return asdict(self)


def _bootstrap_source() -> str:
    return resources.files("deepcoder.tools").joinpath("sandbox_bootstrap.py").read_text(encoding="utf-8")


class _CappedBuffer:
    """Keeps the head and the tail of a stream (tracebacks live at the end) within a byte cap."""

    def __init__(self, cap: int) -> None:
        self.tail_cap = cap // 4
        self.head_cap = cap - self.tail_cap
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def feed(self, data: bytes) -> None:
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if not data:
            return
        self.tail += data
        if len(self.tail) > self.tail_cap:
            excess = len(self.tail) - self.tail_cap
            self.dropped += excess
            del self.tail[:excess]

    def text(self) -> str:
        head = self.head.decode("utf-8", errors="replace")
        tail = self.tail.decode("utf-8", errors="replace")
        if self.dropped:
            return head + TRUNCATION_MARKER.format(n=self.dropped) + tail
        return head + tail


def _check_inputs(code: object, stdin: object, files: object, max_code_bytes: int) -> dict[str, bytes]:
    """Validate inputs and return the files (main.py included) as bytes for the payload."""
    if not isinstance(code, str):
        raise SandboxInputError(f"code must be a string, got {type(code).__name__}")
    if not code.strip():
        raise SandboxInputError("code is empty")
    size = len(code.encode("utf-8", errors="surrogatepass"))
    if size > max_code_bytes:
        raise SandboxInputError(f"code is {size} bytes, over the limit of {max_code_bytes}")
    if stdin is not None and not isinstance(stdin, str):
        raise SandboxInputError(f"stdin must be a string, got {type(stdin).__name__}")
    if stdin is not None:
        try:
            stdin_size = len(stdin.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise SandboxInputError(f"stdin is not encodable as UTF-8: {exc}") from None
        if stdin_size > _MAX_STDIN_BYTES:
            raise SandboxInputError(f"stdin is over the limit of {_MAX_STDIN_BYTES} bytes")
    encoded: dict[str, bytes] = {}
    total = 0
    for name, content in (files or {}).items():
        path = PurePosixPath(str(name))
        if (not str(name) or "\x00" in str(name) or path.is_absolute() or ".." in path.parts
                or str(path) == "." or path.parts[0] in {"main.py", ".stdin"}):
            raise SandboxInputError(f"file name {name!r} must be a relative path inside the work dir "
                                    "(not main.py, no '..')")
        data = content.encode("utf-8") if isinstance(content, str) else content
        if not isinstance(data, (bytes, bytearray)):
            raise SandboxInputError(f"file {name!r} must be str or bytes, got {type(content).__name__}")
        total += len(data)
        encoded[str(path)] = bytes(data)
    if total > _MAX_FILES_BYTES:
        raise SandboxInputError(f"files total {total} bytes, over the limit of {_MAX_FILES_BYTES}")
    encoded["main.py"] = code.encode("utf-8", errors="surrogatepass")
    return encoded


class Sandbox:
    """Runs Python code in a fresh OS sandbox per call, with warm sandboxes kept ready.

    Thread-safe; share one per process (``get_sandbox``).
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.bwrap = shutil.which("bwrap")
        self.python = self.config.python_executable
        if not os.path.exists(self.python):
            raise SandboxUnavailable(f"sandbox interpreter not found: {self.python} "
                                     "(set sandbox.python_executable)")
        self.isolated = self.bwrap is not None
        if not self.isolated:
            if not self.config.allow_unsandboxed:
                raise SandboxUnavailable(
                    "bubblewrap (bwrap) is not installed, so untrusted code cannot be isolated. "
                    "Install it (Debian/Ubuntu: apt-get install -y bubblewrap) or, for trusted local use "
                    "only, set sandbox.allow_unsandboxed: true"
                )
            logger.warning("SANDBOX DISABLED: bubblewrap is missing and sandbox.allow_unsandboxed is set; "
                           "untrusted code runs with rlimits only and CAN reach the network, files and "
                           "processes of this user. Never use this mode for model output you do not trust.")
        self._root = os.geteuid() == 0
        self._uids = itertools.count(random.randrange(self.config.uid_count))
        self._bootstrap = _bootstrap_source()
        self._lock = threading.Lock()
        self._warm: list[subprocess.Popen[bytes]] = []
        self._refilling = 0
        self._closed = False
        # bwrap --die-with-parent is PR_SET_PDEATHSIG, which fires when the *thread* that started bwrap
        # exits, not the process. So every sandbox is started from this one long-lived thread: a
        # short-lived caller thread (asyncio.to_thread, anyio's idle workers, a Thread per request)
        # ending must not SIGKILL the warm pool or a run in progress.
        self._spawn_requests: queue.SimpleQueue[concurrent.futures.Future | None] = queue.SimpleQueue()
        self._spawner = threading.Thread(target=self._spawn_loop, name="sandbox-spawn", daemon=True)
        self._spawner.start()
        self._prefix_mounts = self._interpreter_mounts()
        self._cgroups = Cgroups.detect()
        atexit.register(self.close)

    # ---------------------------------------------------------------- process start

    def _interpreter_mounts(self) -> list[str]:
        """Read-only binds that make the interpreter runnable: /usr, plus its prefix if elsewhere."""
        mounts = ["--ro-bind", "/usr", "/usr"]
        for name in ("lib", "lib64", "bin", "sbin"):
            target = os.path.join("/", name)
            if os.path.islink(target):
                mounts += ["--symlink", os.readlink(target), target]
            elif os.path.isdir(target):
                mounts += ["--ro-bind", target, target]
        real = os.path.realpath(self.python)
        if not real.startswith("/usr/"):
            prefix = os.path.dirname(os.path.dirname(real))
            mounts += ["--ro-bind", prefix, prefix]
        return mounts

    def _next_uid(self) -> int | None:
        if not self._root:
            return None
        return self.config.uid_base + next(self._uids) % self.config.uid_count

    def _bwrap_argv(self) -> list[str]:
        work_bytes = str(self.config.workdir_size_mb * 1024 * 1024)
        return [
            self.bwrap or "bwrap",
            "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
            "--hostname", "sandbox",
            *self._prefix_mounts,
            "--proc", "/proc", "--dev", "/dev",
            "--size", work_bytes, "--tmpfs", "/tmp",
            "--size", work_bytes, "--tmpfs", "/dev/shm",
            "--remount-ro", "/dev",  # --dev is a tmpfs with no size limit: read-only, so /dev/shm is the place
            "--remount-ro", "/",
            "--chdir", "/tmp",
            "--clearenv",
            "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
            "--setenv", "HOME", "/tmp",
            "--setenv", "LANG", "C.UTF-8",
            # glibc reserves 64 MiB of address space per thread arena, so under RLIMIT_AS=512 MiB a
            # program could start only ~13 threads; two arenas make max_processes the binding limit.
            "--setenv", "MALLOC_ARENA_MAX", "2",
            "--setenv", "TMPDIR", "/tmp",
            "--",
        ]

    def _spawn_loop(self) -> None:
        while (future := self._spawn_requests.get()) is not None:
            if self._closed:  # requests queued before close(): nothing to start them for
                future.cancel()
            elif future.set_running_or_notify_cancel():
                try:
                    future.set_result(self._spawn_here())
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    future.set_exception(exc)

    def _spawn(self) -> tuple[subprocess.Popen[bytes], str | None]:
        """Start one sandbox (from the spawner thread) that waits for its payload."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._spawn_requests.put(future)
        while True:
            try:
                return future.result(timeout=1.0)
            except concurrent.futures.CancelledError:
                raise SandboxError("sandbox is closed") from None
            except concurrent.futures.TimeoutError:
                if not self._spawner.is_alive():
                    raise SandboxError("sandbox is closed") from None

    def _spawn_here(self) -> tuple[subprocess.Popen[bytes], str | None]:
        """Start one sandbox that waits for its payload. Returns it and its temp dir (unsandboxed)."""
        uid = self._next_uid()
        interpreter = [self.python, "-I", "-c", self._bootstrap]
        tmpdir = None
        if self.isolated:
            argv, cwd = self._bwrap_argv() + interpreter, "/"
        else:
            tmpdir = tempfile.mkdtemp(prefix="deepcoder-sbx-")
            if uid is not None:
                os.chown(tmpdir, uid, uid)
            argv, cwd = interpreter, tmpdir
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": tmpdir or "/tmp"}
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=cwd, env=env, close_fds=True, start_new_session=True,
            user=uid, group=uid, extra_groups=[] if uid is not None else None,
        )
        proc._deepcoder_tmpdir = tmpdir  # type: ignore[attr-defined]
        proc._deepcoder_cgroup = self._confine(proc)  # type: ignore[attr-defined]
        return proc, tmpdir

    def _take(self) -> subprocess.Popen[bytes]:
        """A ready sandbox: a live warm one if any, else a new one. The pool is topped up in the
        background, so starting sandboxes (and moving them into cgroups) stays off this path."""
        with self._lock:
            if self._closed:
                raise SandboxError("sandbox is closed")
            proc = None
            while self._warm:
                candidate = self._warm.pop(0)
                if candidate.poll() is None:
                    proc = candidate
                    break
                self._reap(candidate)
        if proc is None:
            proc, _ = self._spawn()
        self._refill()
        return proc

    def _refill(self) -> None:
        """Ask the spawner thread for as many sandboxes as the pool lacks."""
        with self._lock:
            missing = self.config.pool_size - len(self._warm) - self._refilling
            self._refilling += max(0, missing)
        for _ in range(missing):
            future: concurrent.futures.Future = concurrent.futures.Future()
            future.add_done_callback(self._add_warm)
            self._spawn_requests.put(future)

    def _add_warm(self, future: concurrent.futures.Future) -> None:
        with self._lock:
            self._refilling -= 1
            if future.cancelled():
                return
            if future.exception() is not None:
                logger.warning("could not start a warm sandbox: %s", future.exception())
                return
            proc = future.result()[0]
            if not self._closed and len(self._warm) < self.config.pool_size:
                self._warm.append(proc)
                return
        self._kill(proc)
        self._reap(proc)

    def warm_up(self, timeout_s: float = 30.0) -> None:
        """Fill the pool now rather than at the first call (waits until it is full)."""
        self._refill()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self._warm) >= self.config.pool_size or self._closed:
                    return
            time.sleep(0.005)

    # ---------------------------------------------------------------- running

    def _limits(self, timeout_s: float, memory_mb: int) -> dict[str, int]:
        cfg = self.config
        # As root every sandbox runs as a uid of its own, so RLIMIT_NPROC counts only its processes
        # (+3: bwrap's monitor and reaper, and the interpreter). Otherwise it would count every
        # process of the calling user, so it is left unset and the pid namespace contains the rest.
        processes = cfg.max_processes + 3 if self._root else 0
        return {
            "cpu_s": int(math.ceil(timeout_s)) + 1,
            "file_bytes": cfg.max_file_size_mb * 1024 * 1024,
            "open_files": 256,
            "memory_bytes": memory_mb * 1024 * 1024,
            "processes": processes,
        }

    def run(
        self,
        code: str,
        *,
        stdin: str | None = None,
        timeout_s: float | None = None,
        memory_mb: int | None = None,
        files: Mapping[str, str | bytes] | None = None,
    ) -> ExecResult:
        """Run ``code`` as ``main.py`` in a fresh sandbox and return what it printed."""
        encoded = _check_inputs(code, stdin, files, self.config.max_code_bytes)
        timeout_s = float(timeout_s if timeout_s is not None else self.config.timeout_s)
        memory_mb = int(memory_mb if memory_mb is not None else self.config.memory_mb)
        if not 0 < timeout_s <= 3600:
            raise SandboxInputError(f"timeout_s must be in (0, 3600], got {timeout_s}")
        if memory_mb < 32:
            raise SandboxInputError(f"memory_mb must be at least 32, got {memory_mb}")
        # marshal (format 4, readable by any Python 3.4+) rather than JSON + base64: the bootstrap then
        # imports neither json nor base64 (with re behind them), about 6 ms of CPU per sandbox.
        payload = marshal.dumps({"files": encoded, "stdin": stdin or "",
                                 "limits": self._limits(timeout_s, memory_mb)}, 4)
        for attempt in range(3):
            proc = self._take()
            cgroup: SandboxCgroup | None = getattr(proc, "_deepcoder_cgroup", None)
            start = time.perf_counter()
            try:
                if cgroup is not None:
                    cgroup.set_memory(memory_mb * 1024 * 1024)
                assert proc.stdin is not None
                proc.stdin.write(len(payload).to_bytes(8, "big") + payload)
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                self._kill(proc)
                why = proc.stderr.read(2000).decode("utf-8", errors="replace").strip() if proc.stderr else ""
                self._reap(proc)
                if attempt == 2:
                    raise SandboxError(f"the sandbox died before it took the code: {why or 'no message'}") from None
                continue
            result = self._collect(proc, start, timeout_s)
            if cgroup is not None and cgroup.out_of_memory():
                result = replace(result, stderr=result.stderr + f"\n[killed: the sandbox used its {memory_mb} MB]")
            return result
        raise AssertionError("unreachable")

    def _confine(self, proc: subprocess.Popen[bytes]) -> SandboxCgroup | None:
        """Put a new sandbox in its own memory + pids cgroup (when this host allows it), before it
        has started anything, so every process it will ever have is born inside."""
        if self._cgroups is None or self._closed:  # closed: the sandbox is about to be killed
            return None
        cgroup = None
        try:
            cgroup = self._cgroups.create(self.config.memory_mb * 1024 * 1024, self.config.max_processes + 3)
            cgroup.attach_tree(proc.pid)
        except OSError as exc:
            logger.warning("could not confine a sandbox in a cgroup (%s); per-process limits only", exc)
            if cgroup is not None:
                self._cgroups.discard(cgroup)
            return None
        return cgroup

    def _collect(self, proc: subprocess.Popen[bytes], start: float, timeout_s: float) -> ExecResult:
        """Read both pipes under a cap until exit or the deadline, then make sure all is dead."""
        cap = self.config.max_output_bytes
        buffers = {"stdout": _CappedBuffer(cap), "stderr": _CappedBuffer(cap)}
        deadline = start + timeout_s
        timed_out = False
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ, "stdout")  # type: ignore[arg-type]
            sel.register(proc.stderr, selectors.EVENT_READ, "stderr")  # type: ignore[arg-type]
            while sel.get_map():
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    timed_out = True
                    break
                for key, _ in sel.select(timeout=min(remaining, 0.5)):
                    chunk = os.read(key.fd, 65536)
                    if chunk:
                        buffers[key.data].feed(chunk)
                    else:
                        sel.unregister(key.fileobj)
        if timed_out:
            self._kill(proc)
        try:
            exit_code = proc.wait(timeout=max(0.0, deadline - time.perf_counter()) + 1.0)
        except subprocess.TimeoutExpired:
            timed_out = True
            self._kill(proc)
            exit_code = proc.wait()
        duration = time.perf_counter() - start
        self._reap(proc)
        stderr = buffers["stderr"].text()
        if timed_out:
            stderr += f"\n[timed out after {timeout_s:g}s; the sandbox was killed]"
        return ExecResult(
            stdout=buffers["stdout"].text(),
            stderr=stderr,
            exit_code=exit_code,
            timed_out=timed_out,
            duration_s=duration,
            truncated=any(b.dropped for b in buffers.values()),
        )

    async def arun(self, code: str, **kwargs) -> ExecResult:
        """Async variant of ``run``: the blocking wait happens in a worker thread."""
        return await asyncio.to_thread(self.run, code, **kwargs)

    # ---------------------------------------------------------------- cleanup

    def _kill(self, proc: subprocess.Popen[bytes]) -> None:
        """Kill the sandbox. bwrap's --die-with-parent then takes its pid namespace down."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.kill()
        except ProcessLookupError:
            pass

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()
        if proc.poll() is None:
            self._kill(proc)
        proc.wait()
        tmpdir = getattr(proc, "_deepcoder_tmpdir", None)
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
        cgroup = getattr(proc, "_deepcoder_cgroup", None)
        if cgroup is not None and self._cgroups is not None:
            self._cgroups.discard(cgroup)

    def close(self) -> None:
        """Kill the warm sandboxes. Safe to call twice."""
        with self._lock:
            self._closed = True
            warm, self._warm = self._warm, []
        self._spawn_requests.put(None)
        for proc in warm:
            self._kill(proc)
            self._reap(proc)
        if self._cgroups is not None:
            self._cgroups.close()


_SANDBOXES: dict[str, Sandbox] = {}
_SANDBOXES_LOCK = threading.Lock()


def get_sandbox(config: SandboxConfig | None = None) -> Sandbox:
    """The process-wide sandbox for this config (one warm pool per distinct config)."""
    config = config or SandboxConfig()
    key = config.model_dump_json()
    with _SANDBOXES_LOCK:
        sandbox = _SANDBOXES.get(key)
        if sandbox is None or sandbox._closed:
            sandbox = _SANDBOXES[key] = Sandbox(config)
        return sandbox


def run_python(
    code: str,
    *,
    stdin: str | None = None,
    timeout_s: float | None = None,
    memory_mb: int | None = None,
    files: Mapping[str, str | bytes] | None = None,
    config: SandboxConfig | None = None,
) -> ExecResult:
    """Run untrusted ``code`` in a fresh sandbox. Limits default to ``config`` (SandboxConfig)."""
    return get_sandbox(config).run(code, stdin=stdin, timeout_s=timeout_s, memory_mb=memory_mb, files=files)


async def arun_python(
    code: str,
    *,
    stdin: str | None = None,
    timeout_s: float | None = None,
    memory_mb: int | None = None,
    files: Mapping[str, str | bytes] | None = None,
    config: SandboxConfig | None = None,
) -> ExecResult:
    """Async ``run_python``."""
    return await get_sandbox(config).arun(code, stdin=stdin, timeout_s=timeout_s, memory_mb=memory_mb,
                                          files=files)


def isolation_status() -> tuple[bool, str]:
    """Whether bubblewrap can create a sandbox here, with a reason (for `deepcoder verify`)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False, "bubblewrap (bwrap) not found; apt-get install -y bubblewrap"
    try:
        sandbox = Sandbox(SandboxConfig(pool_size=0))
        try:
            result = sandbox.run("print('ok')", timeout_s=20)
        finally:
            sandbox.close()
    except SandboxError as exc:
        return False, str(exc)
    if result.stdout.strip() != "ok":
        return False, f"bwrap present but a sandboxed run failed: {result.stderr.strip()[-300:]}"
    from deepcoder.tools.cgroups import Cgroups

    cgroups = Cgroups.detect()
    if cgroups is not None:
        cgroups.close()
    limits = "per-sandbox memory+pids cgroups" if cgroups else "rlimits per process (no writable cgroup v1)"
    return True, f"{bwrap}: namespaces, read-only host /usr only, tmpfs work dir, {limits}"
