"""Old home (0.2) of the checkpoint and curvature planes, kept as an alias: they live in
:mod:`landscape.directions.checkpoints` and :mod:`landscape.directions.curvature`, and
``landscape.directions`` exports them."""

from __future__ import annotations

from .directions.checkpoints import CheckpointPlane, checkpoint_plane
from .directions.curvature import (
    ChanceCurvature,
    chance_curvature,
    curvature_directions,
    directional_curvature,
)

__all__ = [
    "ChanceCurvature",
    "CheckpointPlane",
    "chance_curvature",
    "checkpoint_plane",
    "curvature_directions",
    "directional_curvature",
]
