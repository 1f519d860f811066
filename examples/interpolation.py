"""The 1D interpolation plot between two minima (Goodfellow et al. 2015; Keskar et al. 2017).

The parametric plot of Keskar et al. ("On Large-Batch Training for Deep Learning"): the digits
MLP trained with small batches and with full batches from one initialisation, then the
train and test loss on the line theta_small + t (theta_large - theta_small), t from -0.5 to
1.5. The full-batch minimum (t = 1) sits in the narrower valley. Writes
figures/interpolation.png.

Run it:

    python examples/interpolation.py                     # about a minute on 2 CPU cores
    LANDSCAPE_QUICK=1 python examples/interpolation.py   # seconds: short training, 11 points

Your model: load your two checkpoints into two copies of your ``nn.Module`` (or pass
``state_dict``s to ``interpolation_direction``), give your train and test data, and use
``dir_type="states"`` for a network with BatchNorm, so that the running statistics
interpolate too (``landscape surface --directions interp --target CKPT2`` on the command
line).
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
from landscape.demo import DEMO_RECIPES, digits_data, digits_mlp, train_classifier

QUICK = os.environ.get("LANDSCAPE_QUICK") == "1"
FIGURES = os.environ.get(
    "LANDSCAPE_FIGURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "figures")
)
# the demo's two recipes from one initialisation: SGD with batches of 16, and full batch
data = digits_data("train")
short = {"small-batch": {"epochs": 1}, "large-batch": {"steps": 40}} if QUICK else {}
small, large = (
    train_classifier(digits_mlp(), data, progress=False, **{**recipe, **short.get(name, {})})
    for name, recipe in DEMO_RECIPES.items()
)
line = Directions(interpolation_direction(small, large), kind="interpolation")
t = np.linspace(-0.5, 1.5, 11 if QUICK else 41)
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
