"""Spectral densities of the diagonal blocks ``H_bb`` on one grid, and the Jensen-Shannon
distance between them (Zhang et al. 2024, "Why Transformers Need Adam: A Hessian
Perspective": blocks of a transformer have unlike spectra, those of a CNN alike)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
from scipy.spatial.distance import jensenshannon

from ..checks import check_count
from ..linalg import (
    Quadrature,
    SigmaUnits,
    SymmetricOperator,
    lanczos_quadrature,
    smoothed_density,
)
from ..linalg.operators import Callback
from .results import DensityResult

__all__ = ["block_densities", "common_densities", "js_distances"]


def block_densities(
    ops: Mapping[str, SymmetricOperator],
    *,
    num_probes: int = 10,
    num_lanczos_steps: int = 80,
    sigma: float = 0.01,
    sigma_units: SigmaUnits = "width",
    num_grid: int = 1000,
    seed: int = 0,
    callback: Callback = None,
) -> dict[str, DensityResult]:
    """The stochastic-Lanczos-quadrature density of each block's operator, on one grid.

    Each operator (``H_bb``: the Hessian restricted to the block's weights, whose product is
    the block of the full product with the probe zero outside ``b``) gets its quadrature
    rules from :func:`~landscape.linalg.lanczos_quadrature` (random-sign probes, each with
    ``num_lanczos_steps`` steps; every block the same ``seed``, so blocks with equal
    matrices get equal densities). The densities are then smoothed with one Gaussian width
    (``sigma`` a fraction of the spread of every block's nodes for ``sigma_units="width"``)
    on one grid spanning every block's nodes plus ``5 sigma``, so they compare point by point.

    Cost: ``num_probes * num_lanczos_steps`` products a block, each with its own operator.

    Returns:
        ``{block: DensityResult}`` with the common ``grid`` (settings: the options and
        ``sigma_abs``); NaN densities, with a warning, for a block whose products were not
        finite.

    Example:
        >>> import torch
        >>> from landscape.linalg import dense_operator
        >>> ops = {"a": dense_operator(torch.eye(2, dtype=torch.float64)),
        ...        "b": dense_operator(2 * torch.eye(3, dtype=torch.float64))}
        >>> found = block_densities(ops, num_probes=2, num_lanczos_steps=2, num_grid=50)
        >>> bool((found["a"].grid == found["b"].grid).all()), float(found["b"].nodes[0, 0])
        (True, 2.0)
    """
    check_count(num_probes, "num_probes")
    check_count(num_lanczos_steps, "num_lanczos_steps")
    rules = {
        block: lanczos_quadrature(
            op, num_probes=num_probes, num_steps=num_lanczos_steps, seed=seed, callback=callback
        )
        for block, op in ops.items()
    }
    return common_densities(rules, sigma=sigma, sigma_units=sigma_units, num_grid=num_grid)


def common_densities(
    rules: Mapping[str, Quadrature],
    *,
    sigma: float = 0.01,
    sigma_units: SigmaUnits = "width",
    num_grid: int = 1000,
) -> dict[str, DensityResult]:
    """Each block's quadrature rules smoothed into a density on the grid of them all (see
    :func:`block_densities`), so that :func:`block_curvature` can free a block's operator
    before the next block's is built.

    Returns:
        ``{block: DensityResult}``, as :func:`block_densities`.
    """
    check_count(num_grid, "num_grid", 2)
    finite = [r.nodes[~np.isnan(r.nodes)] for r in rules.values() if r.finite]
    found = np.concatenate(finite) if finite else np.zeros(0)
    bad = [block for block, r in rules.items() if not r.finite]
    if bad:
        warnings.warn(f"a Hessian-vector product of blocks {bad} is not finite; their densities "
                      "are NaN", RuntimeWarning, stacklevel=2)  # fmt: skip
    ends = np.array([[found.min(), found.max()]]) if found.size else np.full((1, 2), np.nan)
    out = {}
    for block, rule in rules.items():
        # the ends of every block's nodes, weighted 0, give each block the common grid
        nodes = np.concatenate([rule.nodes, ends.repeat(len(rule.nodes), 0)], axis=1)
        weights = np.concatenate([rule.weights, np.zeros((len(rule.nodes), 2))], axis=1)
        grid, density, sigma_abs = smoothed_density(
            nodes, weights, sigma=sigma, sigma_units=sigma_units, num_grid=num_grid
        )
        if not rule.finite:
            density = np.full(num_grid, np.nan)
        settings = {
            "num_probes": rule.settings["num_probes"],
            "num_steps": rule.settings["num_steps"],
            "sigma": sigma,
            "sigma_units": sigma_units,
            "num_grid": num_grid,
            "seed": rule.settings["seed"],
            "sigma_abs": sigma_abs,
            "memory_bound_bytes": rule.memory_bound_bytes,
        }
        out[block] = DensityResult(
            grid, density, rule.nodes, rule.weights, rule.num_matvecs, settings
        )
    return out


def js_distances(densities: Mapping[str, DensityResult]) -> np.ndarray:
    """The Jensen-Shannon distance between every two blocks' densities on their common grid.

    Each density is read as a distribution on the grid's points (``p_i`` proportional to
    the density at ``t_i``, subnormal values taken as 0); the distance is ``sqrt(JS(p, q))`` with
    ``JS = KL(p || m) / 2 + KL(q || m) / 2``, ``m = (p + q) / 2``, in bits (log base 2): 0 for
    equal densities, 1 for densities with disjoint support, symmetric, a metric.

    Returns:
        ``(blocks, blocks)`` float64 matrix in the mapping's order; NaN rows and columns for
        a NaN density.

    Raises:
        ValueError: the densities' grids differ.

    Example:
        >>> grid = np.linspace(0, 1, 3)
        >>> d = {"a": DensityResult(grid, np.array([1.0, 0, 0]), None, None, 0),
        ...      "b": DensityResult(grid, np.array([0, 0, 1.0]), None, None, 0)}
        >>> js_distances(d)
        array([[0., 1.],
               [1., 0.]])
    """
    found = list(densities.values())
    if any(not np.array_equal(d.grid, found[0].grid, equal_nan=True) for d in found):
        raise ValueError("expected densities on one grid, got different grids")
    # a Gaussian's far tail is subnormal, and half of the least one is 0: m = 0 < p, KL = inf
    shown = [np.where(d.density < np.finfo(np.float64).tiny, 0.0, d.density) for d in found]
    out = np.full((len(found), len(found)), np.nan)
    for i, p in enumerate(shown):
        for j, q in enumerate(shown[: i + 1]):
            if np.isfinite(p).all() and np.isfinite(q).all():
                out[i, j] = out[j, i] = 0.0 if i == j else jensenshannon(p, q, base=2)
    return out
