"""Li et al.'s convexity map: |lambda_min / lambda_max| of the Hessian on a loss plane.

Li et al. (2018, "Visualizing the Loss Landscape of Neural Nets", Sec. 6): at every
point of a plane of filter-normalized random directions, the ratio of the Hessian's most
negative to its largest eigenvalue. Small values mean the surface is locally convex (the
negative curvature is small next to the positive one), so the convex-looking contours can
be trusted there. Left: the loss contours; right: the map, around the demo's full-batch
digits MLP. Writes figures/convexity_map.png.

Run it:

    python examples/convexity_map.py                     # about a minute on 2 CPU cores
    LANDSCAPE_QUICK=1 python examples/convexity_map.py   # seconds: short training, 3x3 grid

Your model: pass your ``nn.Module`` and data to ``compute_surface`` with ``convexity=True``
(``landscape surface --convexity`` on the command line); each grid point runs two Lanczos
solves, so keep the grid coarse (11x11 here) and the batch as large as memory allows.
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
from landscape.demo import DEMO_RECIPES, digits_data, digits_mlp, train_classifier

QUICK = os.environ.get("LANDSCAPE_QUICK") == "1"
FIGURES = os.environ.get(
    "LANDSCAPE_FIGURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "figures")
)
data = digits_data("train")
recipe = {**DEMO_RECIPES["large-batch"], **({"steps": 40} if QUICK else {})}  # full batch
model = train_classifier(digits_mlp(), data, progress=False, **recipe)
grid = np.linspace(-1, 1, 3 if QUICK else 11)
surface = compute_surface(model, data, random_directions(model, seed=0), grid, grid,
                          convexity=True, batch_size=2048, progress=False)  # fmt: skip

with landscape_style():
    fig = Figure(figsize=(7.5, 3.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    plot_contour(surface, "loss", left)
    plot_convexity(surface, right)
    print(save_figure(fig, os.path.join(FIGURES, "convexity_map.png")))
