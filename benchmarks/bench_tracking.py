"""The cost of a ``Tracker.log`` in training steps of the digits MLP, and the error it states.

The model is the demo's digits MLP (float32, 8970 weights) on the 1442 training digits; a
training step is one step of the demo's small-batch recipe (16 examples, SGD with momentum
0.9, lr 0.05), the loop a Tracker is meant to sit in. After one epoch of warm-up, each
round takes, for every configuration in turn (interleaved, so a change of the machine's
load falls on all alike), one training step and one log (``every=1``), both timed in CPU
seconds; the cost of a configuration is its mean log over the rounds (so a trace every
10th log is paid once in 10) divided by the median training step of all rounds of all
configurations. Each configuration gets its own copy of the warmed-up model and the same
training steps. ``HVPs / log``: Hessian-vector products per log (float32 and float64).

Errors, at the last log's weights: ``lambda_max`` against a float64 Lanczos run to
``tol=1e-10`` (relative), the residual the Tracker stored with it (``lambda_max_residual``,
relative to the value: a bound on the error), and the trace's stated standard error
relative to its value.

Run: ``PYTHONPATH=. python benchmarks/bench_tracking.py [--threads N] [--rounds N] [--out F]``;
prints a Markdown table and writes it to ``benchmarks/results_tracking.md`` (or ``F``).
Against an older checkout (``PYTHONPATH=old ... --out F``) only the settings it knows run.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from landscape import Tracker, __version__
from landscape.demo import digits_data, digits_mlp
from landscape.hessian import HessianOperator
from landscape.linalg import lanczos_eigenpairs
from landscape.objective import Objective

#: (label, Tracker keywords); "trace_every" is left out where the Tracker lacks it, rows
#: with "verify_every" or "write_every" too; "file" logs into an HDF5 file (``path``).
CONFIGS = [
    ("default measures (loss, lambda_max)", {}),
    ("defaults, logged into a file", {"file": True}),
    ("defaults, into a file 10 logs at a time", {"file": True, "write_every": 10}),
    ("loss, lambda_max, cold Lanczos", {"warm_start": False}),
    ("loss, lambda_max, tol=1e-3", {"tol": 1e-3}),
    ("loss, lambda_max, float64 check every log", {"verify_every": 1}),
    ("loss, lambda_max, tol=1e-4, float64 every log (before)", {"tol": 1e-4, "verify_every": 1}),
    ("lambda_max + trace, defaults", {"measures": ["lambda_max", "trace"]}),
    (
        "lambda_max + trace, 30 probes every log (0.2)",
        {"measures": ["lambda_max", "trace"], "num_probes": 30, "trace_every": 1},
    ),
]


class Counter:
    """Counts the Hessian-vector products while on (wraps ``HessianOperator._hvp``)."""

    def __init__(self):
        self.count, self.on, plain = 0, False, HessianOperator._hvp

        def counted(op, vector):
            self.count += self.on
            return plain(op, vector)

        HessianOperator._hvp = counted


def train_step(model, optimizer, x, y, generator):
    idx = torch.randint(0, len(x), (16,), generator=generator)
    optimizer.zero_grad()
    F.cross_entropy(model(x[idx]), y[idx]).backward()
    optimizer.step()


class Config:
    """One configuration's model, optimizer, training draws, Tracker and timings."""

    def __init__(self, start, x, y, options, folder):
        self.model, self.x, self.y = copy.deepcopy(start), x, y
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.05, momentum=0.9)
        self.generator = torch.Generator().manual_seed(1)
        options = dict(options)
        if options.pop("file", False):
            options["path"] = os.path.join(folder, f"run{id(self)}.h5")
        self.tracker = Tracker((x, y), **options)
        self.tracker.log(self.model, 0)  # the first log (cold, data moved) is not counted
        self.logs, self.steps, self.hvps = [], [], []

    def round(self, step, counter):
        t = time.process_time()
        train_step(self.model, self.optimizer, self.x, self.y, self.generator)
        self.steps.append(time.process_time() - t)
        counter.count, counter.on = 0, True
        t = time.process_time()
        self.tracker.log(self.model, step)
        self.logs.append(time.process_time() - t)
        counter.on = False
        self.hvps.append(counter.count)


def lambda_max_error(model, x, y, logged):
    op = HessianOperator(Objective(model, (x, y)), dtype=torch.float64)
    exact = lanczos_eigenpairs(op, 1, tol=1e-10, max_matvecs=500).values[0]
    return abs(logged - exact) / abs(exact)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results_tracking.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, y = digits_data("train")
    start = digits_mlp()
    optimizer = torch.optim.SGD(start.parameters(), lr=0.05, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    for _ in range(len(x) // 16):  # one epoch of warm-up
        train_step(start, optimizer, x, y, generator)
    known = inspect.signature(Tracker).parameters
    counter, folder = Counter(), tempfile.mkdtemp()
    found = []
    for label, options in CONFIGS:
        if "trace_every" not in known:
            if "trace_every" not in options and "trace" in options.get("measures", ()):
                continue  # an older Tracker traces at every log: that is the 0.2 row
            options = {k: v for k, v in options.items() if k != "trace_every"}
        if "verify_every" not in known or "write_every" not in known:
            if "verify_every" in options or "write_every" in options:
                continue  # an older Tracker checks in float64 and writes at every log
        found.append((label, Config(start, x, y, options, folder)))
    for step in range(1, args.rounds + 1):  # interleaved: every configuration each round
        for _, config in found:
            config.round(step, counter)
    # one training step for every row: the median over all rounds of all configurations
    step = float(np.median(np.concatenate([c.steps for _, c in found])))
    rows = []
    for label, config in found:
        run, logs = config.tracker.run, np.array(config.logs)
        value = run.values["lambda_max"][-1]
        error = lambda_max_error(config.model, x, y, value)
        bound = run.values.get("lambda_max_residual", np.full(1, np.nan))[-1] / abs(value)
        trace = "-"
        if "trace" in run.values:
            done = np.isfinite(run.values["trace"])
            relative = run.stderr["trace"][done] / np.abs(run.values["trace"][done])
            trace = f"{np.median(relative):.1%}"
        rows.append(
            f"| {label} | {logs.mean() * 1e3:.1f} | **{logs.mean() / step:.0f}** | "
            f"{np.median(logs) / step:.0f} | {logs.max() / step:.0f} | "
            f"{np.mean(config.hvps):.1f} | {error:.1e} | {bound:.1e} | {trace} |"
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    table = "\n".join(
        [
            f"landscape {__version__}, torch {torch.__version__}, "
            f"{platform.processor() or platform.machine()}, {args.threads} thread(s), "
            f"{args.rounds} interleaved rounds after one log at step 0; CPU time; load "
            f"average {load:.1f} on {os.cpu_count()} cores at the end. Training step "
            f"(median of all rounds): {step * 1e3:.3f} ms.",
            "",
            "| configuration | log ms (mean) | **mean log / step** | median log / step | "
            "slowest log / step | HVPs / log | lambda_max rel. error | stored residual / "
            "value | trace stderr / value |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(table)
    args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
