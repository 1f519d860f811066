"""The trajectory schema: a training run projected on its PCA plane.

Layout (in a surface file, beside the surface over the plane, or any landscape file)::

    /trajectory                      attrs: every setting, metric_names
    /trajectory/coords               float64 (n, 2), each checkpoint's projected coordinates
    /trajectory/steps                float64 (n,), step or epoch labels
    /trajectory/explained_variance   float64 (2,), explained variance ratio of each axis
    /trajectory/true/<metric>        float64 (n,), each checkpoint's own loss, accuracy, ...
    /trajectory/projected/<metric>   float64 (n,), the same at its projected point
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from .groups import read_group, write_group

__all__ = ["read_trajectory", "write_trajectory"]


def write_trajectory(
    path: str | os.PathLike,
    *,
    coords: np.ndarray,
    steps: np.ndarray,
    true: Mapping[str, np.ndarray],
    projected: Mapping[str, np.ndarray],
    explained_variance: np.ndarray,
    settings: Mapping[str, Any],
    overwrite: bool = False,
) -> None:
    """Write ``/trajectory`` (see the module docstring).

    Raises:
        ValueError: ``/trajectory`` exists and ``overwrite`` is false, or the true and
            projected metrics differ in names.
    """
    if set(true) != set(projected):
        raise ValueError(
            f"true and projected metrics differ: {sorted(true)} vs {sorted(projected)}"
        )
    arrays: dict[str, Any] = {
        "coords": np.asarray(coords, dtype=np.float64),
        "steps": np.asarray(steps, dtype=np.float64),
        "explained_variance": np.asarray(explained_variance, dtype=np.float64),
    }
    for name in true:
        arrays[f"true/{name}"] = np.asarray(true[name], dtype=np.float64)
        arrays[f"projected/{name}"] = np.asarray(projected[name], dtype=np.float64)
    attrs = {**settings, "metric_names": list(true)}
    write_group(path, "trajectory", arrays=arrays, attrs=attrs, overwrite=overwrite)


def read_trajectory(path: str | os.PathLike) -> dict[str, Any]:
    """``/trajectory`` as ``{coords, steps, explained_variance, true, projected, settings}``.

    Raises:
        KeyError: the file has no ``/trajectory``.
    """
    arrays, attrs = read_group(path, "trajectory")
    names = attrs.pop("metric_names")
    return {
        "coords": arrays["coords"],
        "steps": arrays["steps"],
        "explained_variance": arrays["explained_variance"],
        "true": {n: arrays[f"true/{n}"] for n in names},
        "projected": {n: arrays[f"projected/{n}"] for n in names},
        "settings": attrs,
    }
