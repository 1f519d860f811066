"""Curvature as Adam sees it: the adaptive edge of stability.

Full-batch Adam (beta1 = 0.9) on 500 digits with the mean squared error to one-hot targets
(a 64-20-20-10 tanh MLP, Cohen et al. 2022). A Tracker given the optimizer logs the
preconditioned sharpness lambda_1(P^-1 H), Adam's preconditioner P read from its state,
computed on the symmetric P^-1/2 H P^-1/2, beside the raw lambda_max of H. The first rises
to (2 + 2 beta1) / (lr (1 - beta1)) = 38 / lr within a few hundred steps and stays there,
for two learning rates, while the raw lambda_max sits far below 2 / lr: for Adam the raw
sharpness says nothing about stability. A StabilityGuard given to the Tracker reports when
the run reaches its edge. Writes figures/adaptive_edge_of_stability.png.

    python examples/adaptive_edge_of_stability.py    # LANDSCAPE_QUICK=1 for a short run
"""

import os
import warnings

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from landscape import StabilityGuard, Tracker, landscape_style, plot_tracking, save_figure
from landscape.demo import digits_data

QUICK = os.environ.get("LANDSCAPE_QUICK") == "1"
FIGURES = os.environ.get(
    "LANDSCAPE_FIGURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "figures")
)
NUM_STEPS, EVERY = (200, 25) if QUICK else (2000, 25)
x, labels = digits_data("train")
x, labels = x[:500], labels[:500]
onehot = nn.functional.one_hot(labels, 10).float()


def adam_run(lr: float):
    """Full-batch Adam from one initialisation, tracked with its optimizer and a guard."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 20), nn.Tanh(), nn.Linear(20, 20), nn.Tanh(),
                          nn.Linear(20, 10))  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    guard = StabilityGuard(fraction=0.9, patience=3)
    measures = ["loss", "preconditioned_sharpness", "lambda_max"]
    tracker = Tracker((x, onehot), loss="mse", every=EVERY, lr=lr, tol=1e-3, measures=measures,
                      optimizer=optimizer, guard=guard)  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(NUM_STEPS + 1):
            if step:  # step 0's preconditioner is Adam's first, sign-descent step: skip it
                tracker.log(model, step)
            optimizer.zero_grad()
            nn.functional.mse_loss(model(x), onehot).backward()
            optimizer.step()
    edge = [str(w.message).split(":")[0] for w in caught if "stayed above" in str(w.message)]
    return tracker.run, edge


runs = {lr: adam_run(lr) for lr in (0.005, 0.0025)}
for lr, (run, edge) in runs.items():
    ratio = (
        run.values["preconditioned_sharpness"] / run.values["preconditioned_sharpness_threshold"]
    )
    late = ratio[len(ratio) // 2 :]
    raw = run.values["lambda_max"] * lr / 2
    print(f"lr {lr}: lambda_1(P^-1 H) / (38/lr) first {ratio[0]:.3f}, second half median "
          f"{np.median(late):.3f} ({late.min():.3f} to {late.max():.3f}); raw lambda_max "
          f"{raw[-1]:.4f} of 2/lr at the end; {edge}")  # fmt: skip

with landscape_style():
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    pre_ax, raw_ax = fig.subplots(1, 2)
    for k, (lr, (run, _)) in enumerate(runs.items()):
        plot_tracking(run, "preconditioned_sharpness", pre_ax, color=f"C{k}")
        pre_ax.lines[-2].set_label(f"lr = {lr:g}")
        pre_ax.lines[-1].set_color(f"C{k}")  # its 38 / lr line
        pre_ax.lines[-1].set_label(f"38 / lr = {38 / lr:.0f}")
        plot_tracking(run, "lambda_max", raw_ax, color=f"C{k}")
        raw_ax.lines[-2].set_label(f"lr = {lr:g}")
        raw_ax.lines[-1].set_color(f"C{k}")  # its 2 / lr line
        raw_ax.lines[-1].set_label(f"2 / lr = {2 / lr:.0f}")
    pre_ax.set_title(r"$\lambda_1(P^{-1}H)$ settles at $38/\mathrm{lr}$")
    pre_ax.set_yscale("log")
    pre_ax.legend(fontsize="small", ncols=2)
    raw_ax.set_title(r"raw $\lambda_{\max}(H)$, far below $2/\mathrm{lr}$")
    raw_ax.set_yscale("log")
    raw_ax.legend(fontsize="small", ncols=2)
    print(save_figure(fig, os.path.join(FIGURES, "adaptive_edge_of_stability.png")))
