"""Li et al.'s convexity map: |lambda_min / lambda_max| of the Hessian on a loss plane.

Small values mean the surface is locally convex (the negative curvature is small next to
the positive one). Writes figures/convexity_map.png: the loss contours and the map, side by
side, around the full-batch digits MLP.

    python examples/convexity_map.py
"""

import os

import numpy as np
from matplotlib.figure import Figure

from landscape import (
    compute_surface,
    landscape_style,
    plot_contour,
    plot_convexity,
    random_directions,
    save_figure,
)
from landscape.demo import digits_data, train_demo_pair

FIGURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "figures")
model = train_demo_pair(progress=False)["large-batch"]
grid = np.linspace(-1, 1, 11)
surface = compute_surface(model, digits_data("train"), random_directions(model, seed=0),
                          grid, grid, convexity=True, batch_size=2048, progress=False)  # fmt: skip

with landscape_style():
    fig = Figure(figsize=(7.5, 3.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    plot_contour(surface, "loss", left)
    plot_convexity(surface, right)
    print(save_figure(fig, os.path.join(FIGURES, "convexity_map.png")))
