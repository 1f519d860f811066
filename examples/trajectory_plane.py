"""A training run on its PCA plane, and what the projection hides.

Left: the loss surface over the plane of the top two principal directions of
theta_t - theta_final (Li et al. 2018, Sec. 7), the run drawn on it with each checkpoint
labelled by its step and the axes by their explained variance. Right: each checkpoint's own
loss beside the loss at its projected point: where they differ, the run left the plane.
Writes figures/trajectory_plane.png.

Run it:

    python examples/trajectory_plane.py                     # about 30 s on 2 CPU cores
    LANDSCAPE_QUICK=1 python examples/trajectory_plane.py   # seconds: 6 checkpoints, 9x9 grid

Your model: keep ``state_dict`` copies (or checkpoint files) of your training run in order,
with their steps, and give them to ``trajectory_plane`` with an ``Objective`` on your data
(``landscape trajectory --model M:F --data M:F CKPT ...`` on the command line).
"""

import os

from matplotlib.figure import Figure

from landscape import Objective, landscape_style, save_figure
from landscape.demo import digits_data, digits_mlp, train_classifier
from landscape.plotting import plot_projection_error, plot_trajectory
from landscape.trajectory import trajectory_plane

QUICK = os.environ.get("LANDSCAPE_QUICK") == "1"
FIGURES = os.environ.get(
    "LANDSCAPE_FIGURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "figures")
)
data = digits_data("train")

# a run: full-batch SGD from one initialisation, a checkpoint after every leg
model, run, steps = digits_mlp(seed=0), [], []
for leg in range(4 if QUICK else 12):
    model = train_classifier(model, data, lr=0.1, steps=25, progress=False)
    run.append({n: t.detach().clone() for n, t in model.state_dict().items()})
    steps.append(25 * (leg + 1))

# the plane around the final checkpoint, the path on it, the true vs projected losses
trajectory = trajectory_plane(Objective(model, data), run, steps=steps,
                              num_points=5 if QUICK else 25)  # fmt: skip

with landscape_style():
    fig = Figure(figsize=(8, 3.4), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(3, 2))
    plot_trajectory(trajectory, "loss", left, log=True)
    plot_projection_error(trajectory, "loss", right, log=True)
    print(save_figure(fig, os.path.join(FIGURES, "trajectory_plane.png")))
