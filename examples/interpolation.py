"""The classic 1D interpolation plot between two minima (Goodfellow et al.; Keskar et al.).

Trains the digits MLP with small and with full batches from one initialisation, then
evaluates train and test loss on the line theta_small + t (theta_large - theta_small),
t from -0.5 to 1.5. Writes figures/interpolation.png.

    python examples/interpolation.py
"""

import os

import numpy as np
from matplotlib.figure import Figure

from landscape import (
    Directions,
    compute_surface,
    interpolation_direction,
    landscape_style,
    save_figure,
)
from landscape.demo import digits_data, train_demo_pair

FIGURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "figures")

models = train_demo_pair(progress=False)  # SGD batch 16 and full batch, one initialisation
small, large = models["small-batch"], models["large-batch"]
line = Directions(interpolation_direction(small, large), kind="interpolation")
t = np.linspace(-0.5, 1.5, 41)
curves = {
    split: compute_surface(small, digits_data(split), line, t, progress=False)
    for split in ("train", "test")
}

with landscape_style():
    fig = Figure(figsize=(4.5, 3.2), layout="constrained")
    ax = fig.add_subplot()
    for split, surface in curves.items():
        ax.semilogy(surface.x, surface["loss"], label=f"{split} loss")
    ax.axvline(0, color="grey", lw=0.5)
    ax.axvline(1, color="grey", lw=0.5)
    ax.set_xlabel("t  (0: small batch, 1: full batch)")
    ax.set_ylabel("loss")
    ax.legend()
    print(save_figure(fig, os.path.join(FIGURES, "interpolation.png")))
