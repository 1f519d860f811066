"""1D lines and 2D planes of the loss around a checkpoint: compute, resume, return a Surface."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Surface:
    """Metrics on a grid of points ``theta + x[i] * d_x (+ y[j] * d_y)``.

    Attributes:
        x: coordinates along the first direction, shape ``(nx,)``.
        y: coordinates along the second direction, shape ``(ny,)``, or ``None`` for a line.
        metrics: ``{name: array}`` of shape ``(nx, ny)`` (or ``(nx,)``), indexed ``[i, j]``;
            NaN where not computed.
        attrs: every setting that made it (norm, seed, loss, ...), plus ``x_label`` and
            ``y_label`` naming the directions for plots.
        path: the HDF5 file it lives in, if any.
    """

    x: np.ndarray
    y: np.ndarray | None
    metrics: dict[str, np.ndarray]
    attrs: dict[str, Any] = field(default_factory=dict)
    path: str | None = None

    @property
    def is_2d(self) -> bool:
        return self.y is not None

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.metrics[name]
        except KeyError:
            raise KeyError(f"no metric {name!r}; this surface has {sorted(self.metrics)}") from None
