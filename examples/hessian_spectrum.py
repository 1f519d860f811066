"""Hessian spectra of a flat and a sharp minimum: top eigenvalues, trace, spectral density.

Writes figures/hessian_spectrum.png (density on a log axis, one curve per model) and prints
the top eigenvalues with their residuals and the trace with its standard error.

    python examples/hessian_spectrum.py
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
from landscape.demo import digits_data, train_demo_pair

FIGURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "figures")
models = train_demo_pair(progress=False)

with landscape_style():
    fig = Figure(figsize=(4.5, 3.2), layout="constrained")
    ax = fig.add_subplot()
    for label, model in models.items():
        objective = Objective(model, digits_data("train"), batch_size=2048)  # one batch
        top = hessian_eigenpairs(objective, k=5, dtype=torch.float64)
        trace = hessian_trace(objective, num_probes=99, dtype=torch.float64)
        density = spectral_density(objective, num_probes=5, num_steps=60, dtype=torch.float64)
        print(f"{label}: top-5 {top.eigenvalues.round(4)} (max residual "
              f"{top.residuals.max():.1e}, {top.num_hvps} HVPs), "
              f"trace {trace.value:.3f} ± {trace.stderr:.3f}")  # fmt: skip
        plot_spectral_density(density.grid, density.density, ax, label=label)
    ax.legend()
    print(save_figure(fig, os.path.join(FIGURES, "hessian_spectrum.png")))
