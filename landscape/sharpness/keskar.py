"""Epsilon-sharpness of Keskar et al. (2017): the largest loss in a box, by L-BFGS-B."""

from __future__ import annotations

import numpy as np
import scipy.optimize
import torch

from .._progress import progress_bar
from .._provenance import provenance
from ..limits import check_limit, check_memory
from ..objective import Objective
from ..params import ParamSelection
from . import _checks
from ._evaluation import State, loss_and_grad, mean_loss, selection_setting, shifted, weights_of
from ._guards import check_slope
from ._random import draw_like
from ._stats import count_agreed
from .registry import register
from .result import SharpnessResult

__all__ = ["MAX_FULL_SPACE_PARAMS", "keskar_subspace", "measure_keskar"]

MAX_FULL_SPACE_PARAMS = 10_000_000
"""The most parameters :func:`measure_keskar` takes in the full space (``subspace_dim=None``)."""


def keskar_subspace(num_params: int, subspace_dim: int, *, seed: int) -> torch.Tensor:
    """The ``n x p`` matrix ``A`` of standard Gaussian entries (float64, CPU) that
    :func:`measure_keskar` uses with ``subspace_dim=p`` and this ``seed``.

    Example:
        >>> keskar_subspace(5, 2, seed=0).shape
        torch.Size([5, 2])
    """
    generator = torch.Generator().manual_seed(_checks.check_seed(seed))
    return _subspace(num_params, _checks.check_count("subspace_dim", subspace_dim), generator)


def _subspace(num_params: int, subspace_dim: int, generator: torch.Generator) -> torch.Tensor:
    check_memory(f"keskar's subspace ({num_params:,} x {subspace_dim:,} float64)",
                 num_params * subspace_dim * 8)  # fmt: skip
    return torch.randn(num_params, subspace_dim, generator=generator, dtype=torch.float64)


def measure_keskar(
    objective: Objective,
    *,
    eps: float = 1e-3,
    subspace_dim: int | None = None,
    num_iters: int = 10,
    num_restarts: int = 20,
    seed: int = 0,
    params: ParamSelection = None,
    progress: bool = True,
) -> SharpnessResult:
    """Epsilon-sharpness of Keskar et al. (2017), maximized with L-BFGS-B from several starts.

    ``100 (max_{z in C_eps} L(w + A z) - L(w)) / (1 + L(w))`` over the box
    ``C_eps = {z : |z_i| <= eps (|(A^+ w)_i| + 1)}``, ``A`` the identity (full space) or
    :func:`keskar_subspace`. The maximum of a non-concave function over a box has many
    local maxima (a convex quadratic has one at many vertices of the box), so L-BFGS-B
    runs from ``num_restarts`` starts: the corner the gradient at ``w`` points to (when it
    is not zero), then uniform random points of the box. The best maximum is kept, so the
    value is a LOWER BOUND of the true epsilon-sharpness; ``extra["num_agreed"]`` says how
    many starts came within 1% of the best rise (few means that more starts may find more).

    Args:
        objective: the loss and data; its model is never changed.
        eps: relative size of the box.
        subspace_dim: ``None`` for the full space (``A = I``), or ``p`` for a random subspace
            (``A`` an ``n x p`` matrix of standard Gaussian entries, stored densely). The
            full space takes at most :data:`MAX_FULL_SPACE_PARAMS` (10 million) parameters:
            L-BFGS-B runs on the host, with float64 copies of all of them at every iteration.
        num_iters: L-BFGS-B iterations per start (``maxiter``).
        num_restarts: number of starts.
        seed: seeds ``A`` and the random starts.
        params: perturb only these weights (names, glob patterns, a predicate or
            ``"trainable"``, see :func:`landscape.params.select_names`); the others stay.
        progress: show a tqdm bar of the starts.

    Returns:
        A deterministic :class:`SharpnessResult` named ``"keskar"`` (``stderr`` 0); ``extra``
        holds ``loss``, ``max_loss`` and ``num_agreed``. A
        :class:`~landscape.sharpness.NotAMinimumWarning` is issued when the first-order rise
        over the box, ``sum_i bound_i |(A^T grad L)_i|``, is over half of
        ``max_loss - loss``.

    Raises:
        ValueError: a non-positive ``eps`` or count, or more than
            :data:`MAX_FULL_SPACE_PARAMS` parameters in the full space (checked before any
            work).
        TypeError: a count or seed that is not an integer.

    Example:
        >>> from landscape.sharpness._example import example_objective
        >>> measure_keskar(example_objective()).value > 0
        True
    """
    _checks.check_objective(objective)
    eps = _checks.check_positive("eps", eps)
    num_iters = _checks.check_count("num_iters", num_iters)
    num_restarts = _checks.check_count("num_restarts", num_restarts)
    seed = _checks.check_seed(seed)
    weights = weights_of(objective, params)
    names = list(weights)
    num_params = sum(w.numel() for w in weights.values())
    if subspace_dim is None and num_params > MAX_FULL_SPACE_PARAMS:
        raise ValueError(
            f"keskar in the full space runs L-BFGS-B on the host with float64 vectors of all "
            f"{num_params:,} perturbed parameters, over the bound of {MAX_FULL_SPACE_PARAMS:,} "
            "(MAX_FULL_SPACE_PARAMS); pass subspace_dim= (a random subspace, e.g. 100) or "
            "params= fewer weights, or use 'worst_linf' (Auto-PGD on the weights' device)"
        )
    x = torch.cat([w.reshape(-1).to(torch.float64).cpu() for w in weights.values()])
    generator = torch.Generator().manual_seed(seed)
    if subspace_dim is None:
        matrix = None
        centre = x
    else:
        subspace_dim = _checks.check_count("subspace_dim", subspace_dim)
        check_limit("subspace dimensions (one per weight moved at most)", subspace_dim, len(x))
        matrix = _subspace(len(x), subspace_dim, generator)
        centre = torch.linalg.pinv(matrix) @ x
    bound = eps * (centre.abs() + 1)
    data = list(objective.batches())

    def point(z: np.ndarray) -> State:
        step = torch.from_numpy(z)
        flat = step if matrix is None else matrix @ step
        parts = torch.split(flat, [w.numel() for w in weights.values()])
        delta = {
            n: p.reshape(weights[n].shape).to(weights[n].device, weights[n].dtype)
            for n, p in zip(names, parts, strict=True)
        }
        return shifted(weights, delta)

    def negative(z: np.ndarray) -> tuple[float, np.ndarray]:
        """L-BFGS-B runs on the host: the loss and gradient are read once per evaluation."""
        loss, grad = loss_and_grad(objective, point(z), data)
        flat = torch.cat([grad[n].reshape(-1).to(torch.float64).cpu() for n in names])
        if matrix is not None:
            flat = matrix.T @ flat
        return -float(loss), -flat.numpy()

    loss = mean_loss(objective, weights)
    _, slope = negative(np.zeros(len(bound)))
    starts = []
    if np.any(slope != 0):  # the corner the gradient points to
        starts.append(np.where(slope <= 0, 1.0, -1.0) * bound.numpy())
    while len(starts) < num_restarts:
        starts.append((draw_like({"z": bound}, generator, "uniform")["z"] * bound).numpy())
    box = scipy.optimize.Bounds(-bound.numpy(), bound.numpy())
    max_losses = np.empty(len(starts))
    with progress_bar(progress, desc="keskar", unit="start", total=len(starts)) as bar:
        for i, start in enumerate(starts):
            options = {"maxiter": num_iters}
            found = scipy.optimize.minimize(
                negative, start, jac=True, method="L-BFGS-B", bounds=box, options=options
            )
            max_losses[i] = -float(found.fun)  # L-BFGS-B never ends below its start
            bar.update()
    max_loss = float(max_losses.max())
    value = 100 * (max_loss - loss) / (1 + loss)
    check_slope("keskar", float(np.abs(slope) @ bound.numpy()), max_loss - loss)
    settings = {
        **provenance(objective),
        **selection_setting(objective, params, weights),
        "eps": eps,
        "subspace_dim": subspace_dim,
        "num_iters": num_iters,
        "num_restarts": num_restarts,
        "seed": seed,
    }
    extra = {
        "loss": loss,
        "max_loss": max_loss,
        "num_agreed": float(count_agreed(max_losses - loss)),
    }
    return SharpnessResult("keskar", value, 0.0, settings, extra)


register(
    "keskar",
    measure_keskar,
    defaults={
        "eps": 1e-3,
        "subspace_dim": None,
        "num_iters": 10,
        "num_restarts": 20,
        "seed": 0,
        "params": None,
    },
)
