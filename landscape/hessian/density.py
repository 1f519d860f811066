"""The Hessian's eigenvalue density by stochastic Lanczos quadrature (Ghorbani et al. 2019)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .. import distributed
from .._progress import progress_bar
from ..limits import MAX_DRAWS, MAX_POINTS, check_limit
from ..linalg import SigmaUnits, lanczos_quadrature, smoothed_density
from ..objective import Objective
from .operator import HessianOperator, ParamSelection, resolve_operator
from .planner import plan_for, plan_settings
from .results import DensityResult
from .trace import probes_dealt

__all__ = ["spectral_density"]


def spectral_density(
    objective: Objective | HessianOperator,
    *,
    num_probes: int = 10,
    num_lanczos_steps: int = 80,
    sigma: float = 0.01,
    sigma_units: SigmaUnits = "width",
    num_grid: int = 1000,
    seed: int = 0,
    state: Mapping[str, torch.Tensor] | None = None,
    params: ParamSelection = None,
    dtype: torch.dtype | None = None,
    progress: bool = True,
    num_steps: int | None = None,
    reorthogonalize: bool | None = None,
    max_memory: int | None = None,
) -> DensityResult:
    """Eigenvalue density of the Hessian by stochastic Lanczos quadrature (Ghorbani et al.).

    Each probe (random signs, unit norm) runs ``num_lanczos_steps`` Lanczos steps with full
    reorthogonalization (:func:`landscape.linalg.lanczos_quadrature`); the Ritz values
    ``theta_i`` and squared first components ``w_i`` of ``T``'s eigenvectors are a
    quadrature rule for that probe's spectral measure. The density is their average over
    probes, each node broadened by a Gaussian of width ``sigma``:
    ``rho(t) = mean_p sum_i w_pi N(t; theta_pi, sigma^2)``
    (:func:`landscape.linalg.smoothed_density`). Its mean ``integral t rho(t) dt`` is a
    Hutchinson estimate of ``trace / n``.

    Memory: ``settings["memory_bound_bytes"]`` (and ``"memory_bound_vectors"``, in copies
    of the weights), the bound of :func:`~landscape.linalg.lanczos_quadrature`: one probe's
    basis, ``num_lanczos_steps + 1`` vectors of ``n`` (the number of weights) in the
    operator's dtype (at least float32), freed before the next probe's. Each HVP adds the
    sum over batches (one float64 vector of ``n``, or one in the operator's dtype for data
    in one batch) and a batch's gradient graph, kept graphs at most ``max_graph_bytes``
    (see :class:`HessianOperator`).

    Reorthogonalization: by default (``reorthogonalize=None``) the planner
    (:mod:`~landscape.hessian.planner`) keeps full reorthogonalization, the reference,
    while its basis fits in ``max_memory``, and otherwise runs the three-term recurrence
    in three vectors a probe (``settings["strategy"]`` is "reorthogonalize" or
    "three-term"); ``True`` or ``False`` chooses, and a choice that does not fit is refused
    before the first HVP. Without reorthogonalization converged outer eigenvalues come back
    as ghost copies that share their weight, so the density stays a Gauss rule for a
    measure close to the probe's (see :func:`~landscape.linalg.lanczos_quadrature`);
    ``settings["num_ghosts"]`` counts the copies.

    Ranks: under ``torchrun`` with an objective that does not shard its data (each rank
    holds all of it, so a product needs no collective), the probes are dealt across the
    ranks, probe ``p`` to rank ``p % world_size``, each drawn as one process draws it, and
    the rules gathered by one all-reduce at the end: every rank returns the one-process
    result after ``1 / world_size`` of the HVPs (``settings["ranks"]``). With
    ``shard_data=True`` every rank runs every probe, its products all-reduced.

    Products of ``hvp="fd"`` (see :class:`HessianOperator`): the result records their
    measured error ``delta`` (``hvp_error``) and ``settings["hvp_node_bound"]``,
    ``delta * max |node|``: how far that error may move the nodes, when ``delta`` bounds
    the products' error in every direction (NaN where it could not be measured).

    Args:
        objective: an Objective or a HessianOperator.
        num_probes: number of random probes (``num_probes * num_lanczos_steps`` HVPs).
        num_lanczos_steps: Lanczos steps per probe (fewer if a Krylov space is exhausted).
        sigma: Gaussian width: a fraction of the spectrum's width ``max(nodes) - min(nodes)``
            for ``sigma_units="width"``, in eigenvalue units for ``"absolute"``.
        num_grid: number of grid points; the grid spans the nodes plus ``5 sigma`` on each
            side, so the density integrates to 1 as long as the spacing is well below sigma.
        seed: seed of the probes.
        state, params, dtype: as in :class:`HessianOperator`.
        progress: show a tqdm bar of the HVPs (probes x steps).
        num_steps: the old name of ``num_lanczos_steps``, still accepted (deprecated).
        reorthogonalize: ``None`` (planned), ``True`` (full) or ``False`` (three-term).
        max_memory: bytes the job may hold; default the device's free memory (the host's
            available memory on the CPU).

    Returns:
        a :class:`DensityResult` (NaN grid and density, with a warning, where an HVP is not
        finite).

    Raises:
        ValueError: a non-positive count or sigma, unknown ``sigma_units``, or both
            ``num_steps`` and ``num_lanczos_steps`` given.
        RuntimeError: the density does not fit in ``max_memory`` (before any HVP).

    Example:
        >>> from torch import nn
        >>> from landscape.objective import Objective
        >>> x = torch.randn(20, 3, dtype=torch.float64)
        >>> objective = Objective(nn.Linear(3, 1).double(), (x, x.sum(1)), loss="mse")
        >>> density = spectral_density(objective, num_lanczos_steps=4, progress=False)
        >>> density.nodes.shape
        (10, 4)
    """
    if num_steps is not None:
        if num_lanczos_steps != 80:
            raise ValueError("expected num_lanczos_steps or its old name num_steps, got both "
                             f"({num_lanczos_steps} and {num_steps})")  # fmt: skip
        num_lanczos_steps = num_steps
    num_steps = num_lanczos_steps
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
    size = torch.empty((), dtype=op.dtype).element_size()
    strategy = {None: "auto", True: "reorthogonalize", False: "three-term"}[reorthogonalize]
    plan = plan_for(op, "density", max_memory, strategy, num_probes=num_probes,
                    num_steps=num_steps)  # fmt: skip
    dealt = probes_dealt(op)
    ranks = distributed.world_size() if dealt else 1
    mine = len(range(distributed.rank() if dealt else 0, num_probes, ranks)) * num_steps
    with progress_bar(progress, desc="density", unit="HVP", total=mine) as bar:
        rule = lanczos_quadrature(
            op, num_probes=num_probes, num_steps=num_steps, seed=seed, callback=bar.update,
            reorthogonalize=plan.choice == "reorthogonalize", deal_probes=dealt,
        )  # fmt: skip
    settings = {
        **op.settings,
        "num_probes": num_probes,
        "num_steps": num_steps,
        "memory_bound_bytes": rule.memory_bound_bytes,
        "memory_bound_vectors": rule.memory_bound_bytes / (op.num_params * size),
        "sigma": sigma,
        "sigma_units": sigma_units,
        "num_grid": num_grid,
        "seed": seed,
        "num_ghosts": rule.num_ghosts,
        "ranks": ranks,
        **plan_settings(plan, max_memory),
    }
    fd: dict[str, Any] = {"hvp": op.hvp, "hvp_error": op.hvp_error}
    if op.hvp == "fd":  # Weyl: ||H_fd - H|| <= delta ||H|| moves no eigenvalue further
        delta = op.hvp_error
        top = float(np.nanmax(np.abs(rule.nodes))) if rule.finite else float("nan")
        settings["hvp_node_bound"] = float("nan") if isinstance(delta, str) else delta * top
    if not rule.finite:
        warnings.warn(
            "a Hessian-vector product is not finite; the density is NaN",
            RuntimeWarning,
            stacklevel=2,
        )
        nan = np.full(num_grid, np.nan)
        settings["sigma_abs"] = float("nan")
        return DensityResult(
            nan, nan.copy(), rule.nodes, rule.weights, rule.num_matvecs, settings, **fd
        )
    grid, density, sigma_abs = smoothed_density(
        rule.nodes, rule.weights, sigma=sigma, sigma_units=sigma_units, num_grid=num_grid
    )
    settings["sigma_abs"] = sigma_abs
    return DensityResult(grid, density, rule.nodes, rule.weights, rule.num_matvecs, settings, **fd)
