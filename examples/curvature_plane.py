"""A saddle that random planes hide (Boettcher & Wheeler 2022).

Early in training the Hessian has negative eigenvalues, yet a plane along random directions
curves upwards: along a random direction the curvature is about tr(H)/N, whatever the
extreme eigenvalues. Left: the loss over a random plane. Right: over the plane of the
eigenvectors of lambda_max and lambda_min, where the saddle shows. The printed numbers put
the chance curvature beside the true extreme eigenvalues.
Writes figures/curvature_plane.png.

Run it:

    python examples/curvature_plane.py                     # about a minute on 2 CPU cores
    LANDSCAPE_QUICK=1 python examples/curvature_plane.py   # seconds: 256 examples, 11x11 grids

Your model: ``Objective(model, data)`` with your ``nn.Module`` and data;
``curvature_directions(objective)`` gives the eigenvector plane and ``chance_curvature`` the
curvature a random direction would show, ``tr(H)/N``, to put beside the extreme eigenvalues.
Scale the grid by the eigenvalues, as here, so that both planes show the same loss range.
"""

import os

import numpy as np
from matplotlib.figure import Figure

from landscape import (
    Directions,
    Objective,
    compute_surface,
    landscape_style,
    plot_contour,
    random_directions,
    save_figure,
)
from landscape.demo import digits_data, digits_mlp, train_classifier
from landscape.directions import chance_curvature, curvature_directions

QUICK = os.environ.get("LANDSCAPE_QUICK") == "1"
FIGURES = os.environ.get(
    "LANDSCAPE_FIGURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "figures")
)
X, y = digits_data("train")
data = (X[:256], y[:256]) if QUICK else (X, y)

# a model early in training, where the Hessian is indefinite
model = train_classifier(digits_mlp(seed=0), data, lr=0.1, steps=20, progress=False)
objective = Objective(model, data)

# a random plane with unit-norm directions: coordinates are distances, as in the other plane
raw = random_directions(model, norm="none", ignore="none", seed=0)
unit = [{n: t / np.sqrt(sum(float((v**2).sum()) for v in d.values())) for n, t in d.items()}
        for d in (raw.x, raw.y)]  # fmt: skip
random_plane = Directions(unit[0], unit[1], kind="random", settings={"norm": "unit"})
chance = chance_curvature(objective, random_plane, num_probes=30 if QUICK else 99)
print(f"tr(H)/N = {chance.expected:.4g} ± {chance.expected_stderr:.2g}; along the random "
      f"directions {chance.along[0]:.4g}, {chance.along[1]:.4g}; lambda_max "
      f"{chance.lambda_max:.4g}, lambda_min {chance.lambda_min:.4g}")  # fmt: skip

# the same grid on both planes: x where lambda_max lifts the loss by about 2, y where
# lambda_min would lower it by about 1
curvature = curvature_directions(objective)
n = 11 if QUICK else 31
xs = np.linspace(-1, 1, n) * 2 / np.sqrt(abs(chance.lambda_max))
ys = np.linspace(-1, 1, n) * np.sqrt(2 / abs(chance.lambda_min))
random_surface = compute_surface(objective, random_plane, xs, ys, progress=False)
curvature_surface = compute_surface(objective, curvature, xs, ys, progress=False)

with landscape_style():
    fig = Figure(figsize=(8, 3.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    plot_contour(random_surface, "loss", left)
    left.set_title("random plane")
    plot_contour(curvature_surface, "loss", right)
    right.set_title(r"$\lambda_{\max}$ / $\lambda_{\min}$ eigenvector plane")
    print(save_figure(fig, os.path.join(FIGURES, "curvature_plane.png")))
