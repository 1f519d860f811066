"""Hessian spectra of a flat and a sharp minimum (Ghorbani et al. 2019; Keskar et al. 2017).

The eigenvalue density of the Hessian by stochastic Lanczos quadrature, for the demo's two
digits MLPs trained from one initialisation (SGD with batches of 16, and full-batch gradient
descent), on one log axis. Both curves are broadened by the same Gaussian, of an absolute
width in eigenvalue units, so that their peaks compare: a width relative to each spectrum
would smooth the wider spectrum more. Prints the top-5 eigenvalues with their residuals and
the trace with its standard error. Writes figures/hessian_spectrum.png.

Run it:

    python examples/hessian_spectrum.py                     # about a minute on 2 CPU cores
    LANDSCAPE_QUICK=1 python examples/hessian_spectrum.py   # seconds: short training, fewer probes

Your model: build ``Objective(model, data)`` with your ``nn.Module`` and your data (a
DataLoader, a Dataset or a tuple ``(inputs, targets)``); ``batch_size`` as large as memory
allows, since each Hessian-vector product is a pass over the whole set. Choose ``SIGMA`` a
little below the gap between the eigenvalues you want to tell apart.
"""

import os

import torch
from matplotlib.figure import Figure

from landscape import (
    Objective,
    hessian_eigenpairs,
    hessian_trace,
    landscape_style,
    plot_spectral_density,
    save_figure,
    spectral_density,
)
from landscape.demo import DEMO_RECIPES, digits_data, digits_mlp, train_classifier

QUICK = os.environ.get("LANDSCAPE_QUICK") == "1"
FIGURES = os.environ.get(
    "LANDSCAPE_FIGURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "figures")
)
SIGMA = 0.003  # one Gaussian broadening for both spectra, in eigenvalue units
data = digits_data("train")
short = {"small-batch": {"epochs": 1}, "large-batch": {"steps": 40}} if QUICK else {}
models = {
    name: train_classifier(digits_mlp(), data, progress=False, **{**recipe, **short.get(name, {})})
    for name, recipe in DEMO_RECIPES.items()
}

with landscape_style():
    fig = Figure(figsize=(4.5, 3.2), layout="constrained")
    ax = fig.add_subplot()
    for label, model in models.items():
        objective = Objective(model, data, batch_size=2048)  # one batch: the graph is reused
        top = hessian_eigenpairs(objective, k=5, dtype=torch.float64, progress=False)
        trace = hessian_trace(
            objective, num_probes=15 if QUICK else 99, dtype=torch.float64, progress=False
        )
        density = spectral_density(objective, num_probes=2 if QUICK else 5,
                                   num_steps=20 if QUICK else 60, sigma=SIGMA,
                                   sigma_units="absolute", dtype=torch.float64,
                                   progress=False)  # fmt: skip
        print(f"{label}: top-5 {top.eigenvalues.round(4)} (max residual "
              f"{top.residuals.max():.1e}, {top.num_hvps} HVPs), "
              f"trace {trace.value:.3f} ± {trace.stderr:.3f}")  # fmt: skip
        plot_spectral_density(density.grid, density.density, ax, label=label)
    ax.legend(title=f"Gaussian broadening\n$\\sigma$ = {SIGMA:g} for both", fontsize="small")
    print(save_figure(fig, os.path.join(FIGURES, "hessian_spectrum.png")))
