"""Does minibatch SGD train at the edge of stochastic stability on the digits?

Andreyev & Beneventano (2024) find that with minibatch SGD the *batch sharpness*
``E_B[g_B^T H_B g_B / ||g_B||^2]`` settles at ``2 / lr`` while the full-batch ``lambda_max``
stays below it. This script trains issue 22's set-up, a 64-20-20-10 tanh MLP with MSE
(``F.mse_loss``, the mean over the 10 outputs) on 500 scikit-learn digits by SGD with
batches of 8 drawn with replacement, at several learning rates and seeds, and measures
both at eight logs over the second half of training: batch sharpness over one shuffled
epoch of batches of 8 (``landscape.optim.batch_sharpness``: the mean of the ratios, and the
ratio of the means beside it) and ``lambda_max`` of the full-batch loss
(``hessian_eigenpairs``, ``tol=1e-3``). A run whose weights go non-finite is reported as
diverged. The table gives the medians over the logs, as fractions of ``2 / lr``.

Run: ``PYTHONPATH=. python benchmarks/bench_edge_of_stochastic_stability.py [--lrs 1 2 3]
[--steps 12000] [--seeds 0 1] [--out F]``; prints a Markdown table and writes it to
``benchmarks/results_eoss.md`` (or ``F``). One thread; about 1 ms a step on a 2-core VM.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from landscape import __version__
from landscape.hessian import hessian_eigenpairs
from landscape.objective import Objective
from landscape.optim import batch_sharpness

BATCH, EXAMPLES, LOGS = 8, 500, 8


def run(lr: float, steps: int, seed: int) -> dict[str, float] | None:
    """Medians of batch sharpness (both definitions) and lambda_max as fractions of
    ``2 / lr``, and the last full-batch loss; None when training diverged."""
    digits = load_digits()
    x = torch.tensor(digits.data[:EXAMPLES] / 16.0, dtype=torch.float32)
    y = nn.functional.one_hot(torch.tensor(digits.target[:EXAMPLES]), 10).float()
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(64, 20), nn.Tanh(), nn.Linear(20, 20), nn.Tanh(), nn.Linear(20, 10)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    draws = torch.Generator().manual_seed(seed + 1000)
    logs = set(np.linspace(steps // 2, steps, LOGS).astype(int).tolist())
    rows = []
    for step in range(steps + 1):
        if step in logs:
            if not all(torch.isfinite(p).all() for p in model.parameters()):
                return None
            order = torch.randperm(EXAMPLES, generator=draws)
            epoch = [(x[order[i : i + BATCH]], y[order[i : i + BATCH]])
                     for i in range(0, EXAMPLES - BATCH + 1, BATCH)]  # fmt: skip
            found = batch_sharpness(Objective(model, epoch, loss="mse"), lr=lr)
            top = hessian_eigenpairs(
                Objective(model, (x, y), loss="mse"), k=1, tol=1e-3, progress=False
            )
            rows.append((found.value, found.ratio_of_expectations, top.eigenvalues[0]))
        idx = torch.randint(0, EXAMPLES, (BATCH,), generator=draws)
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x[idx]), y[idx]).backward()
        optimizer.step()
    medians = np.median(np.array(rows), axis=0) * lr / 2
    with torch.no_grad():
        loss = float(nn.functional.mse_loss(model(x), y))
    return {"mean_of_ratios": medians[0], "ratio_of_means": medians[1],
            "lambda_max": medians[2], "loss": loss}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lrs", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    parser.add_argument("--steps", type=int, nargs="+", default=[12000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", default=str(Path(__file__).with_name("results_eoss.md")))
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"landscape {__version__}, 1 thread. Medians over {LOGS} logs of the second half, "
        "as fractions of 2/lr.",
        "",
        "| lr | steps | seed | batch sharpness (mean of ratios) | (ratio of means) | "
        "lambda_max | final loss |",
        "|---|---|---|---|---|---|---|",
    ]
    for lr in args.lrs:
        for steps in args.steps:
            for seed in args.seeds:
                got = run(lr, steps, seed)
                if got is None:
                    lines.append(f"| {lr:g} | {steps} | {seed} | diverged | | | |")
                else:
                    lines.append(
                        f"| {lr:g} | {steps} | {seed} | {got['mean_of_ratios']:.2f} | "
                        f"{got['ratio_of_means']:.2f} | {got['lambda_max']:.2f} | "
                        f"{got['loss']:.2g} |"
                    )
                print(lines[-1], flush=True)
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
