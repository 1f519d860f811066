"""Barriers modulo permutation symmetry: Git Re-Basin and REPAIR on two digits MLPs.

Two digits MLPs (64-128-128-10) trained from different seeds are separated by a barrier
along the straight line, mostly because their hidden units are in a different order.
Weight matching (Ainsworth et al. 2023) permutes the second into the first one's frame
without changing its function; REPAIR (Jordan et al. 2023) then rescales the units of every
interpolated network to the interpolated statistics of the ends. Left: the loss along the
line before alignment, after it, and after REPAIR. Right: the loss of a uniform average of
the two (``landscape.merge``, which measures it) before and after alignment, beside the
ends; the aligned merge is saved as a checkpoint and loaded back. Writes
figures/alignment.png.

Run it:

    python examples/alignment.py                     # under a minute on 2 CPU cores
    LANDSCAPE_QUICK=1 python examples/alignment.py   # seconds: shorter training, 7 points

Your model: ``landscape.align(model_a, model_b)`` for any stack of Linear, Conv, norm and
residual layers (the permutations are derived from the ``torch.fx`` graph);
``connect_checkpoints(objective, a, b, align="weights", repair="repair")`` for the barriers
(``repair="reset_bn"`` for a BatchNorm network).
"""

import os
import tempfile

import torch
from matplotlib.figure import Figure
from torch import nn

import landscape as ls
from landscape.demo import digits_data, train_classifier
from landscape.paths import connect_checkpoints

QUICK = os.environ.get("LANDSCAPE_QUICK") == "1"
FIGURES = os.environ.get(
    "LANDSCAPE_FIGURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "figures")
)
data = digits_data("all")


def mlp(seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                             nn.Linear(128, 10))  # fmt: skip


a, b = (train_classifier(mlp(s), data, lr=0.01, optimizer="adam", batch_size=128,
                         steps=120 if QUICK else 600, seed=s, progress=False)
        for s in (0, 1))  # fmt: skip
objective = ls.Objective(a, data)
points = 7 if QUICK else 21

plain = connect_checkpoints(objective, a, b, curve="line", t=points, align="weights")
repaired = connect_checkpoints(
    objective, a, b, curve="line", t=points, align="weights", repair="repair"
)
lines = {
    "straight line": plain.unaligned,
    "after weight matching": plain.line,
    "after matching and REPAIR": repaired.line,
}
for label, path in lines.items():
    print(f"barrier {label}: {path.barrier:.4f}")

soup = ls.merge([a, b], data=objective)  # the average, its loss beside the ends
aligned_soup = ls.merge([a, b], align="weights", data=objective)
with tempfile.TemporaryDirectory() as tmp:  # a checkpoint file, loaded back
    reloaded = ls.load_checkpoint(mlp(0), aligned_soup.save(os.path.join(tmp, "merged.pt")))
assert objective(reloaded.state_dict())["loss"] == aligned_soup.loss
merged = {"merge": soup.loss, "aligned merge": aligned_soup.loss}
ends = tuple(soup.losses)
print(f"loss of the ends {ends[0]:.4f}, {ends[1]:.4f}; " + ", ".join(
    f"{k} {v:.4f}" for k, v in merged.items()))  # fmt: skip

with ls.landscape_style():
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    for label, path in lines.items():
        left.plot(path.t, path.loss, marker="o", ms=3, label=f"{label} ({path.barrier:.3g})")
    left.set(xlabel="t", ylabel="loss", yscale="log", title="loss from a to b (barrier)")
    left.legend(fontsize=7)
    names = ["a", "b", *merged]
    right.bar(names, [*ends, *merged.values()], color=["C0", "C0", "C3", "C2"])
    right.set(ylabel="loss", yscale="log", title="uniform average of a and b")
    print(ls.save_figure(fig, os.path.join(FIGURES, "alignment.png")))
