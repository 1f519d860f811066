"""Run scripts as if in a fresh interpreter, without paying its imports each time.

The examples and the README blocks are each run "alone", as a user runs them. Started one
by one, each interpreter spends about 3 s of CPU importing torch, scipy, matplotlib and the
library before its first line, for about 40 scripts. A :class:`Zygote` is one interpreter
that imports those once and then forks a child per script. The child starts from the
imported modules only: it gets the script's environment, working directory, ``sys.argv``,
``sys.path[0]`` and a fresh ``__main__`` namespace, so a missing import in a script still
fails. The server never runs a torch operation, so no thread pool exists when it forks.

Run as a script, this file is the server: it reads one JSON request a line and answers the
child's pid, then its exit status, a line each.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

PRELOAD = (
    "numpy", "torch", "scipy.linalg", "scipy.optimize", "scipy.sparse.linalg", "h5py", "tqdm",
    "matplotlib.figure", "matplotlib.backends.backend_agg", "matplotlib.pyplot",
    "sklearn.datasets", "landscape", "landscape.demo", "landscape.plotting",
)  # fmt: skip


@dataclass
class Finished:
    """What ``subprocess.run(..., capture_output=True, text=True)`` would give."""

    returncode: int
    stdout: str
    stderr: str


class Zygote:
    """A server that forks a child per script; ``run`` blocks until the child ends.

    Example (not run: it starts an interpreter)::

        with Zygote(os.environ) as zygote:
            done = zygote.run(code="print(1)", cwd="/tmp", env=dict(os.environ), timeout=60)
    """

    def __init__(self, env: dict[str, str]):
        self._outputs = tempfile.mkdtemp(prefix="zygote-")  # the children's stdout and stderr
        self._server = subprocess.Popen(
            [sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env={**env, "MPLBACKEND": "Agg"}, text=True, bufsize=1,
        )  # fmt: skip

    def __enter__(self) -> Zygote:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._server.poll() is None:
            self._server.stdin.close()
            self._server.wait(timeout=30)
        shutil.rmtree(self._outputs, ignore_errors=True)

    def run(self, *, timeout: float, **script) -> Finished:
        """Run a script (the keywords of :meth:`start`) and wait for it, at most ``timeout``
        seconds (then it is killed and ``subprocess.TimeoutExpired`` raised)."""
        return self.start(**script).wait(timeout)

    def start(
        self, *, cwd: str, env: dict[str, str], path: str | None = None,
        code: str | None = None, args: tuple[str, ...] = (),
    ) -> Child:  # fmt: skip
        """Start the script at ``path`` with ``args``, or the source ``code`` as ``python -c``
        would, in ``cwd`` with the environment ``env``. One child at a time: wait for it
        before the next start."""
        out, err = os.path.join(self._outputs, "out"), os.path.join(self._outputs, "err")
        request = {"path": path, "code": code, "args": list(args), "cwd": cwd, "env": env,
                   "out": out, "err": err}  # fmt: skip
        self._server.stdin.write(json.dumps(request) + "\n")
        return Child(self, int(self._line(timeout=60)), path or "-c", (out, err))

    def _line(self, timeout: float) -> str:
        ready, _, _ = select.select([self._server.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError
        line = self._server.stdout.readline()
        if not line:
            raise RuntimeError(f"the zygote server died (exit {self._server.wait()})")
        return line


@dataclass
class Child:
    """A script started by :meth:`Zygote.start`: its ``pid``, and :meth:`wait` for its end."""

    zygote: Zygote
    pid: int
    name: str
    outputs: tuple[str, str]

    def wait(self, timeout: float) -> Finished:
        """The finished script; past ``timeout`` seconds it is killed and
        ``subprocess.TimeoutExpired`` raised."""
        try:
            status = int(self.zygote._line(timeout=timeout))
        except TimeoutError:
            os.kill(self.pid, signal.SIGKILL)
            self.zygote._line(timeout=60)
            raise subprocess.TimeoutExpired(self.name, timeout) from None
        texts = []
        for name in self.outputs:
            with open(name, encoding="utf-8", errors="replace") as f:
                texts.append(f.read())
            os.remove(name)
        return Finished(status, *texts)


_SHARED: list[Zygote] = []


def shared_zygote() -> Zygote:
    """This process's zygote, started at the first call with this process's environment
    (and the repository on ``PYTHONPATH``), closed when the process exits."""
    if not _SHARED:
        import atexit

        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        _SHARED.append(Zygote(dict(os.environ, PYTHONPATH=root)))
        atexit.register(_SHARED[0].close)
    return _SHARED[0]


def _child(request: dict) -> None:
    """In the forked child: become the script's interpreter, run it, exit with its status."""
    import atexit
    import runpy
    import traceback

    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    stdin = os.open(os.devnull, os.O_RDONLY)
    os.dup2(stdin, 0)
    for fd, name in ((1, request["out"]), (2, request["err"])):
        os.dup2(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the child's whole life
    sys.stdout = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115
    import torch

    threads = os.environ.get("OMP_NUM_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    status = 0
    try:
        if request["path"]:
            sys.argv = [request["path"], *request["args"]]
            sys.path[0] = os.path.dirname(os.path.abspath(request["path"]))
            runpy.run_path(request["path"], run_name="__main__")
        else:
            sys.argv = ["-c", *request["args"]]
            sys.path[0] = ""
            module = type(sys)("__main__")
            sys.modules["__main__"] = module
            exec(compile(request["code"], "<string>", "exec"), module.__dict__)
    except SystemExit as stop:
        if isinstance(stop.code, int) or stop.code is None:
            status = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
            status = 1
    except BaseException:  # noqa: BLE001 - report it as the interpreter would
        traceback.print_exc()
        status = 1
    try:
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def _serve() -> None:
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # an extra that is not installed: its scripts skip or fail alone
            pass
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            sys.stdin.close()
            _child(request)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)


if __name__ == "__main__":
    sys.path.pop(0)  # this file's folder: the scripts' imports resolve as for a user
    _serve()
