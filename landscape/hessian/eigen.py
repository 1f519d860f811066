"""Hessian eigenpairs by block Lanczos, verified in float64; extreme eigenvalues, Li et al.'s
convexity ratio and the top eigenvectors as surface directions."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np
import torch

from .. import options
from .._progress import progress_bar
from ..checks import check_choice
from ..linalg import Which, lanczos_eigenpairs, two_pass_eigenpairs
from ..objective import Objective
from .operator import HessianOperator, ParamSelection, resolve_operator
from .planner import plan_for, plan_settings
from .results import EigenResult, ExtremeEigenvalues
from .sharded import ShardedHessianOperator

__all__ = ["hessian_eigenpairs", "extreme_eigenvalues", "min_max_ratio", "hessian_directions"]


def _renamed(num_eigenpairs: int, k: int | None) -> int:
    """``num_eigenpairs``, or the old name ``k`` when that was given instead (accepted
    without a warning, as other modules of this package still pass it)."""
    if k is None:
        return num_eigenpairs
    if num_eigenpairs != 5:
        raise ValueError(
            f"expected num_eigenpairs or its old name k, got both ({num_eigenpairs} and {k})"
        )
    return k


def hessian_eigenpairs(
    objective: Objective | HessianOperator | ShardedHessianOperator,
    *,
    num_eigenpairs: int = 5,
    which: Which = "LA",
    tol: float | None = None,
    max_hvps: int = 500,
    seed: int = 0,
    state: Mapping[str, torch.Tensor] | None = None,
    params: ParamSelection = None,
    dtype: torch.dtype | None = None,
    progress: bool = True,
    k: int | None = None,
    strategy: str = "auto",
    max_memory: int | None = None,
    hvp: options.HvpBackendName | None = None,
) -> EigenResult:
    """``num_eigenpairs`` eigenpairs of the Hessian by thick-restart Lanczos, every pair
    checked in float64.

    The solver is :func:`landscape.linalg.lanczos_eigenpairs` on the
    :class:`HessianOperator`: a Krylov space grown from a random vector in a basis of at
    most ``3 k + 5`` vectors (``k = num_eigenpairs``; restarted in place from its best Ritz
    vectors when full), until every wanted Ritz pair has a residual estimate
    ``<= tol * ||H||`` (``||H||`` estimated by the largest Ritz value in magnitude); a
    final check from a fresh random vector (and a wider block where the wanted values
    cluster) looks for copies a single vector cannot see. The pairs are then verified with
    ``k`` explicit float64 HVPs: the eigenvalues reported are float64 Rayleigh quotients,
    the residuals float64 ``||H v - lambda v||``, and ``converged`` means every such
    residual is ``<= tol * ||H||``. Each eigenvalue is then within ``tol * ||H||`` of an
    eigenvalue of the Hessian, and within ``(tol * ||H||)**2 / gap`` when it is ``gap``
    away from the rest of the spectrum: the default ``tol=1e-4`` gives eigenvalues to about
    ``1e-8 ||H||**2 / gap``.

    Precision: products are computed in ``dtype`` (default the model's). Lower-precision
    products are verified with the operator's float64 twin (:meth:`HessianOperator.float64`:
    float64 copies of the point and of the cached data, built on first use); when their
    round-off keeps the float64 residuals above the tolerance, Lanczos continues in float64
    from the pairs found (``settings["num_hvps_float64"]`` counts those products). Near a
    minimum float32 products can be off by ~1e-3 of ``||H||`` along the top eigenvector,
    which no tolerance on float32 residuals catches.

    Products of ``hvp="fd"`` (see :class:`HessianOperator`): Lanczos runs to ``tol / 2``
    and each float64 residual ``r`` is widened by the measured error ``delta`` of the
    products that verified it (the float64 twin's for lower precision) to
    ``r + delta (|lambda| + r)``, a bound on ``||H v - lambda v||``; ``converged`` means
    those widened residuals are within ``tol * ||H||``, and is False (with a warning) where
    ``delta`` could not be measured.

    Memory, whatever ``max_hvps``: ``settings["memory_bound_bytes"]`` (and
    ``"memory_bound_vectors"``, in copies of the weights), the solver's bound from
    :func:`~landscape.linalg.lanczos_eigenpairs`: the basis, ``3 k + 5`` vectors of ``n``
    (the number of weights) in the operator's dtype (at least float32), or the ``k``
    returned float64 vectors and one product while verified, or a float64 refinement's
    basis. Each HVP adds the sum over batches (one float64 vector of ``n``, or one in the
    operator's dtype for data in one batch) and a batch's gradient graph; kept graphs take at most
    ``max_graph_bytes`` (see :class:`HessianOperator`). The float64 twin that verifies
    lower-precision products (:meth:`HessianOperator.float64`) adds float64 copies of the
    whole point (every tensor of the state, not only the ``n`` weights) and of the cached
    data's floating tensors, and graphs of its own within the same budget; it is built when
    the pairs are verified, after the working-dtype basis has shrunk to the ``k`` vectors.
    ``settings["planned_bytes"]`` adds an estimate of one HVP and the twin's weights to the
    solver's bound (graphs not counted): what the call holds.

    Strategy (:mod:`~landscape.hessian.planner`): before the first HVP the planner works
    out the bytes of each strategy ("thick-restart", the above; "host-basis", the same
    with the basis in (pinned) host memory, streamed to a GPU for each product with it;
    "two-pass", :func:`~landscape.linalg.two_pass_eigenpairs` in ``k + 4`` vectors at
    about twice the HVPs or more; "full-basis", a basis of ``max_hvps`` vectors, only when
    asked for) and
    takes the first that fits in ``max_memory``, or refuses with the numbers.
    ``settings["strategy"]`` and ``settings["planned_bytes"]`` record the choice and its
    bound (the solver's vectors and an estimate of one HVP's).

    Args:
        objective: an Objective, or a HessianOperator (then ``state``, ``params`` and
            ``dtype`` must be left out).
        num_eigenpairs: number of eigenpairs.
        which: "LA" largest algebraic, "SA" smallest algebraic, "LM" largest magnitude,
            "BE" both ends (``k // 2`` smallest and the rest largest).
        tol: residual tolerance relative to ``||H||``; default 1e-8 for float64 products
            and 1e-4 for lower precision.
        max_hvps: budget of HVPs, checks included; on running out a ``RuntimeWarning`` is
            issued and the result has ``converged=False``.
        seed: seed of the random start block.
        state, params, dtype: as in :class:`HessianOperator`.
        progress: show a tqdm bar of the HVPs (out of ``max_hvps``; most runs need fewer).
        k: the old name of ``num_eigenpairs``, still accepted (deprecated).
        strategy: "auto", "thick-restart", "host-basis", "two-pass" or "full-basis".
        max_memory: bytes the job may hold; default the device's free memory (the host's
            available memory on the CPU).
        hvp: the products of the operator built from an Objective (see
            :class:`HessianOperator`; default ``"exact"``). A model sharded by FSDP2 takes
            ``"fd"`` (or ``"auto"``): a :class:`ShardedHessianOperator` on each rank's local
            shards, collective, every dot product over the ranks (call it on every rank);
            the eigenvectors are then this rank's pieces (``shapes`` the pieces'), the
            strategy thick-restart or full-basis.

    Returns:
        an :class:`EigenResult`. If an HVP is not finite (a point where the loss overflows),
        eigenvalues, vectors and residuals are NaN.

    Raises:
        ValueError: ``num_eigenpairs`` not in ``1..n``, ``max_hvps < 2 num_eigenpairs``,
            ``tol`` negative, bad ``which`` or ``strategy``, or both ``k`` and
            ``num_eigenpairs`` given.
        RuntimeError: no strategy fits in ``max_memory`` (before any HVP).

    Example:
        >>> from torch import nn
        >>> from landscape.objective import Objective
        >>> x = torch.randn(20, 3, dtype=torch.float64)
        >>> objective = Objective(nn.Linear(3, 1).double(), (x, x.sum(1)), loss="mse")
        >>> result = hessian_eigenpairs(objective, num_eigenpairs=2)
        >>> result.converged, result.eigenvectors.shape
        (True, (2, 4))
    """
    k = _renamed(num_eigenpairs, k)
    op = resolve_operator(objective, state, params, dtype, hvp)
    n = op.num_params
    which = check_choice(which, options.Which, "which")
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the number of parameters {n}, got {k}")
    if max_hvps < 2 * k:
        raise ValueError(f"max_hvps must be at least 2 * k = {2 * k}, got {max_hvps}")
    plan = plan_for(op, "eigenpairs", max_memory, strategy, k=k, max_hvps=max_hvps)
    if isinstance(op, ShardedHessianOperator) and plan.choice == "two-pass":
        raise ValueError("expected strategy 'thick-restart' or 'full-basis' with a sharded "
                         "model, got 'two-pass' (it holds whole vectors)")  # fmt: skip
    solver_tol = tol
    if op.hvp == "fd":  # half the tolerance, the other half left to the products' error
        tol = (1e-8 if op.dtype == torch.float64 else 1e-4) if tol is None else tol
        solver_tol = tol / 2
    solve = {"which": which, "tol": solver_tol, "max_matvecs": max_hvps, "seed": seed}
    with progress_bar(progress, desc="eigenpairs", unit="HVP", total=max_hvps) as bar:
        if plan.choice == "two-pass":
            pairs = two_pass_eigenpairs(op, k, callback=bar.update, **solve)
        else:
            basis = max(min(max_hvps, n), k + 5) if plan.choice == "full-basis" else None
            pairs = lanczos_eigenpairs(op, k, max_basis=basis, callback=bar.update,
                                       host_basis=plan.choice == "host-basis", **solve)  # fmt: skip
    tol = pairs.settings["tol"] if tol is None else tol
    settings = {
        **op.settings,
        "k": k,
        "which": which,
        "tol": tol,
        "max_hvps": max_hvps,
        "seed": seed,
        "verify_dtype": pairs.settings["verify_dtype"],
        "num_hvps_float64": pairs.num_matvecs64,
        "memory_bound_bytes": pairs.memory_bound_bytes,
        "memory_bound_vectors": pairs.memory_bound_vectors,
        **plan_settings(plan, max_memory),
    }
    values, residuals = pairs.values, pairs.residuals
    converged, error = pairs.converged, op.hvp_error
    if op.hvp == "fd":
        residuals, converged, error = _widened(op, values, residuals, tol * pairs.norm)
        converged = converged and pairs.converged
    vectors = pairs.vectors.cpu().numpy()
    if np.isnan(values).any():
        warnings.warn(
            "a Hessian-vector product is not finite; returning NaN", RuntimeWarning, stacklevel=2
        )
    elif isinstance(error, str):
        warnings.warn(
            f"the error of the fd products is unknown ({error}); the eigenpairs are not "
            "verified: converged=False",
            RuntimeWarning,
            stacklevel=2,
        )
    elif not converged:
        warnings.warn(
            f"Lanczos stopped after {pairs.num_matvecs} HVPs with float64 residuals up to "
            f"{residuals.max():.3g}, above tol * ||H|| = {tol * pairs.norm:.3g}; raise "
            "max_hvps, or tol",
            RuntimeWarning,
            stacklevel=2,
        )
    if np.isfinite(vectors).all():
        if isinstance(op, ShardedHessianOperator):  # the whole rows' largest entries
            signs = op.signs(vectors)
        else:
            signs = np.sign(vectors[np.arange(k), np.abs(vectors).argmax(axis=1)])
        vectors = vectors * signs[:, None]
    return EigenResult(
        eigenvalues=values,
        eigenvectors=vectors,
        residuals=residuals,
        num_hvps=pairs.num_matvecs,
        converged=converged,
        names=op.names,
        shapes=dict(op.shapes),
        settings=settings,
        hvp=op.hvp,
        hvp_error=error,
    )


def _widened(
    op: HessianOperator, values: np.ndarray, residuals: np.ndarray, bound: float
) -> tuple[np.ndarray, bool, float | str]:
    """Residuals of pairs verified with ``fd`` products, widened by their measured error
    ``delta`` (of the products that verified them: the float64 twin's for lower precision):
    ``||H v - lambda v|| <= r + delta ||H_fd v|| <= r + delta (|lambda| + r)``; whether all
    are within ``bound``; and the error recorded (this operator's)."""
    checker = op.float64() if op.dtype != torch.float64 else op
    delta = checker.hvp_error
    if isinstance(delta, str):
        return residuals, False, op.hvp_error
    wide = residuals + delta * (np.abs(values) + residuals)
    return wide, bool(np.all(wide <= bound)), op.hvp_error


def _two(
    objective: Objective | HessianOperator,
    which: Which,
    state: Mapping[str, torch.Tensor] | None,
    params: ParamSelection,
    dtype: torch.dtype | None,
    options: dict,
) -> EigenResult:
    """Two eigenpairs at the ends ``which`` names, with the caller's options."""
    return hessian_eigenpairs(
        objective, num_eigenpairs=2, which=which, state=state, params=params, dtype=dtype,
        **options,
    )  # fmt: skip


def extreme_eigenvalues(
    objective: Objective | HessianOperator,
    *,
    tol: float | None = None,
    max_hvps: int = 500,
    seed: int = 0,
    state: Mapping[str, torch.Tensor] | None = None,
    params: ParamSelection = None,
    dtype: torch.dtype | None = None,
    progress: bool = True,
) -> ExtremeEigenvalues:
    """The largest and smallest Hessian eigenvalues from one Lanczos run (both ends converge
    together), and the ratio ``|lambda_min / lambda_max|`` of Li et al. (2018).

    Args:
        objective, tol, max_hvps, seed, state, params, dtype, progress: as in
            :func:`hessian_eigenpairs`.

    Returns:
        an :class:`ExtremeEigenvalues`.

    Example:
        >>> from torch import nn
        >>> from landscape.objective import Objective
        >>> x = torch.randn(20, 3, dtype=torch.float64)
        >>> objective = Objective(nn.Linear(3, 1).double(), (x, x.sum(1)), loss="mse")
        >>> extreme_eigenvalues(objective).lambda_min > 0  # least squares is convex
        True
    """
    options = {"tol": tol, "max_hvps": max_hvps, "seed": seed, "progress": progress}
    eigen = _two(objective, "BE", state, params, dtype, options)
    top, bottom = (float(v) for v in eigen.eigenvalues)
    return ExtremeEigenvalues(
        hvp=eigen.hvp,
        hvp_error=eigen.hvp_error,
        lambda_max=top,
        lambda_min=bottom,
        ratio=abs(bottom / top) if top != 0 else math.nan,
        residuals=eigen.residuals,
        num_hvps=eigen.num_hvps,
        converged=eigen.converged,
        settings=eigen.settings,
    )


def min_max_ratio(
    objective: Objective,
    state: Mapping[str, torch.Tensor] | None = None,
    *,
    params: ParamSelection = None,
    dtype: torch.dtype | None = None,
    tol: float = 1e-3,
    max_hvps: int = 200,
    seed: int = 0,
) -> float:
    """Li et al.'s convexity measure ``|lambda_min / lambda_max|`` at one point, cheaply.

    Meant to be called at every point of a surface, so the defaults are modest: with
    ``tol=1e-3`` each eigenvalue is within ``1e-3 * ||H||`` (far closer when it is isolated),
    so the ratio is within about ``1e-3`` *absolute*; for ratios below about ``10 * tol`` (a
    nearly convex point) pass a smaller ``tol``. NaN where an HVP is not finite.

    Args:
        objective: the loss and data.
        state: the point (default the model's own).
        params, dtype: as in :class:`HessianOperator`.
        tol, max_hvps, seed: as in :func:`hessian_eigenpairs`.

    Returns:
        the ratio, a float.
    """
    return extreme_eigenvalues(
        objective,
        tol=tol,
        max_hvps=max_hvps,
        seed=seed,
        state=state,
        params=params,
        dtype=dtype,
        progress=False,
    ).ratio


def hessian_directions(
    objective: Objective | HessianOperator,
    *,
    state: Mapping[str, torch.Tensor] | None = None,
    params: ParamSelection = None,
    dtype: torch.dtype | None = None,
    tol: float | None = None,
    max_hvps: int = 500,
    seed: int = 0,
    progress: bool = True,
) -> list[dict[str, torch.Tensor]]:
    """The top two Hessian eigenvectors as two direction states (``--directions hessian``).

    Args:
        objective, state, params, dtype, tol, max_hvps, seed, progress: as in
            :func:`hessian_eigenpairs`.

    Returns:
        ``[d_x, d_y]``, each ``{name: float64 CPU tensor}`` over the differentiated weights,
        unit norm together, orthogonal to each other.
    """
    options = {"tol": tol, "max_hvps": max_hvps, "seed": seed, "progress": progress}
    return _two(objective, "LA", state, params, dtype, options).as_states()
