"""``landscape.save(result, path)`` and ``landscape.load(path, kind=None)``: one pair for every
result type, over the one schema registry of :mod:`landscape.storage.registry`.

The storage layer registers the kinds whose classes live in :mod:`landscape.results`
(``hessian`` and its parts, ``sharpness``, ``paths``); this module registers the four whose
classes the compute modules make (``surface``, ``directions``, ``trajectory``,
``tracking``), so that importing it completes the registry. The per-type functions
(``save_surface``, ``load_hessian``, ...) stay, each the writer or reader of its kind.

Example:
    >>> import tempfile, numpy as np
    >>> from landscape.surface import Surface
    >>> surface = Surface(np.array([0.0, 1.0]), None, {"loss": np.array([0.5, 0.7])})
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     save(surface, f"{tmp}/s.h5")
    ...     load(f"{tmp}/s.h5")["loss"].tolist(), kinds_in(f"{tmp}/s.h5")
    ([0.5, 0.7], ['surface'])
"""

from __future__ import annotations

import os

import h5py

from .directions import Directions, load_directions, save_directions
from .results.trajectory import Trajectory
from .storage import FORMAT, decode_attr, open_landscape_file
from .storage.registry import Schema, kinds_in, load, register, result_and_path, save, schemas
from .storage.tracking import save_tracking
from .storage.trajectory import read_trajectory, write_trajectory
from .surface import Surface, load_surface, save_surface
from .tracking import TrackingRun, load_tracking

__all__ = ["kinds_in", "load", "load_trajectory", "save", "save_trajectory", "schemas"]


def save_trajectory(
    trajectory: Trajectory, path: str | os.PathLike, *, overwrite: bool = False
) -> None:
    """Write a trajectory into a landscape file: ``/trajectory``
    (:mod:`landscape.storage.trajectory`), its directions when the file holds none, and its
    surface when the file is new (:func:`~landscape.trajectory.trajectory_plane` writes the
    surface into ``path`` as it computes it). The 0.2 order ``save_trajectory(path,
    trajectory)`` still works, with a DeprecationWarning.

    Raises:
        ValueError: the file holds a ``/trajectory`` and ``overwrite`` is false.
    """
    trajectory, path = result_and_path(trajectory, path, "save_trajectory")
    if trajectory.surface is not None and not os.path.exists(path):
        save_surface(trajectory.surface, path, directions=trajectory.directions)
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
    with open_landscape_file(path) as f:
        has_directions = "directions" in f
    if not has_directions:
        save_directions(trajectory.directions, path)


def load_trajectory(path: str | os.PathLike) -> Trajectory:
    """Read a trajectory written by :func:`~landscape.trajectory.trajectory_plane` (or
    :func:`~landscape.trajectory.save_trajectory`), with its surface when the file holds one.

    Raises:
        KeyError: the file holds no ``/trajectory``.
    """
    stored = read_trajectory(path)
    with open_landscape_file(path) as f:
        surface = load_surface(path) if _holds_surface(f) else None
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


def _holds_surface(f: h5py.File) -> bool:
    return decode_attr(f.attrs.get("format")) == FORMAT


register(Schema(
    "surface", (Surface,), save_surface, load_surface, _holds_surface, parts=("directions",),
))  # fmt: skip
register(Schema(
    "directions", (Directions,), save_directions, load_directions, lambda f: "directions/x" in f,
))  # fmt: skip
register(Schema(
    "trajectory", (Trajectory,), save_trajectory, load_trajectory, lambda f: "trajectory" in f,
    parts=("surface", "directions"),
))  # fmt: skip
register(Schema(
    "tracking", (TrackingRun,), save_tracking, load_tracking, lambda f: "tracking" in f,
))  # fmt: skip
