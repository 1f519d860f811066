"""A landscape file as ParaView, interactive HTML and GIF views.

Computes a small trajectory file, then writes figures/trajectory.vts (+ _path.vtu) for
ParaView, figures/trajectory.html (one self-contained Plotly page) and
figures/trajectory.gif (the run moving on the contour): the same as
``landscape export FILE.h5 --format vts|html|gif -o OUT``. Needs the export extra
(pip install 'landscape[export]').

Run it:

    python examples/export_views.py                     # about 30 s on 2 CPU cores
    LANDSCAPE_QUICK=1 python examples/export_views.py   # seconds: 5 checkpoints, 9x9 grid

Your model: any landscape file exports, a surface, a trajectory or a file of paths: give its
path to ``export_vts``, ``export_html`` or ``export_gif``, or run ``landscape export``.
"""

import os

from landscape import Objective
from landscape.demo import digits_data, digits_mlp, train_classifier
from landscape.export import export_gif, export_html, export_vts
from landscape.trajectory import trajectory_plane

QUICK = os.environ.get("LANDSCAPE_QUICK") == "1"
FIGURES = os.environ.get(
    "LANDSCAPE_FIGURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "figures")
)
os.makedirs(FIGURES, exist_ok=True)
data = digits_data("train")

model, run = digits_mlp(seed=0), []
for _ in range(5 if QUICK else 10):
    model = train_classifier(model, data, lr=0.1, steps=25, progress=False)
    run.append({n: t.detach().clone() for n, t in model.state_dict().items()})

path = os.path.join(FIGURES, "trajectory.h5")
trajectory_plane(Objective(model, data), run, steps=[25 * (k + 1) for k in range(len(run))],
                 num_points=5 if QUICK else 31, path=path, overwrite=True)  # fmt: skip

for written in (
    export_vts(path, os.path.join(FIGURES, "trajectory.vts")),
    export_html(path, os.path.join(FIGURES, "trajectory.html")),
    export_gif(path, os.path.join(FIGURES, "trajectory.gif"), fps=3),
):
    print(*written, sep="\n")
