"""Runs inside the sandbox, before the untrusted code (stdlib only, no deepcoder imports).

It is started ahead of time so a warm sandbox is ready to take code. It reads one
length-prefixed marshal payload from fd 0, writes the given files into the work dir, makes the
given stdin the new fd 0, sets the resource limits, and runs ``main.py`` as ``__main__``.
The limits are set here, after the interpreter has started, so that they bind only the user's
code and every process it creates.

It imports only what the interpreter has loaded anyway (marshal is built in; traceback only on
an error) and runs main.py itself rather than through runpy, whose run_path imports pkgutil and
importlib machinery: together json, base64 and runpy cost ~15 ms of CPU per sandbox, more than
the interpreter's own start-up.
"""

import marshal
import os
import resource
import sys


def _read_exact(fd, n):
    chunks = []
    while n > 0:
        chunk = os.read(fd, n)
        if not chunk:
            raise EOFError("payload ended early")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _set_limits(limits):
    soft_hard = lambda v: (v, v)  # noqa: E731
    resource.setrlimit(resource.RLIMIT_CORE, soft_hard(0))
    resource.setrlimit(resource.RLIMIT_CPU, soft_hard(limits["cpu_s"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, soft_hard(limits["file_bytes"]))
    resource.setrlimit(resource.RLIMIT_NOFILE, soft_hard(limits["open_files"]))
    resource.setrlimit(resource.RLIMIT_AS, soft_hard(limits["memory_bytes"]))
    if limits.get("processes"):
        resource.setrlimit(resource.RLIMIT_NPROC, soft_hard(limits["processes"]))


def _run_main():
    """What ``python main.py`` does: compile the file (as bytes, so a coding cookie is honoured)
    and run it in a fresh ``__main__`` module, so pickle and friends find its classes."""
    with open("main.py", "rb") as handle:
        code = compile(handle.read(), "main.py", "exec")
    module = type(sys)("__main__")
    module.__dict__.update(__file__="main.py", __cached__=None, __loader__=None, __package__=None, __spec__=None)
    sys.modules["__main__"] = module
    exec(code, module.__dict__)


def main():
    size = int.from_bytes(_read_exact(0, 8), "big")
    payload = marshal.loads(_read_exact(0, size))
    for name, data in payload["files"].items():
        directory = os.path.dirname(name)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with open(name, "wb") as handle:
            handle.write(data)
    with open(".stdin", "wb") as handle:
        handle.write(payload["stdin"].encode("utf-8"))
    stdin_fd = os.open(".stdin", os.O_RDONLY)
    os.unlink(".stdin")
    os.dup2(stdin_fd, 0)
    os.close(stdin_fd)
    sys.stdin = open(0, "r", encoding="utf-8", errors="replace", closefd=False)
    _set_limits(payload["limits"])
    del payload
    sys.argv = ["main.py"]
    sys.path.insert(0, os.getcwd())
    try:
        _run_main()
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - report like the interpreter would
        import traceback

        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != "main.py":
            tb = tb.tb_next
        try:
            sys.stdout.flush()  # a pipe, so block-buffered: what was printed before the error must not be lost
        except Exception:  # noqa: BLE001
            pass
        traceback.print_exception(type(exc), exc, tb)
        sys.stderr.flush()
        os._exit(1)


main()
