"""Planes along curvature, and what a random plane shows instead.

- :func:`curvature_directions`: the plane along the Hessian eigenvectors of the largest and
  the most negative eigenvalue, which shows a saddle that random planes hide (Boettcher &
  Wheeler 2022, "Visualizing high-dimensional loss landscapes with Hessian directions").
- :func:`chance_curvature`: what a random plane shows instead. Along a direction ``d``
  drawn uniformly at random, the curvature ``d^T H d / |d|^2`` has mean ``tr(H) / N``
  (``N`` parameters) and concentrates there as ``N`` grows, whatever the extreme
  eigenvalues; this puts that number, and the curvatures along given directions
  (:func:`directional_curvature`), beside the true ``lambda_max`` and ``lambda_min``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..checks import check_state
from ..results import Result
from .core import Directions

if TYPE_CHECKING:
    from ..objective import Objective

__all__ = ["ChanceCurvature", "chance_curvature", "curvature_directions", "directional_curvature"]


def curvature_directions(
    objective: Objective,
    *,
    seed: int = 0,
    tol: float | None = None,
    max_hvps: int = 500,
    dtype: torch.dtype | None = None,
) -> Directions:
    """The plane along the Hessian eigenvectors of ``lambda_max`` (x) and ``lambda_min``
    (y) at the objective's base state (Boettcher & Wheeler 2022).

    A negative ``lambda_min`` shows as a saddle in this plane: the loss falls along y. The
    eigenvectors have unit norm, so coordinates are distances in parameter space, and the
    loss along x (y) curves as ``lambda_max`` (``lambda_min``) near the centre.

    Args:
        objective: the model, data and loss at the point.
        seed, tol, max_hvps, dtype: as in :func:`landscape.hessian_eigenpairs`.

    Returns:
        :class:`~landscape.directions.Directions` of kind ``"curvature"``; ``settings``
        holds ``lambda_max``, ``lambda_min``, their residuals and the options.
    """
    from ..hessian import hessian_eigenpairs  # a workflow above directions: imported late

    eigen = hessian_eigenpairs(
        objective, k=2, which="BE", seed=seed, tol=tol, max_hvps=max_hvps, dtype=dtype
    )
    base = objective.base_state
    top, bottom = (
        {n: t.to(device=base[n].device, dtype=base[n].dtype) for n, t in s.items()}
        for s in (eigen.as_state(0), eigen.as_state(1))
    )
    settings = {
        "lambda_max": float(eigen.eigenvalues[0]),
        "lambda_min": float(eigen.eigenvalues[1]),
        "residuals": [float(r) for r in eigen.residuals],
        "converged": bool(eigen.converged),
        "seed": int(seed),
        "norm": "none",
        "dir_type": "weights",
    }
    return Directions(top, bottom, kind="curvature", settings=settings)


def directional_curvature(objective: Objective, direction: Mapping[str, torch.Tensor]) -> float:
    """The curvature of the loss along a direction at the base state, ``d^T H d / |d|^2``:
    the exact second derivative of ``s -> L(theta + s d)`` at 0 (autograd twice, summed
    over the whole data), divided by ``|d|^2``.

    Raises:
        ValueError: the direction is zero, or has names or shapes the model's state lacks.

    Example:
        >>> from torch import nn
        >>> from landscape.objective import Objective
        >>> x = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
        >>> model = nn.Linear(1, 1, bias=False).double()
        >>> objective = Objective(model, (x, torch.zeros(2, 1, dtype=torch.float64)), loss="mse")
        >>> directional_curvature(objective, {"weight": torch.ones(1, 1)})  # 2 * mean(x^2)
        5.0
    """
    objective.check_differentiable()  # a sharded model: refused before any work
    base = objective.base_state
    check_state(direction, base, name="the direction", missing=False)
    moved = {
        n: d.detach().to(device=base[n].device, dtype=base[n].dtype)
        for n, d in direction.items()
        if base[n].is_floating_point()
    }
    norm2 = sum(float((d.double() ** 2).sum()) for d in moved.values())
    if norm2 == 0.0:
        raise ValueError("the direction is zero; its curvature is undefined")
    total = torch.zeros((), dtype=torch.float64, device=objective.device)
    for batch in objective.batches():
        s = torch.zeros((), dtype=objective.dtype, device=objective.device, requires_grad=True)
        state = objective.full_state({n: base[n] + s * d for n, d in moved.items()})
        sums, _ = objective.batch_sums(state, batch, with_metrics=False)
        (slope,) = torch.autograd.grad(sums["loss"], s, create_graph=True)
        if slope.requires_grad:
            (second,) = torch.autograd.grad(slope, s)
            total += second.detach().double()
    total = objective.all_reduce(total)
    return float(total) / objective.num_examples / norm2


@dataclass(frozen=True, eq=False)
class ChanceCurvature(Result):
    """The curvature a random plane shows by chance, beside the true extreme eigenvalues.

    Attributes:
        expected: ``tr(H) / N``, the mean curvature along a uniformly random direction.
        expected_stderr: its standard error (from the trace estimate).
        lambda_max, lambda_min: the extreme Hessian eigenvalues.
        num_params: ``N``, the number of differentiated parameters.
        along: the curvature ``d^T H d / |d|^2`` along each given direction (``()`` if none).
        settings: the options (``num_probes``, ``seed``, trace method).
    """

    expected: float
    expected_stderr: float
    lambda_max: float
    lambda_min: float
    num_params: int
    along: tuple[float, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)


def chance_curvature(
    objective: Objective,
    directions: Directions | Sequence[Mapping[str, torch.Tensor]] | None = None,
    *,
    num_probes: int = 99,
    seed: int = 0,
    dtype: torch.dtype | None = None,
) -> ChanceCurvature:
    """``tr(H) / N`` (what a random plane shows), the curvature along given directions, and
    the true ``lambda_max`` and ``lambda_min``.

    Args:
        objective: the model, data and loss at the point.
        directions: the plane's directions (a Directions or a list of states), or None.
        num_probes: Hessian-vector products for the trace (Hutch++, exact once
            ``num_probes >= 3 N``).
        seed: seed of the trace probes and the Lanczos start.
        dtype: as in :func:`landscape.hessian_trace`.

    Returns:
        A :class:`ChanceCurvature`.
    """
    from ..hessian import hessian_eigenpairs, hessian_trace  # as above

    eigen = hessian_eigenpairs(objective, k=2, which="BE", seed=seed, dtype=dtype)
    num_params = int(sum(math.prod(s) for s in eigen.shapes.values()))
    trace = hessian_trace(objective, num_probes=num_probes, seed=seed, dtype=dtype)
    if isinstance(directions, Directions):
        directions = [d for d in (directions.x, directions.y) if d is not None]
    along = tuple(directional_curvature(objective, d) for d in directions or ())
    settings = {"num_probes": int(num_probes), "seed": int(seed), "method": trace.method}
    return ChanceCurvature(
        expected=trace.value / num_params,
        expected_stderr=trace.stderr / num_params,
        lambda_max=float(eigen.eigenvalues[0]),
        lambda_min=float(eigen.eigenvalues[1]),
        num_params=num_params,
        along=along,
        settings=settings,
    )
