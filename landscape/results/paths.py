"""The result of evaluating a path between two checkpoints (also importable from
:mod:`landscape.paths`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .base import Result

__all__ = ["PathResult"]


@dataclass(frozen=True, eq=False)
class PathResult(Result):
    """Loss and metrics along a path, and its loss barrier; compared by value.

    Attributes:
        kind: the curve's kind (``"line"``, ``"bezier"``, ``"polychain"``).
        t: the curve parameters evaluated, float64 ``(num_points,)``, from 0 to 1.
        metrics: ``{name: float64 array (num_points,)}``: ``loss`` and every metric
            (``accuracy`` for a classifier, as a fraction).
        barrier: ``max_t [loss(t) - ((1 - t) loss(0) + t loss(1))]`` (Frankle et al. 2020);
            0 when the path never rises above the chord of its ends.
        barrier_t: the ``t`` where it is reached.
        settings: every setting (``bn_reestimate``, the fit's settings for a curve, ...).
    """

    kind: str
    t: np.ndarray
    metrics: dict[str, np.ndarray]
    barrier: float
    barrier_t: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def loss(self) -> np.ndarray:
        return self.metrics["loss"]
