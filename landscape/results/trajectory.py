"""The result of :func:`landscape.trajectory.trajectory_plane`: a run on its PCA plane (also
importable from :mod:`landscape.trajectory`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .base import Result

__all__ = ["Trajectory"]


@dataclass(frozen=True, eq=False)
class Trajectory(Result):
    """A run on its PCA plane; compared by value.

    Attributes:
        directions: the two PCA directions (a :class:`landscape.Directions` of kind
            ``"pca"``), around the final checkpoint.
        explained_variance: float64 ``(2,)``, the explained variance ratio of each axis.
        coords: float64 ``(n, 2)``, each checkpoint's projected coordinates.
        steps: float64 ``(n,)``, each checkpoint's step (or epoch) label.
        true: ``{metric: float64 (n,)}``, each checkpoint's own loss and metrics.
        projected: ``{metric: float64 (n,)}``, the same at its projected point.
        surface: the :class:`landscape.Surface` over the plane (``None`` if not computed).
        settings: the options.
    """

    directions: Any
    explained_variance: np.ndarray
    coords: np.ndarray
    steps: np.ndarray
    true: dict[str, np.ndarray]
    projected: dict[str, np.ndarray]
    surface: Any = None
    settings: dict[str, Any] = field(default_factory=dict)
