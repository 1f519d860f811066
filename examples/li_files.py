"""Reading result files of Li et al.'s code, and giving them our directions.

Their surface files store the value at (x[i], y[j]) at raw.ravel()[j * len(x) + i] whatever
the dataset's shape: read as an array, a non-square grid comes out scrambled. This example
writes a Li-style pair of files (our directions exported with export_li_directions, and a
surface laid out as their crunch loop lays it out), imports them with import_li and draws
the raw array beside the decoded surface. Writes figures/li_files.png.

Run it:

    python examples/li_files.py                     # about 30 s on 2 CPU cores
    LANDSCAPE_QUICK=1 python examples/li_files.py   # seconds: 256 examples, a 13x7 grid

Your model: ``import_li(surface_file, model)`` with the ``nn.Module`` their directions were
drawn for reads their surface (and the direction file it names) into a ``Surface``;
``export_li_directions(directions, model, path)`` writes ours for their ``--dir_file``
(``landscape import-li`` on the command line).
"""

import os
import tempfile

import h5py
import numpy as np
from matplotlib.figure import Figure

from landscape import compute_surface, landscape_style, plot_contour, random_directions, save_figure
from landscape.demo import digits_data, digits_mlp, train_classifier
from landscape.li_format import export_li_directions, import_li

QUICK = os.environ.get("LANDSCAPE_QUICK") == "1"
FIGURES = os.environ.get(
    "LANDSCAPE_FIGURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "figures")
)
X, y = digits_data("train")
data = (X[:256], y[:256]) if QUICK else (X, y)
model = train_classifier(digits_mlp(seed=0), data, lr=0.1, steps=100, progress=False)

# our surface on a non-square grid, then the same values in Li et al.'s layout
directions = random_directions(model, seed=0)
xs, ys = np.linspace(-1, 1, 13 if QUICK else 41), np.linspace(-0.5, 0.5, 7 if QUICK else 21)
ours = compute_surface(model, data, directions, xs, ys, progress=False)
folder = tempfile.mkdtemp()
dir_file = os.path.join(folder, "model.h5_weights_xignore=biasbn_xnorm=filter.h5")
export_li_directions(directions, model, dir_file)  # their --dir_file can reuse these
surf_file = dir_file + "_[-1,1,13]x[-0.5,0.5,7].h5"
with h5py.File(surf_file, "w") as f:  # as their crunch loop writes it
    f["dir_file"] = dir_file
    f["xcoordinates"], f["ycoordinates"] = xs, ys
    f["train_loss"] = ours["loss"].T.ravel().reshape(len(xs), len(ys))  # ravel()[j*nx + i]
    f["train_acc"] = 100 * ours["accuracy"].T.ravel().reshape(len(xs), len(ys))

imported = import_li(surf_file, model)  # directions read from the dir_file it names
assert np.array_equal(imported["loss"], ours["loss"])
with h5py.File(surf_file, "r") as f:
    raw = f["train_loss"][()]

with landscape_style():
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.imshow(raw.T, origin="lower", aspect="auto", cmap="viridis")
    left.set_title("their array, read as stored")
    plot_contour(imported, "loss", right, log=True)
    right.set_title("import_li: values at (x[i], y[j])")
    print(save_figure(fig, os.path.join(FIGURES, "li_files.png")))
