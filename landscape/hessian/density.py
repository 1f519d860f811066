"""The Hessian's eigenvalue density by stochastic Lanczos quadrature (Ghorbani et al. 2019)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import torch

from .._progress import progress_bar
from ..limits import MAX_DRAWS, MAX_POINTS, check_limit
from ..linalg import SigmaUnits, lanczos_quadrature, smoothed_density
from ..objective import Objective
from .operator import HessianOperator, ParamSelection, resolve_operator
from .results import DensityResult

__all__ = ["spectral_density"]


def spectral_density(
    objective: Objective | HessianOperator,
    *,
    num_probes: int = 10,
    num_steps: int = 80,
    sigma: float = 0.01,
    sigma_units: SigmaUnits = "width",
    num_grid: int = 1000,
    seed: int = 0,
    state: Mapping[str, torch.Tensor] | None = None,
    params: ParamSelection = None,
    dtype: torch.dtype | None = None,
    progress: bool = True,
) -> DensityResult:
    """Eigenvalue density of the Hessian by stochastic Lanczos quadrature (Ghorbani et al.).

    Each probe (random signs, unit norm) runs ``num_steps`` Lanczos steps with full
    reorthogonalization (:func:`landscape.linalg.lanczos_quadrature`); the Ritz values
    ``theta_i`` and squared first components ``w_i`` of ``T``'s eigenvectors are a
    quadrature rule for that probe's spectral measure. The density is their average over
    probes, each node broadened by a Gaussian of width ``sigma``:
    ``rho(t) = mean_p sum_i w_pi N(t; theta_pi, sigma^2)``
    (:func:`landscape.linalg.smoothed_density`). Its mean ``integral t rho(t) dt`` is a
    Hutchinson estimate of ``trace / n``.

    Memory, in vectors of ``n`` (the number of weights) on the device: one probe's basis,
    at most ``num_steps + 32`` in the operator's dtype (at least float32), freed before the
    next probe's, and at most 6 more while a step runs (see
    :func:`~landscape.linalg.lanczos_quadrature`); each HVP adds one float64 vector (the
    sum over batches) and a batch's gradient graph, kept graphs at most
    ``max_graph_bytes`` (see :class:`HessianOperator`).

    Args:
        objective: an Objective or a HessianOperator.
        num_probes: number of random probes (``num_probes * num_steps`` HVPs).
        num_steps: Lanczos steps per probe (fewer if a Krylov space is exhausted).
        sigma: Gaussian width: a fraction of the spectrum's width ``max(nodes) - min(nodes)``
            for ``sigma_units="width"``, in eigenvalue units for ``"absolute"``.
        num_grid: number of grid points; the grid spans the nodes plus ``5 sigma`` on each
            side, so the density integrates to 1 as long as the spacing is well below sigma.
        seed: seed of the probes.
        state, params, dtype: as in :class:`HessianOperator`.
        progress: show a tqdm bar of the HVPs (probes x steps).

    Returns:
        a :class:`DensityResult` (NaN grid and density, with a warning, where an HVP is not
        finite).

    Raises:
        ValueError: a non-positive count or sigma, or unknown ``sigma_units``.
    """
    if num_probes < 1 or num_steps < 1 or num_grid < 2:
        raise ValueError(
            f"num_probes and num_steps must be >= 1 and num_grid >= 2, got {num_probes}, "
            f"{num_steps} and {num_grid}"
        )
    check_limit("density probes", num_probes, MAX_DRAWS)
    check_limit("density grid points", num_grid, MAX_POINTS)
    if not sigma > 0 or sigma_units not in ("width", "absolute"):
        raise ValueError(
            f"sigma must be > 0 with sigma_units 'width' or 'absolute', got {sigma} {sigma_units!r}"
        )
    op = resolve_operator(objective, state, params, dtype)
    total = num_probes * num_steps
    with progress_bar(progress, desc="density", unit="HVP", total=total) as bar:
        rule = lanczos_quadrature(
            op, num_probes=num_probes, num_steps=num_steps, seed=seed, callback=bar.update
        )
    settings = {
        **op.settings,
        "num_probes": num_probes,
        "num_steps": num_steps,
        "sigma": sigma,
        "sigma_units": sigma_units,
        "num_grid": num_grid,
        "seed": seed,
    }
    if not rule.finite:
        warnings.warn(
            "a Hessian-vector product is not finite; the density is NaN",
            RuntimeWarning,
            stacklevel=2,
        )
        nan = np.full(num_grid, np.nan)
        settings["sigma_abs"] = float("nan")
        return DensityResult(nan, nan.copy(), rule.nodes, rule.weights, rule.num_matvecs, settings)
    grid, density, sigma_abs = smoothed_density(
        rule.nodes, rule.weights, sigma=sigma, sigma_units=sigma_units, num_grid=num_grid
    )
    settings["sigma_abs"] = sigma_abs
    return DensityResult(grid, density, rule.nodes, rule.weights, rule.num_matvecs, settings)
