"""A training trajectory on the plane of its top two principal directions (Li et al. 2018).

:func:`trajectory_plane` takes the checkpoints of a run, finds the PCA plane of
``theta_t - theta_final`` (:func:`landscape.pca_directions`), projects every checkpoint
onto it, and evaluates the loss surface over a grid that covers the projected path. It
also says what the projection hides: for each checkpoint, its own loss (``true``) beside
the loss at its projected point of the plane (``projected``), which differ as much as the
run leaves the plane. The axes' explained variance ratios say how much of the run the
plane holds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .directions import Directions, pca_directions, project_states
from .limits import MAX_POINTS, check_limit
from .params import merge_tied, tied_names
from .results import Result
from .surface import Surface, compute_surface

if TYPE_CHECKING:
    from .objective import Objective

__all__ = ["Trajectory", "load_trajectory", "save_trajectory", "trajectory_plane"]


@dataclass(frozen=True, eq=False)
class Trajectory(Result):
    """A run on its PCA plane; compared by value.

    Attributes:
        directions: the two PCA directions (kind ``"pca"``), around the final checkpoint.
        explained_variance: float64 ``(2,)``, the explained variance ratio of each axis.
        coords: float64 ``(n, 2)``, each checkpoint's projected coordinates.
        steps: float64 ``(n,)``, each checkpoint's step (or epoch) label.
        true: ``{metric: float64 (n,)}``, each checkpoint's own loss and metrics.
        projected: ``{metric: float64 (n,)}``, the same at its projected point.
        surface: the surface over the plane (``None`` if not computed).
        settings: the options.
    """

    directions: Directions
    explained_variance: np.ndarray
    coords: np.ndarray
    steps: np.ndarray
    true: dict[str, np.ndarray]
    projected: dict[str, np.ndarray]
    surface: Surface | None = None
    settings: dict[str, Any] = field(default_factory=dict)


def _state(checkpoint: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(checkpoint, nn.Module):
        return {n: t.detach() for n, t in checkpoint.state_dict().items()}
    if isinstance(checkpoint, Mapping):
        return dict(checkpoint)
    raise TypeError(
        f"expected checkpoints as models or state_dicts, got {type(checkpoint).__name__}"
    )


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
    ignore: str = "biasbn",
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
    tied = tied_names(objective.model)  # a tied tensor counts once in the plane
    states = [merge_tied(_state(c), tied) for c in checkpoints]
    if len(states) < 3:
        raise ValueError(f"a trajectory needs at least 3 checkpoints, got {len(states)}")
    labels = np.arange(len(states), dtype=np.float64) if steps is None else np.asarray(steps, float)
    if labels.shape != (len(states),):
        raise ValueError(f"expected one step label per checkpoint ({len(states)}), got {steps!r}")
    final = objective.at(states[-1])
    directions = pca_directions(states, states[-1], num_directions=2, ignore=ignore)
    coords = np.asarray(project_states(directions, states, states[-1]), dtype=np.float64)
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
        save_trajectory(path, result, overwrite=True)
    return result


def save_trajectory(
    path: str | os.PathLike, trajectory: Trajectory, *, overwrite: bool = False
) -> None:
    """Write ``/trajectory`` (coordinates, steps, true and projected metrics, explained
    variance) into a landscape file, and the directions if the file holds none."""
    from . import storage
    from .storage.trajectory import write_trajectory

    write_trajectory(
        path,
        coords=trajectory.coords,
        steps=trajectory.steps,
        true=trajectory.true,
        projected=trajectory.projected,
        explained_variance=trajectory.explained_variance,
        settings=trajectory.settings,
        overwrite=overwrite,
    )
    with storage.open_landscape_file(path) as f:
        has_directions = "directions" in f
    if not has_directions:
        d = trajectory.directions
        storage.write_directions(path, (d.x, d.y), kind=d.kind, settings=d.settings)


def load_trajectory(path: str | os.PathLike) -> Trajectory:
    """Read a trajectory written by :func:`trajectory_plane` (or :func:`save_trajectory`),
    with its surface when the file holds one.

    Raises:
        KeyError: the file holds no ``/trajectory``.
    """
    from .directions import load_directions
    from .storage.trajectory import read_trajectory
    from .surface import load_surface

    stored = read_trajectory(path)
    surface = None
    from . import storage

    with storage.open_landscape_file(path) as f:
        is_surface = "coords" in f and "metrics" in f
    if is_surface:
        surface = load_surface(path)
    return Trajectory(
        directions=load_directions(path),
        explained_variance=stored["explained_variance"],
        coords=stored["coords"],
        steps=stored["steps"],
        true=stored["true"],
        projected=stored["projected"],
        surface=surface,
        settings=stored["settings"],
    )
