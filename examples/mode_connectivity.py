"""Two minima joined by a low-loss curve (Garipov et al. 2018), and their model soup.

Two digits MLPs trained from different seeds are separated by a barrier along the straight
line; a quadratic Bezier curve fitted by minimizing the expected loss along it goes around
it. Left: the loss along the line and the curve (barrier marked, Frankle et al. 2020).
Right: both in the plane through a, b and the curve's bend, over the loss surface of that
plane. Writes figures/mode_connectivity.png.

Run it:

    python examples/mode_connectivity.py                     # about a minute on 2 CPU cores
    LANDSCAPE_QUICK=1 python examples/mode_connectivity.py   # seconds: short fits, 9x9 grid

Your model: two checkpoints of your ``nn.Module`` and an ``Objective`` on your training data;
``bn_reestimate=True`` recomputes BatchNorm statistics at every point of the path
(``landscape connect CKPT_A CKPT_B`` on the command line).
"""

import os

import numpy as np
from matplotlib.figure import Figure

from landscape import Objective, compute_surface, landscape_style, save_figure
from landscape.demo import digits_data, digits_mlp, train_classifier
from landscape.paths import connect_checkpoints, model_soup
from landscape.planes import checkpoint_plane
from landscape.plotting import plot_path_plane, plot_paths

QUICK = os.environ.get("LANDSCAPE_QUICK") == "1"
FIGURES = os.environ.get(
    "LANDSCAPE_FIGURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "figures")
)
data = digits_data("train")
if QUICK:
    data = (data[0][:256], data[1][:256])

# two minima from two initialisations
a, b = (train_classifier(digits_mlp(seed=s), data, lr=0.02, optimizer="adam",
                         steps=80 if QUICK else 400, seed=s, progress=False)
        for s in (0, 1))  # fmt: skip
objective = Objective(a, data)

# the straight line and a fitted Bezier curve, loss and accuracy along both
connection = connect_checkpoints(objective, a, b, curve="bezier", t=11 if QUICK else 31,
                                 num_steps=100 if QUICK else 1000, lr=0.02)  # fmt: skip
line, curve = connection.line, connection.curve
print(f"barrier: line {line.barrier:.3f}, bezier {curve.barrier:.4f} "
      f"(ratio {curve.barrier / line.barrier:.3f})")  # fmt: skip

# the uniform average of the two (a soup): usually bad for minima that are not connected
soup = model_soup([a, b])
print(f"soup loss {objective(soup)['loss']:.3f} vs ends {line.loss[0]:.3f}, {line.loss[-1]:.3f}")

# the loss over the plane through a, b and the bend, with the paths drawn in it
bend = {**objective.base_state, **connection.fitted.bend}
plane = checkpoint_plane(a, [a, b, bend])
bx, (cx, cy) = plane.coords[1, 0], plane.coords[2]
pad = 0.3 * bx
n = 9 if QUICK else 31
xs = np.linspace(min(0.0, cx) - pad, max(bx, cx) + pad, n)
ys = np.linspace(min(0.0, cy) - pad, max(0.0, cy) + pad, n)
surface = compute_surface(objective.at(plane.origin), plane.directions, xs, ys, progress=False)

with landscape_style():
    fig = Figure(figsize=(8, 3.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    plot_paths(connection, "loss", left)
    plot_path_plane(surface, connection, "loss", right, log=True)
    print(save_figure(fig, os.path.join(FIGURES, "mode_connectivity.png")))
