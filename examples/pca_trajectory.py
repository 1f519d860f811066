"""A training trajectory drawn on the loss surface spanned by its own PCA directions.

Li et al. (2018, Sec. 7): random directions are nearly orthogonal to the
optimization path, so the path is shown in the plane of the top two principal components of
theta_t - theta_final, with the share of the variance each explains on its axis. Here: a
digits MLP trained full-batch, a snapshot after every 25 steps. Writes
figures/pca_trajectory.png.

Run it:

    python examples/pca_trajectory.py                     # about 20 s on 2 CPU cores
    LANDSCAPE_QUICK=1 python examples/pca_trajectory.py   # seconds: 5 snapshots, 9x9 grid

Your model: save ``{name: p.detach().clone()}`` of your model's named parameters at
checkpoints of your training loop (or load saved checkpoints), then call ``pca_directions``
and ``project_states`` on that list. ``examples/trajectory_plane.py`` does the same with
``trajectory_plane``, which also shows what the projection hides.
"""

import os

import numpy as np
from matplotlib.figure import Figure

from landscape import (
    compute_surface,
    landscape_style,
    pca_directions,
    plot_contour,
    project_states,
    save_figure,
)
from landscape.demo import digits_data, digits_mlp, train_classifier

QUICK = os.environ.get("LANDSCAPE_QUICK") == "1"
FIGURES = os.environ.get(
    "LANDSCAPE_FIGURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "figures")
)
data = digits_data("train")

model, trajectory = digits_mlp(seed=0), []
for _ in range(5 if QUICK else 12):  # short legs of full-batch training, one snapshot after each
    model = train_classifier(model, data, lr=0.1, steps=25, progress=False)
    trajectory.append({n: p.detach().clone() for n, p in model.named_parameters()})

directions = pca_directions(trajectory)
path = project_states(directions, trajectory, model)
span = np.abs(path).max() * 1.3
grid = np.linspace(-span, span, 9 if QUICK else 25)
surface = compute_surface(model, data, directions, grid, grid, progress=False)

with landscape_style():
    fig = Figure(figsize=(4.2, 3.5), layout="constrained")
    ax = plot_contour(surface, "loss", fig.add_subplot(), log=True)
    ax.plot(path[:, 0], path[:, 1], "o-", color="tab:red", ms=3, label="trajectory")
    explained = directions.settings["explained_variance"]
    ax.set_xlabel(f"PC 1 ({explained[0]:.0%} of variance)")
    ax.set_ylabel(f"PC 2 ({explained[1]:.0%} of variance)")
    ax.legend(loc="upper right")
    print(save_figure(fig, os.path.join(FIGURES, "pca_trajectory.png")))
