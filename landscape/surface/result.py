"""The :class:`Surface` result: metrics on a line or a plane of points."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..results import Result


@dataclass(frozen=True, eq=False)
class Surface(Result):
    """Metrics on a grid of points ``theta + x[i] * d_x (+ y[j] * d_y)``.

    Surfaces compare by value (:class:`~landscape.results.Result`): one loaded from a file
    equals the one computed and written there; ``path`` and ``provenance`` are left out.

    Attributes:
        x: coordinates along the first direction, shape ``(nx,)``.
        y: coordinates along the second direction, shape ``(ny,)``, or ``None`` for a line.
        metrics: ``{name: array}`` of shape ``(nx, ny)`` (or ``(nx,)``), indexed ``[i, j]``;
            NaN where not computed.
        attrs: every setting that made it (norm, seed, loss, ...), plus ``x_label`` and
            ``y_label`` naming the directions for plots, and ``num_computed`` and
            ``num_points`` for a computed or loaded surface.
        path: the HDF5 file it lives in, if any.
        provenance: for a surface read from a file, the file's stamp (``format``,
            ``format_version``, ``landscape_version``, ``torch_version``, ``created``).

    Example:
        >>> s = Surface(np.array([0.0, 1.0]), None, {"loss": np.array([0.5, 0.7])})
        >>> s.is_2d, s["loss"].tolist()
        (False, [0.5, 0.7])
    """

    x: np.ndarray
    y: np.ndarray | None
    metrics: dict[str, np.ndarray]
    attrs: dict[str, Any] = field(default_factory=dict)
    path: str | None = field(default=None, compare=False)
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_2d(self) -> bool:
        return self.y is not None

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.metrics[name]
        except KeyError:
            raise KeyError(f"no metric {name!r}; this surface has {sorted(self.metrics)}") from None
