"""Curvature during training: progressive sharpening and the edge of stability.

Full-batch gradient descent on 600 digits with the mean squared error to one-hot targets
(a tanh MLP, Cohen et al. 2021): the top Hessian eigenvalue rises until it reaches 2 / lr,
the largest curvature gradient descent is stable at, and then hovers there while the loss
keeps falling, non-monotonically. Left: the loss; middle: lambda_max against 2 / lr for
two learning rates, logged with a Tracker; right: the same network with cross-entropy and a
small learning rate, where the sharpness falls as the loss goes to zero. Writes
figures/edge_of_stability.png.

    python examples/edge_of_stability.py          # LANDSCAPE_QUICK=1 for a few-second run
"""

import os
import tempfile

import torch
from matplotlib.figure import Figure
from torch import nn

from landscape import Tracker, landscape_style, load_tracking, plot_tracking, save_figure
from landscape.demo import digits_data

QUICK = os.environ.get("LANDSCAPE_QUICK") == "1"
FIGURES = os.environ.get(
    "LANDSCAPE_FIGURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "figures")
)
NUM_EXAMPLES = 600
x, labels = digits_data("train", dtype=torch.float64)
x, labels = x[:NUM_EXAMPLES], labels[:NUM_EXAMPLES]
onehot = nn.functional.one_hot(labels, 10).to(torch.float64)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                         nn.Linear(64, 10)).double()  # fmt: skip


def gradient_descent(loss: str, lr: float, num_steps: int, every: int, path: str):
    """Full-batch gradient descent from one initialisation, tracked every ``every`` steps."""
    model = mlp()
    targets = onehot if loss == "mse" else labels
    loss_fn = nn.functional.mse_loss if loss == "mse" else nn.functional.cross_entropy
    tracker = Tracker((x, targets), path=path, every=every, measures=["loss", "lambda_max"],
                      loss=loss, lr=lr, tol=1e-6)  # fmt: skip
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for step in range(num_steps + 1):
        tracker.log(model, step)
        optimizer.zero_grad()
        loss_fn(model(x), targets).backward()
        optimizer.step()
    return load_tracking(path)


num_steps = 60 if QUICK else 4000
every = 10 if QUICK else 20
runs = {}
with tempfile.TemporaryDirectory() as tmp:
    for lr in (0.5, 1.0):
        runs[lr] = gradient_descent("mse", lr, num_steps, every, f"{tmp}/mse-{lr}.h5")
    entropy = gradient_descent("cross_entropy", 0.5, num_steps, every, f"{tmp}/ce.h5")

for lr, run in runs.items():
    top = run.values["lambda_max"]
    late = top[len(top) // 2 :]
    print(f"mse, lr {lr}: 2/lr = {2 / lr:.3g}; lambda_max at step 0 {top[0]:.3g}, max "
          f"{top.max():.3g}, second half mean {late.mean():.3g} (min {late.min():.3g}, "
          f"max {late.max():.3g}); final loss {run.values['loss'][-1]:.3g}")  # fmt: skip
top = entropy.values["lambda_max"]
print(
    f"cross-entropy, lr 0.5: lambda_max peak {top.max():.3g} at step "
    f"{entropy.steps[top.argmax()]}, final {top[-1]:.3g}; loss {entropy.values['loss'][-1]:.3g}"
)

with landscape_style():
    fig = Figure(figsize=(11, 3.4), layout="constrained")
    loss_ax, top_ax, ce_ax = fig.subplots(1, 3)
    for k, (lr, run) in enumerate(runs.items()):
        color = f"C{k}"
        loss_ax.plot(run.steps, run.values["loss"], color=color, label=f"lr = {lr:g}")
        plot_tracking(run, "lambda_max", top_ax, color=color)
        top_ax.lines[-1].set_color(color)  # the 2 / lr line in the run's colour
        top_ax.lines[-2].set_label(f"lr = {lr:g}")
    loss_ax.set(yscale="log", xlabel="step", ylabel="training loss (MSE)",
                title="gradient descent, MSE")  # fmt: skip
    loss_ax.legend()
    top_ax.set_title(r"$\lambda_{\max}$ rises to $2/\mathrm{lr}$ and stays")
    top_ax.legend(fontsize="small")
    plot_tracking(entropy, "lambda_max", ce_ax, color="C2")
    ce_ax.set_title("cross-entropy, lr = 0.5")
    twin = ce_ax.twinx()
    twin.plot(entropy.steps, entropy.values["loss"], color="0.4", linestyle=":", label="loss")
    twin.set(yscale="log", ylabel="training loss")
    ce_ax.legend(handles=[*ce_ax.lines, *twin.lines])
    print(save_figure(fig, os.path.join(FIGURES, "edge_of_stability.png")))
