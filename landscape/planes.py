"""Planes worth looking at besides random ones: through three checkpoints, along curvature.

- :func:`checkpoint_plane`: the plane through three checkpoints (Garipov et al. 2018), with
  origin at the first, an orthonormal basis (so distances in the plane are distances in
  parameter space) and the three points' coordinates; a surface over it shows the three
  models, each at its own loss.
- :func:`curvature_directions`: the plane along the Hessian eigenvectors of the largest and
  the most negative eigenvalue, which shows a saddle that random planes hide (Boettcher &
  Wheeler 2022, "Visualizing high-dimensional loss landscapes with Hessian directions").
- :func:`chance_curvature`: what a random plane shows instead. Along a direction ``d``
  drawn uniformly at random, the curvature ``d^T H d / |d|^2`` has mean ``tr(H) / N``
  (``N`` parameters) and concentrates there as ``N`` grows, whatever the extreme
  eigenvalues; this puts that number, and the curvatures along given directions, beside
  the true ``lambda_max`` and ``lambda_min``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from . import options
from .checks import check_choice
from .directions import Directions
from .params import merge_tied, tied_names
from .results import Result

if TYPE_CHECKING:
    from .objective import Objective

State = dict[str, torch.Tensor]

__all__ = [
    "ChanceCurvature",
    "CheckpointPlane",
    "chance_curvature",
    "checkpoint_plane",
    "curvature_directions",
    "directional_curvature",
]


# ---------------------------------------------------------------- three checkpoints
@dataclass(frozen=True, eq=False)
class CheckpointPlane(Result):
    """The plane through three checkpoints; compared by value.

    Attributes:
        directions: orthonormal ``x`` (from the first point towards the second) and ``y``
            (in the plane, orthogonal to ``x``), kind ``"checkpoints"``.
        origin: the first checkpoint's complete state: evaluate a surface around it, e.g.
            ``compute_surface(Objective(model, data).at(plane.origin), plane.directions,
            x, y)``.
        coords: float64 ``(3, 2)``: the three points' coordinates, ``(0, 0)``,
            ``(|b - a|, 0)`` and ``(<c - a, x>, <c - a, y>)``.
        settings: ``dir_type`` (the one used, also when chosen by default), the
            coordinates, and ``buffers="kept at a"`` for ``"weights"`` on a model with
            floating buffers.
    """

    directions: Directions
    origin: State
    coords: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)

    def project(self, states: Sequence[nn.Module | Mapping[str, torch.Tensor]]) -> np.ndarray:
        """Coordinates ``(<s - origin, x>, <s - origin, y>)`` of states, float64 ``(n, 2)``
        (the closest point of the plane, the basis being orthonormal)."""
        names = list(self.directions.x)
        basis = [_flat(self.directions.x, names), _flat(self.directions.y, names)]
        centre = _flat(self.origin, names)
        rows = []
        for s in states:
            s = s.state_dict() if isinstance(s, nn.Module) else s
            delta = _flat(s, names) - centre
            rows.append([float(delta @ basis[0]), float(delta @ basis[1])])
        return np.asarray(rows, dtype=np.float64).reshape(-1, 2)


def _flat(state: Mapping[str, torch.Tensor], names: Sequence[str]) -> torch.Tensor:
    return torch.cat([state[n].detach().reshape(-1).double().cpu() for n in names])


def checkpoint_plane(
    model: nn.Module,
    checkpoints: Sequence[nn.Module | Mapping[str, torch.Tensor]],
    *,
    dir_type: Literal["weights", "states"] | None = None,
) -> CheckpointPlane:
    """The plane through three checkpoints ``[a, b, c]`` (Garipov et al. 2018).

    The basis is found in float64: ``x = (b - a) / |b - a|``, ``y`` the part of ``c - a``
    orthogonal to ``x``, normalized; the directions are then cast to the model's dtypes.

    Args:
        model: the architecture (its parameter names say what ``"weights"`` are).
        checkpoints: three models or state_dicts ``[a, b, c]``.
        dir_type: ``"weights"`` (parameters; buffers stay as in ``a``, so ``b`` and ``c``
            are evaluated with ``a``'s BatchNorm statistics) or ``"states"`` (floating
            buffers too, e.g. BatchNorm running statistics: each checkpoint at its own
            loss). ``None`` (the default, 0.3) means ``"states"`` when the model has
            floating buffers and every checkpoint holds them, ``"weights"`` otherwise;
            the choice is ``settings["dir_type"]``, recorded in a surface's file and
            named in its axis labels.

    Returns:
        A :class:`CheckpointPlane`.

    Raises:
        ValueError: not three checkpoints, names or shapes that differ from the model's,
            or three points on one line (or two equal).

    Example:
        >>> model = nn.Linear(1, 1, bias=False)
        >>> a, b, c = ({"weight": torch.tensor([[v]])} for v in (0.0, 3.0, 1.0))
        >>> checkpoint_plane(model, [a, b, c])  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ValueError: the three checkpoints lie on one line
    """
    if dir_type is not None:
        dir_type = check_choice(dir_type, options.DirType, "dir_type")
    if len(checkpoints) != 3:
        raise ValueError(f"expected three checkpoints [a, b, c], got {len(checkpoints)}")
    reference = model.state_dict()
    tied = tied_names(model)  # a tied tensor counts once, under its first name
    states: list[State] = []
    for i, c in enumerate(checkpoints):
        state = dict(c.state_dict() if isinstance(c, nn.Module) else c)
        for name, t in state.items():
            if name not in reference:
                raise ValueError(f"checkpoint {i} has {name!r}, which the model lacks")
            if tuple(t.shape) != tuple(reference[name].shape):
                raise ValueError(
                    f"checkpoint {i}: {name!r} has shape {tuple(t.shape)}, the model's has "
                    f"{tuple(reference[name].shape)}"
                )
        states.append(merge_tied(state, tied))
    buffers = _floating_buffers(model, reference, tied)
    if dir_type is None:
        dir_type = _default_dir_type(buffers, states)
    if dir_type == "weights":
        candidates = [n for n, p in model.named_parameters() if p.is_floating_point()]
    else:
        candidates = [n for n, t in reference.items() if t.is_floating_point() and n not in tied]
    missing = [n for n in candidates for s in states if n not in s]
    if missing:
        raise ValueError(f"a checkpoint lacks {missing[0]!r}; give complete state_dicts")
    a, b, c = (_flat(s, candidates) for s in states)
    ab, ac = b - a, c - a
    length = float(torch.linalg.vector_norm(ab))
    if length == 0.0:
        raise ValueError("the first two checkpoints are equal; a plane needs three distinct points")
    u = ab / length
    along = float(ac @ u)
    w = ac - along * u
    height = float(torch.linalg.vector_norm(w))
    if height <= 1e-12 * max(float(torch.linalg.vector_norm(ac)), length):
        raise ValueError("the three checkpoints lie on one line; a plane needs three that do not")
    v = w / height
    like = {n: reference[n] for n in candidates}
    x = _unflat(u, like, candidates)
    y = _unflat(v, like, candidates)
    coords = np.array([[0.0, 0.0], [length, 0.0], [along, height]])
    settings: dict[str, Any] = {"dir_type": dir_type, "norm": "none", "coords": coords.tolist()}
    if dir_type == "weights" and buffers:  # said in the axis labels of its surfaces
        settings["buffers"] = "kept at a"
    directions = Directions(x, y, kind="checkpoints", settings=settings)
    origin = {n: t.detach().clone() for n, t in states[0].items()}
    for name, t in reference.items():  # a partial state_dict: the model's values
        if name not in tied:
            origin.setdefault(name, t.detach().clone())
    return CheckpointPlane(directions, origin, coords, dict(settings))


def _floating_buffers(
    model: nn.Module, reference: Mapping[str, torch.Tensor], tied: Mapping[str, str]
) -> list[str]:
    """The names of the model's floating buffers (BatchNorm running statistics, ...)."""
    skip = {n for n, _ in model.named_parameters()} | set(tied)
    return [n for n, t in reference.items() if t.is_floating_point() and n not in skip]


def _default_dir_type(
    buffers: Sequence[str], states: Sequence[Mapping[str, torch.Tensor]]
) -> Literal["weights", "states"]:
    """``"states"`` when the model has floating buffers and every checkpoint holds them,
    else ``"weights"`` (with a warning when a checkpoint lacks them)."""
    if not buffers:
        return "weights"
    if all(n in s for s in states for n in buffers):
        return "states"
    warnings.warn(
        f"the model has floating buffers ({buffers[0]!r}, ...) that a checkpoint lacks: the "
        "plane moves the weights only and every point keeps the first checkpoint's buffers; "
        "give complete state_dicts for dir_type='states'",
        RuntimeWarning,
        stacklevel=3,
    )
    return "weights"


def _unflat(vector: torch.Tensor, like: Mapping[str, torch.Tensor], names: Sequence[str]):
    out, offset = {}, 0
    for name in names:
        ref = like[name]
        part = vector[offset : offset + ref.numel()].reshape(ref.shape)
        out[name] = part.to(device=ref.device, dtype=ref.dtype)
        offset += ref.numel()
    return out


# ---------------------------------------------------------------- curvature
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
    from .hessian import hessian_eigenpairs

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
        ValueError: the direction is zero, or has names the model lacks.

    Example:
        >>> from landscape import Objective
        >>> x = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
        >>> model = nn.Linear(1, 1, bias=False).double()
        >>> objective = Objective(model, (x, torch.zeros(2, 1, dtype=torch.float64)), loss="mse")
        >>> directional_curvature(objective, {"weight": torch.ones(1, 1)})  # 2 * mean(x^2)
        5.0
    """
    base = objective.base_state
    unknown = set(direction) - set(base)
    if unknown:
        raise ValueError(f"direction has names the model lacks: {sorted(unknown)[:5]}")
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
    from .hessian import hessian_eigenpairs, hessian_trace

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
