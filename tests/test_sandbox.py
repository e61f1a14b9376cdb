"""Functional tests for the bubblewrap sandbox (deepcoder.tools.sandbox).

What a caller sees: output, exit codes, stdin, files, tracebacks, truncation, timeouts, input
validation, the async entry point, per-run isolation of the work dir, the warm pool, and the
behaviour when bubblewrap is missing. The attack suite is tests/test_sandbox_adversarial.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import threading
import time

import pytest

from deepcoder.config import SandboxConfig
from deepcoder.tools import sandbox as sandbox_mod
from deepcoder.tools.sandbox import (
    ExecResult,
    Sandbox,
    SandboxInputError,
    SandboxUnavailable,
    arun_python,
    get_sandbox,
    run_python,
)

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")

# A config of this module's own, so that its pool is not shared with other test modules.
CFG = SandboxConfig(pool_size=1, uid_base=220000, uid_count=200)


def run(code: str, **kwargs) -> ExecResult:
    return run_python(code, config=CFG, **kwargs)


@pytest.fixture
def make_sandbox():
    """Sandboxes built directly (not via get_sandbox) are closed at the end of the test."""
    made: list[Sandbox] = []

    def factory(**overrides) -> Sandbox:
        sb = Sandbox(SandboxConfig(**{"uid_base": 230000, "uid_count": 200, **overrides}))
        made.append(sb)
        return sb

    yield factory
    for sb in made:
        sb.close()


# ---------------------------------------------------------------- output, exit code


def test_stdout_stderr_and_exit_code():
    result = run("import sys\nprint('to out')\nprint('to err', file=sys.stderr)\nsys.exit(3)")
    assert result.stdout == "to out\n"
    assert result.stderr == "to err\n"
    assert result.exit_code == 3
    assert not result.timed_out and not result.truncated
    assert not result.ok
    assert result.duration_s > 0


def test_success_is_ok_and_serialises():
    result = run("print(6 * 7)")
    assert result.ok and result.exit_code == 0
    assert result.stdout == "42\n"
    as_dict = result.to_dict()
    assert as_dict["stdout"] == "42\n" and as_dict["exit_code"] == 0 and as_dict["timed_out"] is False


def test_runs_as_main_with_clean_argv():
    result = run("import sys\nprint(__name__, sys.argv)")
    assert result.stdout.strip() == "__main__ ['main.py']"


# ---------------------------------------------------------------- stdin, files


def test_stdin_reaches_input():
    result = run("a = input()\nb = input()\nprint(int(a) + int(b))", stdin="2\n40\n")
    assert result.ok, result.stderr
    assert result.stdout == "42\n"


def test_stdin_reaches_sys_stdin_read():
    text = "line one\nline two\nünïcödé ✓\n"
    result = run("import sys\ndata = sys.stdin.read()\nprint(len(data.splitlines()), repr(data))", stdin=text)
    assert result.ok, result.stderr
    assert result.stdout.strip() == f"3 {text!r}"


def test_no_stdin_reads_eof():
    result = run("import sys\nprint(repr(sys.stdin.read()))\ntry:\n    input()\nexcept EOFError:\n    print('eof')")
    assert result.stdout == "''\neof\n"


def test_files_appear_in_work_dir():
    files = {"data/in.txt": "hello file", "blob.bin": b"\x00\x01\xff", "helper.py": "VALUE = 7\n"}
    code = (
        "import os, helper\n"
        "print(open('data/in.txt').read())\n"
        "print(list(open('blob.bin', 'rb').read()))\n"
        "print(helper.VALUE)\n"
        "print(os.getcwd(), sorted(os.listdir('.')))\n"
    )
    result = run(code, files=files)
    assert result.ok, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "hello file"
    assert lines[1] == "[0, 1, 255]"
    assert lines[2] == "7"
    assert lines[3].startswith("/tmp ")
    assert "'blob.bin'" in lines[3] and "'data'" in lines[3] and "'main.py'" in lines[3]
    assert ".stdin" not in lines[3]


# ---------------------------------------------------------------- tracebacks, encoding


def test_traceback_points_at_main_py():
    code = "def f(x):\n    return 1 / x\n\nf(0)\n"
    result = run(code)
    assert result.exit_code == 1
    assert 'File "main.py", line 4' in result.stderr
    assert 'File "main.py", line 2, in f' in result.stderr
    assert "ZeroDivisionError: division by zero" in result.stderr
    # The bootstrap and runpy frames are hidden: the traceback reads like `python main.py`.
    assert "sandbox_bootstrap" not in result.stderr and "runpy" not in result.stderr


def test_syntax_error_reported():
    result = run("def broken(:\n    pass\n")
    assert result.exit_code != 0
    assert "SyntaxError" in result.stderr
    assert "main.py" in result.stderr


def test_uncaught_exception_in_main_keeps_stdout():
    result = run("print('before')\nraise KeyError('boom')")
    assert result.stdout == "before\n"
    assert "KeyError: 'boom'" in result.stderr
    assert result.exit_code == 1


def test_non_utf8_output_decodes_with_replacement():
    code = (
        "import sys\n"
        "sys.stdout.buffer.write(b'ok \\xff\\xfe end\\n'); sys.stdout.flush()\n"
        "sys.stderr.buffer.write(b'\\xc3\\x28 bad\\n'); sys.stderr.flush()\n"
    )
    result = run(code)
    assert result.ok, result.stderr
    assert result.stdout == "ok \ufffd\ufffd end\n"
    assert "\ufffd" in result.stderr and "bad" in result.stderr


def test_unicode_roundtrip():
    result = run("print('héllo ✓ 日本')")
    assert result.stdout == "héllo ✓ 日本\n"


# ---------------------------------------------------------------- truncation, timeout


def test_output_flood_is_truncated_keeping_head_and_tail():
    cap = CFG.max_output_bytes
    code = (
        "import sys\n"
        "sys.stdout.write('HEAD-MARK\\n')\n"
        "chunk = 'x' * 1023 + '\\n'\n"
        "for _ in range(4096):\n"
        "    sys.stdout.write(chunk)\n"
        "sys.stdout.write('TAIL-MARK\\n')\n"
    )
    result = run(code)
    assert result.ok, result.stderr[-500:]
    assert result.truncated
    assert result.stdout.startswith("HEAD-MARK\n")
    assert result.stdout.endswith("TAIL-MARK\n")
    assert "bytes truncated ..." in result.stdout
    assert len(result.stdout.encode()) <= cap + 100
    dropped = int(result.stdout.split("[... ")[1].split(" bytes")[0])
    total = len("HEAD-MARK\n") + 4096 * 1024 + len("TAIL-MARK\n")
    assert dropped == total - cap


def test_small_output_not_truncated():
    result = run("print('a' * 1000)")
    assert not result.truncated
    assert "truncated" not in result.stdout


def test_timeout_kills_and_returns_promptly():
    start = time.perf_counter()
    result = run("while True:\n    pass\n", timeout_s=1.0)
    elapsed = time.perf_counter() - start
    assert result.timed_out
    assert not result.ok
    assert result.exit_code < 0
    assert "timed out after 1s" in result.stderr
    assert elapsed < 1.0 + 2.0, elapsed


def test_timeout_keeps_output_printed_before():
    result = run("import time\nprint('started', flush=True)\ntime.sleep(100)", timeout_s=1.0)
    assert result.timed_out
    assert result.stdout == "started\n"


def test_per_call_timeout_and_memory_overrides():
    result = run("import resource\nprint(resource.getrlimit(resource.RLIMIT_AS)[0] // 2**20)", memory_mb=300)
    assert result.stdout.strip() == "300"
    result = run("import time\ntime.sleep(1.5)\nprint('slept')", timeout_s=5)
    assert result.ok and result.stdout == "slept\n"


# ---------------------------------------------------------------- input validation


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("", "code is empty"),
        ("   \n\t\n  ", "code is empty"),
        (b"print(1)", "code must be a string, got bytes"),
        (None, "code must be a string, got NoneType"),
        (123, "code must be a string, got int"),
    ],
)
def test_bad_code_rejected(code, message):
    with pytest.raises(SandboxInputError, match=message):
        run(code)


def test_code_over_max_code_bytes_rejected():
    small = SandboxConfig(pool_size=0, max_code_bytes=100, uid_base=220000, uid_count=200)
    with pytest.raises(SandboxInputError, match=r"code is 101 bytes, over the limit of 100"):
        run_python("#" * 101, config=small)
    # Multi-byte characters count in bytes, not characters.
    with pytest.raises(SandboxInputError, match=r"over the limit of 100"):
        run_python("#" + "é" * 50, config=small)
    assert run_python("#" * 99 + "\n", config=small).ok
    with pytest.raises(SandboxInputError, match="over the limit"):
        run("#" * (CFG.max_code_bytes + 1))


@pytest.mark.parametrize("name", ["../x", "/etc/x", "main.py", "./main.py", "a/../../x", "", ".stdin"])
def test_bad_file_names_rejected(name):
    with pytest.raises(SandboxInputError, match="file name .* must be a relative path inside the work dir"):
        run("print(1)", files={name: "data"})


def test_bad_file_content_and_stdin_rejected():
    with pytest.raises(SandboxInputError, match="must be str or bytes"):
        run("print(1)", files={"ok.txt": 123})
    with pytest.raises(SandboxInputError, match="stdin must be a string"):
        run("print(1)", stdin=b"bytes")


@pytest.mark.parametrize(("files", "stdin"), [({"a\x00b": "x"}, None), ({"main.py/x": "x"}, None),
                                              ({".stdin/x": "x"}, None), (None, "lone \udc80 surrogate")],
                         ids=["nul-in-name", "under-main.py", "under-.stdin", "surrogate-stdin"])
def test_unusable_names_and_stdin_rejected_up_front(files, stdin):
    with pytest.raises(SandboxInputError):
        run("print(1)", files=files, stdin=stdin)


@pytest.mark.parametrize(("kwargs", "message"), [({"timeout_s": 0}, "timeout_s"), ({"timeout_s": -1}, "timeout_s"),
                                                 ({"timeout_s": 4000}, "timeout_s"),
                                                 ({"memory_mb": 16}, "memory_mb")])
def test_bad_limits_rejected(kwargs, message):
    with pytest.raises(SandboxInputError, match=message):
        run("print(1)", **kwargs)


# ---------------------------------------------------------------- async, isolation between runs


def test_arun_python_concurrent_gather():
    # A config of its own: asyncio.run's worker threads spawn the pool refills, see
    # test_warm_sandbox_survives_exit_of_spawning_thread.
    cfg = SandboxConfig(pool_size=2, uid_base=240000, uid_count=200)

    async def main():
        codes = [f"import time\ntime.sleep(0.3)\nprint({i} * {i})" for i in range(5)]
        start = time.perf_counter()
        results = await asyncio.gather(*(arun_python(code, config=cfg, timeout_s=10) for code in codes))
        return results, time.perf_counter() - start

    results, elapsed = asyncio.run(main())
    assert [r.stdout.strip() for r in results] == [str(i * i) for i in range(5)]
    assert all(r.ok for r in results), [r.stderr for r in results]
    # The five 0.3 s sleeps overlap rather than run back to back.
    assert elapsed < 5 * 0.3 + 0.5, elapsed
    get_sandbox(cfg).close()


def test_arun_python_timeout():
    cfg = SandboxConfig(pool_size=0, uid_base=240000, uid_count=200)
    result = asyncio.run(arun_python("while True: pass", config=cfg, timeout_s=1))
    assert result.timed_out


def test_program_can_start_24_threads():
    code = (
        "import threading, time\n"
        "threads = [threading.Thread(target=time.sleep, args=(0.5,)) for _ in range(24)]\n"
        "for t in threads:\n"
        "    t.start()\n"
        "for t in threads:\n"
        "    t.join()\n"
        "print('ok')\n"
    )
    result = run(code)
    assert result.ok and result.stdout == "ok\n", result.stderr[-500:]


def test_fresh_work_dir_per_run():
    first = run("open('persist.txt', 'w').write('x')\nimport os\nprint(sorted(os.listdir('.')))")
    assert first.ok and "persist.txt" in first.stdout
    second = run("import os\nprint(sorted(os.listdir('.')), os.path.exists('persist.txt'))")
    assert second.stdout.strip() == "['main.py'] False"
    shm = run("open('/dev/shm/leftover', 'w').write('x')")
    assert shm.ok
    assert run("import os\nprint(os.listdir('/dev/shm'))").stdout.strip() == "[]"


def test_fresh_interpreter_state_per_run():
    assert run("import sys\nsys.modules['json'] = None\nimport builtins\nbuiltins.MARK = 1").ok
    result = run("import builtins, json\nprint(hasattr(builtins, 'MARK'), json.dumps([1]))")
    assert result.stdout.strip() == "False [1]"


def test_get_sandbox_is_shared_per_config():
    assert get_sandbox(CFG) is get_sandbox(SandboxConfig(**CFG.model_dump()))
    assert get_sandbox(CFG) is not get_sandbox(SandboxConfig(pool_size=0, uid_base=220000, uid_count=200))


# ---------------------------------------------------------------- warm pool


def test_warm_up_then_runs_work(make_sandbox):
    sb = make_sandbox(pool_size=2)
    sb.warm_up()
    assert len(sb._warm) == 2 and all(p.poll() is None for p in sb._warm)
    for i in range(4):
        result = sb.run(f"print({i})")
        assert result.ok and result.stdout == f"{i}\n", result.stderr
        sb.warm_up()  # the pool is topped up in the background; wait for it
        assert len(sb._warm) == 2


def test_warm_sandbox_killed_externally_is_replaced(make_sandbox):
    sb = make_sandbox(pool_size=2)
    sb.warm_up()
    victims = list(sb._warm)
    for proc in victims:
        os.killpg(proc.pid, signal.SIGKILL)
    for proc in victims:
        proc.wait(timeout=5)
    result = sb.run("print('still fine')")
    assert result.ok and result.stdout == "still fine\n", result.stderr
    assert not any(p in sb._warm for p in victims)
    sb.warm_up()
    assert len(sb._warm) == 2 and all(p.poll() is None for p in sb._warm)


def test_warm_sandbox_killed_just_before_use_is_retried(make_sandbox, monkeypatch):
    """A warm sandbox that dies between the liveness check and the payload write is replaced."""
    sb = make_sandbox(pool_size=1)
    sb.warm_up()
    original_take = sb._take
    calls = []

    def take_then_kill():
        proc = original_take()
        if not calls:
            os.killpg(proc.pid, signal.SIGKILL)  # not reaped: the sandbox reaps its own processes
            time.sleep(0.3)
        calls.append(proc)
        return proc

    monkeypatch.setattr(sb, "_take", take_then_kill)
    result = sb.run("print('retried')")
    assert result.ok and result.stdout == "retried\n"
    assert len(calls) == 2


def test_close_kills_the_pool(make_sandbox):
    sb = make_sandbox(pool_size=2)
    sb.warm_up()
    warm = list(sb._warm)
    sb.close()
    assert all(p.poll() is not None for p in warm)
    with pytest.raises(sandbox_mod.SandboxError, match="closed"):
        sb.run("print(1)")
    sb.close()  # twice is fine


def test_warm_sandbox_survives_exit_of_spawning_thread(make_sandbox):
    sb = make_sandbox(pool_size=1)

    def spawner():
        sb.warm_up()
        time.sleep(0.8)  # the thread ends while the main thread runs code in its sandbox

    thread = threading.Thread(target=spawner)
    thread.start()
    time.sleep(0.3)
    result = sb.run("import time\ntime.sleep(1.5)\nprint('done')", timeout_s=10)
    thread.join()
    assert result.ok and result.stdout == "done\n", result


# ---------------------------------------------------------------- no bubblewrap


def test_unavailable_without_bwrap(monkeypatch):
    monkeypatch.setattr(sandbox_mod.shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        Sandbox(SandboxConfig(pool_size=0))
    ok, why = sandbox_mod.isolation_status()
    assert not ok and "bwrap" in why


def test_unsandboxed_mode_runs_with_loud_warning(monkeypatch, caplog):
    monkeypatch.setattr(sandbox_mod.shutil, "which", lambda *args, **kwargs: None)
    with caplog.at_level(logging.WARNING, logger=sandbox_mod.__name__):
        sb = Sandbox(SandboxConfig(pool_size=1, allow_unsandboxed=True, uid_base=250000, uid_count=10))
    try:
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == sandbox_mod.__name__]
        assert warnings, caplog.text
        assert "SANDBOX DISABLED" in warnings[0].getMessage()
        assert not sb.isolated
        result = sb.run("import os, resource\nprint(input(), open('f.txt').read(), "
                        "resource.getrlimit(resource.RLIMIT_AS)[0] // 2**20)",
                        stdin="in", files={"f.txt": "file"}, memory_mb=200)
        assert result.ok, result.stderr
        assert result.stdout.strip() == "in file 200"
        timed = sb.run("import time\ntime.sleep(100)", timeout_s=1)
        assert timed.timed_out and timed.duration_s < 3
        if os.geteuid() == 0:
            uid = sb.run("import os\nprint(os.getuid())").stdout.strip()
            assert 250000 <= int(uid) < 250010
    finally:
        sb.close()
