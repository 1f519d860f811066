"""Loss and metrics along a path, its loss barrier, and the whole study in one call."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..alignment import Repairer, align_states
from ..checks import check_choice, check_flag
from ..limits import MAX_POINTS, check_limit
from ..options import AlignMethod, AlignMethodName, Repair, RepairName
from .bn import _BatchNormEstimator
from .curves import Connection, Curve, CurveKind, PathResult, _as_state, _check_kind
from .fitting import fit_curve

if TYPE_CHECKING:
    from ..objective import Objective

__all__ = ["connect_checkpoints", "evaluate_path", "loss_barrier"]


# ---------------------------------------------------------------- barrier
def loss_barrier(t: Any, loss: Any) -> tuple[float, float]:
    """The loss barrier of a path and where it is: ``max_t [loss(t) - ((1 - t) loss(0) +
    t loss(1))]`` and its ``t`` (Frankle et al. 2020).

    Args:
        t: increasing values from 0 to 1 (both included).
        loss: the loss at each ``t``.

    Returns:
        ``(barrier, barrier_t)``; NaN values are skipped (all NaN: ``(nan, nan)``).

    Raises:
        ValueError: ``t`` does not run from 0 to 1, or the lengths differ.

    Example:
        >>> loss_barrier([0.0, 0.5, 1.0], [1.0, 4.0, 3.0])
        (2.0, 0.5)
    """
    t = np.asarray(t, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    if t.ndim != 1 or loss.shape != t.shape or len(t) < 2:
        raise ValueError(
            f"expected t and loss of one equal length >= 2, got {t.shape}, {loss.shape}"
        )
    if t[0] != 0.0 or t[-1] != 1.0 or np.any(np.diff(t) <= 0):
        raise ValueError(f"t must increase from 0 to 1, got {t[0]} .. {t[-1]}")
    excess = loss - ((1 - t) * loss[0] + t * loss[-1])
    if not np.isfinite(excess).any():
        return float("nan"), float("nan")
    i = int(np.nanargmax(excess))  # the ends have excess 0, so the barrier is >= 0
    return float(excess[i]), float(t[i])


# ---------------------------------------------------------------- evaluation
def _grid(t: Any) -> np.ndarray:
    if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
        if t < 2:
            raise ValueError(f"a path needs at least 2 points, got {t}")
        check_limit("path points", int(t), MAX_POINTS)
        return np.linspace(0.0, 1.0, int(t))
    grid = np.asarray(t, dtype=np.float64)
    if grid.ndim != 1 or len(grid) < 2 or grid[0] != 0.0 or grid[-1] != 1.0:
        raise ValueError(f"t must be a count or values from 0 to 1 (both included), got {t!r}")
    if np.any(np.diff(grid) <= 0):
        raise ValueError("t must be increasing")
    return grid


def evaluate_path(
    objective: Objective,
    curve: Curve,
    t: Any = 25,
    *,
    bn_reestimate: bool = False,
    repair: RepairName | None = None,
) -> PathResult:
    """Loss and metrics along a curve, and its loss barrier.

    Args:
        objective: the model and the evaluation data.
        curve: from :func:`fit_curve` (or ``Curve("line", a, b)``).
        t: a number of evenly spaced points, or increasing values from 0 to 1.
        bn_reestimate: recompute the BatchNorm running statistics at every point, the ends
            included (:func:`reestimate_bn`); the same as ``repair="reset_bn"``.
        repair: ``None``, ``"reset_bn"`` (as ``bn_reestimate=True``) or ``"repair"``:
            REPAIR at every interior point, each layer's units rescaled to the interpolated
            statistics of the ends (:class:`landscape.alignment.Repairer`, Jordan et al.
            2023).

    Returns:
        A :class:`PathResult` (``settings``: ``bn_reestimate``, ``repair`` when given, and
        the curve's settings).

    Raises:
        ValueError: an unknown ``repair``, or ``bn_reestimate=True`` with ``"repair"``.

    Example:
        >>> from landscape import Objective
        >>> model = nn.Linear(2, 1)
        >>> objective = Objective(model, (torch.ones(4, 2), torch.zeros(4, 1)), loss="mse")
        >>> zero = {n: torch.zeros_like(p) for n, p in model.state_dict().items()}
        >>> path = evaluate_path(objective, Curve("line", model.state_dict(), zero), 5)
        >>> float(path.loss[-1]), path.barrier
        (0.0, 0.0)
    """
    grid = _grid(t)
    if repair is not None:
        repair = check_choice(repair, Repair, "repair")
        if bn_reestimate and repair == Repair.REPAIR:
            raise ValueError("expected bn_reestimate=True or repair='repair', got both")
    reset = bool(bn_reestimate) or repair == Repair.RESET_BN
    estimator = _BatchNormEstimator(objective) if reset else None
    repairer = Repairer(objective, curve.start, curve.end) if repair == Repair.REPAIR else None
    values: dict[str, list[float]] = {name: [] for name in objective.names}
    for ti in grid:
        state = curve.point(float(ti))
        if repairer is not None:
            state = repairer(state, float(ti))
        if estimator is not None:
            state = estimator(state)
        for name, value in objective(state).items():
            values[name].append(value)
    metrics = {name: np.asarray(v, dtype=np.float64) for name, v in values.items()}
    barrier, barrier_t = loss_barrier(grid, metrics["loss"])
    settings = {**curve.settings, "bn_reestimate": reset}
    if repair is not None:
        settings["repair"] = str(repair)
    return PathResult(curve.kind, grid, metrics, barrier, barrier_t, settings)


def connect_checkpoints(
    objective: Objective,
    start: nn.Module | Mapping[str, torch.Tensor],
    end: nn.Module | Mapping[str, torch.Tensor],
    *,
    curve: CurveKind = "bezier",
    t: Any = 25,
    bn_reestimate: bool = False,
    repair: RepairName | None = None,
    align: AlignMethodName | None = None,
    align_seed: int = 0,
    residual: bool = False,
    fit_objective: Objective | None = None,
    **fit_options: Any,
) -> Connection:
    """The straight line between two checkpoints and, unless ``curve="line"``, a fitted
    curve: loss and metrics along both and their barriers.

    With ``align``, ``end`` is first permuted into ``start``'s frame
    (:func:`landscape.align`, on the objective's data for ``"activations"``); the line and
    the curve then join ``start`` to the aligned ``end``, and the line between the
    checkpoints as given is kept in ``Connection.unaligned`` (kind ``"unaligned"``,
    evaluated with the same ``repair``; also in ``Connection.paths``): the barrier before
    alignment is ``connection.unaligned.barrier``, after it ``connection.line.barrier``.

    Args:
        objective: model and evaluation data.
        start, end: the checkpoints.
        curve: ``"bezier"``, ``"polychain"`` or ``"line"`` (the line only).
        t, bn_reestimate, repair: as in :func:`evaluate_path`.
        align: ``None``, ``"weights"`` or ``"activations"``.
        align_seed: weight matching's order of the groups.
        residual: with ``align``, for Hugging Face GPT-2 and Llama, permute the residual
            stream too (as in :func:`landscape.align`; recorded in the settings only when
            ``True``).
        fit_objective: the objective the curve is fitted on (default ``objective``), e.g.
            one in train mode for a BatchNorm network.
        **fit_options: options of :func:`fit_curve` (``num_steps``, ``lr``, ``seed``, ...).

    Returns:
        A :class:`Connection`. With a fitted curve, each path's ``settings`` also hold
        ``plane_coords`` (float64 ``(3, 2)``: a, b and the bend in their plane, see
        :func:`landscape.planes.checkpoint_plane`) and ``xy`` (the path's points in that
        plane), for drawing the curve over a surface of the plane. With ``align``, both
        paths' ``settings`` hold ``align`` (the method) and, when set, ``residual``; the
        line's also ``barrier_unaligned`` and ``permutations`` (``{group: int64 array}``,
        enough to rebuild the aligned ``end`` with
        :func:`landscape.alignment.permute_state`).
    """
    _check_kind(curve)
    a, b = _as_state(objective, start, "start"), _as_state(objective, end, "end")

    def along(path: Curve) -> PathResult:
        return evaluate_path(objective, path, t, bn_reestimate=bn_reestimate, repair=repair)

    unaligned = alignment = None
    residual = check_flag(residual, "residual")
    tag = {"residual": True} if residual else {}  # absent when False: older settings alike
    if align is not None:
        method = check_choice(align, AlignMethod, "align")
        unaligned = dataclasses.replace(along(Curve("line", a, b, None, {})), kind="unaligned")
        alignment = align_states(
            objective.model, a, b, method=method, data=objective.batches(), seed=align_seed,
            residual=residual,
        )  # fmt: skip
        b = alignment.state
        end = b
    line_path = along(Curve("line", a, b, None, {}))
    if alignment is not None and unaligned is not None:
        extra = {
            "align": alignment.method,
            **tag,
            "barrier_unaligned": unaligned.barrier,
            "permutations": {g: p.numpy() for g, p in alignment.permutations.items()},
        }
        line_path = dataclasses.replace(line_path, settings={**line_path.settings, **extra})
    if curve == "line":
        return Connection(line_path, unaligned=unaligned, alignment=alignment)
    fitted = fit_curve(fit_objective or objective, start, end, kind=curve, **fit_options)
    curve_path = along(fitted)
    if alignment is not None:
        curve_path = dataclasses.replace(
            curve_path, settings={**curve_path.settings, "align": alignment.method, **tag}
        )
    coords = _plane_coords(objective.model, fitted)
    if coords is not None:  # both paths drawn in the plane of (a, b, bend)
        line_path, curve_path = (
            dataclasses.replace(
                p,
                settings={
                    **p.settings,
                    "plane_coords": coords,
                    "xy": _plane_xy(p.kind, coords, p.t),
                },
            )
            for p in (line_path, curve_path)
        )
    return Connection(line_path, curve_path, fitted, unaligned, alignment)


def _plane_coords(model: nn.Module, curve: Curve) -> np.ndarray | None:
    """Coordinates ``(3, 2)`` of ``a``, ``b`` and the bend in their plane (None when the
    three are on one line, as for an unfitted curve)."""
    from ..directions import checkpoint_plane

    bend = {**curve.start, **(curve.bend or {})}
    try:
        return checkpoint_plane(model, [curve.start, curve.end, bend], dir_type="weights").coords
    except ValueError:
        return None


def _plane_xy(kind: str, coords: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The points of a curve at ``t`` in the plane of (a, b, bend), float64 ``(n, 2)``: the
    curve is an affine combination of the three, and so is its projection."""
    a, b, bend = coords
    t = np.asarray(t, dtype=np.float64)[:, None]
    if kind == "line":
        return (1 - t) * a + t * b
    if kind == "bezier":
        return (1 - t) ** 2 * a + 2 * t * (1 - t) * bend + t**2 * b
    first = a + 2 * t * (bend - a)
    second = bend + (2 * t - 1) * (b - bend)
    return np.where(t < 0.5, first, second)
