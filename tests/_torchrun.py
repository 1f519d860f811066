"""Run a command under torchrun with 2 gloo ranks on CPU, over 127.0.0.1 only.

The launcher is forked from the tests' pre-imported interpreter (``_zygote``), which spares
it torch's import; the ranks are fresh interpreters, started by torchrun as always.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Callable
from pathlib import Path

from _shared import ROOT
from _zygote import Finished, shared_zygote

LAUNCHER = "from torch.distributed.run import main; main()"  # python -m torch.distributed.run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, nproc: int = 2, timeout: float = 120) -> Finished:
    """``torchrun --nproc-per-node NPROC ARGS`` (a script and its arguments, or ``-m
    module ...``), one thread a rank; the finished launcher (``returncode``, ``stdout``,
    ``stderr``)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT, MASTER_ADDR="127.0.0.1")
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    command = ["--nproc-per-node", str(nproc), "--master-addr", "127.0.0.1",
               "--master-port", str(free_port()), "--monitor-interval", "0.1", *args]  # fmt: skip
    return shared_zygote().run(code=LAUNCHER, args=tuple(command), cwd=os.getcwd(), env=env,
                               timeout=timeout)  # fmt: skip


def launch_once(tmp_path_factory, name: str, launch: Callable[[Path], Finished]) -> Path:
    """The folder where ``launch(folder)`` ran, once for the whole session: the first
    pytest-xdist worker to ask launches, under a file lock, and the others wait for it and
    read the same folder (each launch costs three interpreters and a process group). A
    failed launch fails every test that asks, with its output."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the session's folder, above each worker's
    out = shared / name
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "returncode").exists():
            out.mkdir(exist_ok=True)
            done = launch(out)
            (out / "stderr").write_text(done.stderr)
            (out / "returncode").write_text(str(done.returncode))
    assert (out / "returncode").read_text() == "0", (out / "stderr").read_text()[-3000:]
    return out
