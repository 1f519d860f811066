"""Did SAM help? Two trainings from one seed, compared measure by measure with error bars.

The digits MLP is trained twice from the same initialisation and the same minibatches:
once with Adam, once with SAM around Adam (Foret et al. 2021; the ten-line `sam_step`
below: an ascent step of radius rho along the normalized gradient, the gradient there, the
step taken from the original weights). `landscape.compare_checkpoints` then measures both
on the training data with the same seeds (the test gap, lambda_max, the Hessian trace and
avg_l2 with their standard errors, 1D lines along filter-normalized directions), and
`landscape.preconditioned_sharpness` measures each against its own Adam preconditioner.
`Comparison.differences` says which differences exceed twice their standard error: those
are the ones the two runs support. The same recipe answers "did weight decay help?"
(`weight_decay=` in one run) and "did a bigger batch hurt?" (`BATCH` in one run). Writes
figures/sam_comparison.png.

    python examples/sam_comparison.py          # LANDSCAPE_QUICK=1 for a few-second run
"""

import os

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

import landscape as ls
from landscape.demo import digits_data, digits_mlp
from landscape.objective import Objective

QUICK = os.environ.get("LANDSCAPE_QUICK") == "1"
FIGURES = os.environ.get(
    "LANDSCAPE_FIGURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "figures")
)
STEPS, BATCH, LR, RHO = (30 if QUICK else 1500), 32, 1e-3, 0.05
train, test = digits_data("train"), digits_data("test")


def sam_step(model: nn.Module, loss_fn, optimizer: torch.optim.Optimizer, rho: float) -> None:
    """One SAM step: the gradient at ``w + rho g / ||g||``, applied at ``w`` by ``optimizer``."""
    loss_fn().backward()
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
    moves = [rho * p.grad / (norm + 1e-12) for p in params]
    with torch.no_grad():
        for p, e in zip(params, moves, strict=True):
            p.add_(e)
    optimizer.zero_grad()
    loss_fn().backward()
    with torch.no_grad():
        for p, e in zip(params, moves, strict=True):
            p.sub_(e)
    optimizer.step()
    optimizer.zero_grad()


def fit(sam: bool) -> tuple[nn.Module, torch.optim.Optimizer]:
    """Adam (or SAM around it) from one initialisation over one sequence of minibatches."""
    model = digits_mlp(seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    order = torch.Generator().manual_seed(1)
    x, y = train
    for _ in range(STEPS):
        idx = torch.randint(0, len(x), (BATCH,), generator=order)

        def loss_fn(idx=idx):
            return nn.functional.cross_entropy(model(x[idx]), y[idx])

        if sam:
            sam_step(model, loss_fn, optimizer, RHO)
        else:
            loss_fn().backward()
            optimizer.step()
            optimizer.zero_grad()
    return model, optimizer


runs = {"adam": fit(sam=False), "sam": fit(sam=True)}
comparison = ls.compare_checkpoints(
    digits_mlp(),
    {label: model.state_dict() for label, (model, _) in runs.items()},
    train,
    test_data=test,
    measures=["lambda_max", "trace", "avg_l2"],
    line=np.linspace(-1, 1, 7 if QUICK else 31),
    num_directions=2 if QUICK else 5,
    num_probes=10 if QUICK else 99,
    num_samples=5 if QUICK else 100,
    progress=False,
)
preconditioned = {
    label: ls.preconditioned_sharpness(Objective(model, train), optimizer, tol=1e-4)
    for label, (model, optimizer) in runs.items()
}
rows = comparison.differences("adam", "sam")
rows.append({"quantity": "preconditioned_sharpness",
             **{k: p.value for k, p in preconditioned.items()},
             "difference": preconditioned["sam"].value - preconditioned["adam"].value,
             "stderr": 0.0, "exceeds": True})  # fmt: skip
print("| quantity | adam | sam | sam - adam | stderr | exceeds 2 stderr |")
print("|---|---|---|---|---|---|")
for row in rows:
    print(f"| {row['quantity']} | {row['adam']:.4g} | {row['sam']:.4g} | {row['difference']:+.3g} "
          f"| {row['stderr']:.2g} | {row['exceeds']} |")  # fmt: skip
print({k: f"{p.ratio:.3f} of 38/lr" for k, p in preconditioned.items()})

with ls.landscape_style():
    fig = Figure(figsize=(10, 3.2), layout="constrained")
    lines_ax, table_ax = fig.subplots(1, 2, width_ratios=[1.2, 1])
    curves = {
        label: (s.x, s["loss"].mean(axis=0), s["loss"].std(axis=0))
        for label, s in comparison.lines.items()
    }
    ls.plotting.plot_lines_compare(curves, lines_ax, x_label="filter-normalized coordinate",
                                   band="±1 standard deviation over the directions")  # fmt: skip
    lines_ax.set_title("training loss along random directions")
    drawn = ("gap_accuracy", "lambda_max", "trace", "avg_l2", "preconditioned_sharpness")
    shown = [r for r in rows if r["quantity"] in drawn]
    where = np.arange(len(shown))
    relative = [r["difference"] / abs(r["adam"]) for r in shown]
    errors = [2 * r["stderr"] / abs(r["adam"]) for r in shown]
    colors = ["C2" if r["exceeds"] else "0.6" for r in shown]  # None: no error model
    table_ax.barh(where, relative, xerr=errors, color=colors, capsize=3)
    table_ax.axvline(0, color="0.3", linewidth=0.8)
    table_ax.set_yticks(where, [r["quantity"] for r in shown])
    table_ax.invert_yaxis()
    table_ax.set_xlabel("(sam - adam) / |adam|, ±2 standard errors")
    table_ax.set_title("green: exceeds 2 standard errors; grey: does not, or unknown")
    print(ls.save_figure(fig, os.path.join(FIGURES, "sam_comparison.png")))
