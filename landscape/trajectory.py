"""A training trajectory on the plane of its top two principal directions (Li et al. 2018).

:func:`trajectory_plane` takes the checkpoints of a run, finds the PCA plane of
``theta_t - theta_final`` (:func:`landscape.pca_directions`), projects every checkpoint
onto it, and evaluates the loss surface over a grid that covers the projected path. It
also says what the projection hides: for each checkpoint, its own loss (``true``) beside
the loss at its projected point of the plane (``projected``), which differ as much as the
run leaves the plane. The axes' explained variance ratios say how much of the run the
plane holds.

This module is the workflow; its parts live by job and are importable from here as in
version 0.2: the plane in :mod:`landscape.directions.trajectory`, :class:`Trajectory` in
:mod:`landscape.results.trajectory`, the file layout in :mod:`landscape.storage.trajectory`,
:func:`save_trajectory` and :func:`load_trajectory` in :mod:`landscape.io`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .directions.trajectory import run_states, trajectory_directions
from .io import load_trajectory, save_trajectory
from .limits import MAX_POINTS, check_limit
from .options import IgnoreName
from .params import tied_names
from .results.trajectory import Trajectory
from .surface import compute_surface

if TYPE_CHECKING:
    from .objective import Objective

__all__ = ["Trajectory", "load_trajectory", "save_trajectory", "trajectory_plane"]


def _span(values: np.ndarray, margin: float, num: int) -> np.ndarray:
    low, high = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
    pad = margin * (high - low) if high > low else 1.0
    return np.linspace(low - pad, high + pad, num)


def trajectory_plane(
    objective: Objective,
    checkpoints: Sequence[nn.Module | Mapping[str, torch.Tensor]],
    *,
    steps: Sequence[float] | None = None,
    x: Any = None,
    y: Any = None,
    num_points: int = 21,
    margin: float = 0.25,
    ignore: IgnoreName = "biasbn",
    surface: bool = True,
    path: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> Trajectory:
    """A run's PCA plane around its final checkpoint, the path on it and the surface.

    Args:
        objective: the model (its architecture) and the evaluation data; its own weights
            are not used: the plane is centred on the last checkpoint.
        checkpoints: the run, in order (models or state_dicts), at least three.
        steps: a label per checkpoint (step or epoch); default ``0, 1, ...``.
        x, y: the grid's coordinates; default ``num_points`` values covering the path and
            the centre with a ``margin`` (a fraction of the span) on each side.
        num_points, margin: the default grid.
        ignore: as in :func:`landscape.pca_directions`.
        surface: compute the surface (otherwise only the path and its losses).
        path: HDF5 file for the surface (resumable) and ``/trajectory``.
        overwrite, progress: as in :func:`landscape.compute_surface`.

    Returns:
        A :class:`Trajectory`.

    Raises:
        ValueError: fewer than three checkpoints, or ``steps`` of another length.
    """
    if x is None or y is None:
        check_limit("grid points", int(num_points) ** 2, MAX_POINTS, " (num_points squared)")
    states = run_states(checkpoints, tied_names(objective.model))  # a tied tensor counts once
    labels = np.arange(len(states), dtype=np.float64) if steps is None else np.asarray(steps, float)
    if labels.shape != (len(states),):
        raise ValueError(f"expected one step label per checkpoint ({len(states)}), got {steps!r}")
    final = objective.at(states[-1])
    directions, coords = trajectory_directions(states, ignore=ignore)
    assert directions.y is not None  # trajectory_directions makes a plane
    true: dict[str, list[float]] = {name: [] for name in objective.names}
    for state in states:
        for name, value in objective(state).items():
            true[name].append(value)
    projected = final.evaluate_points(final.base_state, [directions.x, directions.y], coords)
    xs = _span(coords[:, 0], margin, num_points) if x is None else np.asarray(x, float)
    ys = _span(coords[:, 1], margin, num_points) if y is None else np.asarray(y, float)
    settings = {
        "ignore": ignore, "num_checkpoints": len(states), "margin": float(margin),
        "num_points": int(num_points),
    }  # fmt: skip
    grid = None
    if surface:
        grid = compute_surface(
            final, directions, xs, ys, path=path, overwrite=overwrite, progress=progress,
            attrs={"trajectory": True},
        )  # fmt: skip
    result = Trajectory(
        directions=directions,
        explained_variance=np.asarray(directions.settings["explained_variance"], np.float64),
        coords=coords,
        steps=labels,
        true={n: np.asarray(v, dtype=np.float64) for n, v in true.items()},
        projected={n: np.asarray(v, dtype=np.float64) for n, v in projected.items()},
        surface=grid,
        settings=settings,
    )
    if path is not None:
        save_trajectory(result, path, overwrite=True)
    return result
