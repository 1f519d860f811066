"""Run a command under torchrun with 2 gloo ranks on CPU, over 127.0.0.1 only."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from _shared import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, nproc: int = 2, timeout: float = 120) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node NPROC ARGS`` (a script and its arguments, or ``-m
    module ...``), one thread a rank; the completed process, its output captured."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT, MASTER_ADDR="127.0.0.1")
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
               "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
               "--monitor-interval", "0.1", *args]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
