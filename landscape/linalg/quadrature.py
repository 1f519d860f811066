"""Stochastic Lanczos quadrature and the smoothed spectral density (Ghorbani et al. 2019)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from .. import distributed
from .._seeding import seeded_generator
from ..limits import MAX_DRAWS, check_limit
from ..results import Result
from ._krylov import _PIECE_BYTES, _Lanczos
from ._three_term import _ghosts, _three_term, _tridiagonal
from .operators import (
    Callback,
    SymmetricOperator,
    _check_operator,
    _check_whole,
    _Products,
    _rademacher,
    _work_dtype,
)

SigmaUnits = Literal["width", "absolute"]


@dataclass(frozen=True, eq=False)
class Quadrature(Result):
    """Stochastic Lanczos quadrature: per probe, Ritz values and their weights.

    Attributes:
        nodes: Ritz values ``(num_probes, num_steps)``; NaN where a probe's Krylov space
            was exhausted early (or everywhere when ``finite`` is false).
        weights: squared first components of ``T``'s eigenvectors (0 where NaN); each row
            sums to 1, and ``sum_i w_i f(theta_i)`` estimates ``z^T f(A) z / z^T z``.
        num_matvecs: products spent.
        finite: every product was finite.
        settings: ``num_probes``, ``num_steps``, ``seed``, ``reorthogonalize``, ``ranks``
            (the ranks the probes were dealt to, 1 when they were not).
        memory_bound_bytes: the most bytes of vectors held at once (a probe's basis, or
            three vectors without reorthogonalization; what the operator needs for a
            product not included).
        num_ghosts: without reorthogonalization, the Ritz values over all probes that the
            Cullum-Willoughby test finds to be ghost copies of another (they stay in the
            rule: each copy carries part of its eigenvalue's weight); 0 with it.
    """

    nodes: np.ndarray
    weights: np.ndarray
    num_matvecs: int
    finite: bool
    settings: dict[str, Any] = field(default_factory=dict)
    memory_bound_bytes: int = 0
    num_ghosts: int = 0


def quadrature_bound(n: int, num_steps: int, itemsize: int, reorthogonalize: bool = True) -> int:
    """Bytes of vectors :func:`lanczos_quadrature` holds at once: with reorthogonalization
    ``min(num_steps + 1, n)`` rows of ``itemsize`` bytes each (and 32 MiB for products with
    the basis), without it three; either way at least a float64 draw of a probe.

    Example:
        >>> quadrature_bound(1000, 80, 4, reorthogonalize=False)
        12000
    """
    if not reorthogonalize:
        return max(3 * itemsize, 8) * n
    return max(min(num_steps + 1, n) * itemsize, 8) * n + 2 * _PIECE_BYTES


def _plain_rule(products: _Products, probe: torch.Tensor, num_steps: int, eps: float):
    """One probe's Gauss rule by three-term Lanczos: ``(nodes, weights, ghosts)`` or None
    on a non-finite product."""
    alpha, beta, finite = _three_term(products, probe, num_steps)
    if not finite:
        return None
    theta, vectors = _tridiagonal(alpha, beta)
    return theta, vectors[0] ** 2, int(_ghosts(alpha, beta, eps)[1].sum())


def _full_rule(products: _Products, start: list[torch.Tensor], num_steps: int):
    """One probe's Gauss rule by Lanczos with full reorthogonalization: ``(nodes, weights,
    0)`` or None on a non-finite product (the basis is freed on return)."""
    lanczos = _Lanczos(products, start)
    while len(lanczos.multiplied) < num_steps and lanczos.step():
        pass
    if not lanczos.finite:
        return None
    theta, vectors, _ = lanczos.ritz()
    return theta, vectors[0] ** 2, 0


def lanczos_quadrature(
    op: SymmetricOperator,
    *,
    num_probes: int = 10,
    num_steps: int = 80,
    seed: int | torch.Generator = 0,
    reorthogonalize: bool = True,
    callback: Callback = None,
    deal_probes: bool = False,
) -> Quadrature:
    """Gauss quadrature rules for the spectral measure of random-sign probes.

    Each probe ``z`` (random signs) runs ``num_steps`` Lanczos steps with full
    reorthogonalization from ``z / ||z||``; the Ritz values ``theta_i`` and the squared
    first components ``w_i`` of ``T``'s eigenvectors are a Gauss rule for ``z``'s spectral
    measure, whose average over probes estimates the eigenvalue distribution
    ``(1/n) sum_j delta(t - lambda_j)``.

    ``reorthogonalize=False`` runs the plain three-term recurrence instead, holding three
    vectors a probe whatever ``num_steps``. Its basis loses orthogonality as Ritz values
    converge, and converged outer eigenvalues reappear as ghost copies; for a density this
    does no harm: finite-precision Lanczos is exact Lanczos on a measure whose mass sits in
    tiny intervals around the eigenvalues (Greenbaum 1989), so the copies share their
    eigenvalue's weight and the rule's low moments stay those of the probe's measure
    (Knizhnerman 1996). Ghosts are counted (``num_ghosts``, by the Cullum-Willoughby test)
    and left in the rule. Use the reorthogonalized rule as the reference, and where single
    Ritz values matter (eigenvalues: :func:`~landscape.linalg.two_pass_eigenpairs`).

    Memory (``memory_bound_bytes``, :func:`quadrature_bound`), in vectors of ``n = size``
    on the operator's device, in the working dtype (the operator's, at least float32): one
    probe's basis, ``num_steps + 1`` vectors, one tensor each as the steps make them (freed
    before the next probe's), and at most 32 MiB for products with the basis; three vectors
    without reorthogonalization. Besides: what the operator
    needs for a product, and on the CPU each probe is drawn in float64 (one vector while it
    is drawn, before its basis exists).

    Dealt probes (``deal_probes=True`` under a ``torch.distributed`` group): probe ``p``
    runs on rank ``p % world_size`` alone, drawn as one process draws it (every rank draws
    every probe from the seed's stream and skips the others'), so the operator's products
    must be local to the rank (no collective inside). One all-reduce at the end brings
    every rank all the rules, the product count and the ghosts: the one-process result,
    exactly. Without a group the flag changes nothing.

    Args:
        op: a :class:`SymmetricOperator`.
        num_probes: number of probes (``num_probes * num_steps`` products at most).
        num_steps: Lanczos steps per probe (fewer if a Krylov space is exhausted).
        seed: seed (or generator) of the probes.
        reorthogonalize: full reorthogonalization (the reference), or three vectors a probe.
        callback: called with no argument after every product.
        deal_probes: deal the probes across the ranks (see above).

    Returns:
        a :class:`Quadrature`.

    Raises:
        ValueError: a count below 1.

    Example:
        >>> from landscape.linalg import dense_operator
        >>> op = dense_operator(torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)))
        >>> rule = lanczos_quadrature(op, num_probes=1, num_steps=3)
        >>> np.round(rule.nodes, 10), np.round(rule.weights, 6)  # exact after 3 steps
        (array([[1., 2., 3.]]), array([[0.333333, 0.333333, 0.333333]]))
    """
    _check_operator(op)
    _check_whole(op, "Lanczos quadrature")
    if num_probes < 1 or num_steps < 1:
        raise ValueError(f"num_probes and num_steps must be >= 1, got {num_probes} and {num_steps}")
    check_limit("quadrature probes", num_probes, MAX_DRAWS)
    check_limit("Lanczos steps", num_steps, MAX_DRAWS)
    me, world = (distributed.rank(), distributed.world_size()) if deal_probes else (0, 1)
    generator = seed if isinstance(seed, torch.Generator) else seeded_generator(seed, op.device)
    work = _work_dtype(op.dtype)
    products = _Products(op, work, callback)
    settings = {
        "num_probes": num_probes,
        "num_steps": num_steps,
        "seed": seed if isinstance(seed, int) else None,
        "reorthogonalize": bool(reorthogonalize),
        "ranks": world,
    }
    bound = quadrature_bound(op.size, num_steps, work.itemsize, reorthogonalize)
    nodes = np.full((num_probes, num_steps), np.nan)
    weights = np.zeros((num_probes, num_steps))
    eps, ghosts, finite = torch.finfo(work).eps, 0, True
    for p in range(num_probes):
        start = [_rademacher(op.size, generator, work, op.device)]
        if p % world != me:
            continue  # drawn all the same: the stream stays the one-process run's
        if reorthogonalize:
            rule = _full_rule(products, start, num_steps)
        else:
            rule = _plain_rule(products, start.pop(), num_steps, eps)
        del start
        if rule is None:
            finite = False
            break
        m = len(rule[0])
        nodes[p, :m], weights[p, :m] = rule[0], rule[1]
        ghosts += rule[2]
    count = products.count
    if world > 1:  # one collective: the rules (0 in the other ranks' rows) and the counts
        mine = (np.arange(num_probes) % world == me)[:, None]
        tally = np.array([count, ghosts, finite], dtype=np.float64)
        local = np.concatenate([np.where(mine, nodes, 0.0).ravel(), weights.ravel(), tally])
        host = distributed.all_reduce_sum(torch.from_numpy(local).to(op.device)).cpu().numpy()
        size = nodes.size
        nodes[:], weights[:] = host[:size].reshape(nodes.shape), host[size:-3].reshape(nodes.shape)
        count, ghosts, finite = int(host[-3]), int(host[-2]), bool(host[-1] == world)
    if not finite:
        nodes[:] = np.nan
        weights[:] = 0.0
    return Quadrature(nodes, weights, count, finite, settings, bound, ghosts)


def smoothed_density(
    nodes: np.ndarray,
    weights: np.ndarray,
    *,
    sigma: float = 0.01,
    sigma_units: SigmaUnits = "width",
    num_grid: int = 1000,
) -> tuple[np.ndarray, np.ndarray, float]:
    """A density from quadrature rules: ``rho(t) = mean_p sum_i w_pi N(t; theta_pi, s^2)``.

    Args:
        nodes, weights: ``(num_probes, num_nodes)`` as in :class:`Quadrature` (NaN nodes
            are skipped).
        sigma: Gaussian width: a fraction of the spread ``max(nodes) - min(nodes)`` for
            ``sigma_units="width"``, in eigenvalue units for ``"absolute"``.
        num_grid: grid points; the grid spans the nodes plus ``5 s`` on each side, so the
            density integrates to 1 while the spacing is well below ``s``.

    Returns:
        ``(grid, density, s)``; NaN arrays when every node is NaN.

    Raises:
        ValueError: ``sigma <= 0``, unknown ``sigma_units``, ``num_grid < 2``.

    Example:
        >>> grid, density, s = smoothed_density(np.array([[0.0, 1.0]]), np.array([[0.5, 0.5]]))
        >>> round(float(np.trapezoid(density, grid)), 6), s
        (1.0, 0.01)
    """
    if not sigma > 0 or sigma_units not in ("width", "absolute"):
        raise ValueError(
            f"sigma must be > 0 with sigma_units 'width' or 'absolute', got {sigma} {sigma_units!r}"
        )
    if num_grid < 2:
        raise ValueError(f"num_grid must be >= 2, got {num_grid}")
    found = ~np.isnan(nodes)
    if not found.any():
        nan = np.full(num_grid, np.nan)
        return nan, nan.copy(), math.nan
    low, high = float(nodes[found].min()), float(nodes[found].max())
    width = high - low if high > low else max(abs(high), 1.0)
    s = sigma * width if sigma_units == "width" else sigma
    grid = np.linspace(low - 5 * s, high + 5 * s, num_grid)
    gauss = np.exp(-0.5 * ((grid[:, None] - nodes[found][None, :]) / s) ** 2)
    density = gauss @ weights[found] / (len(nodes) * s * math.sqrt(2 * math.pi))
    return grid, density, s
