"""Directions in parameter space: every direction a surface can use comes from here.

Modules by job, each returning :class:`Directions` (see :mod:`.core`):
:mod:`.normalization` (Li et al. 2018, filter/layer/weight), :mod:`.random` (seeded
Gaussian), :mod:`.interpolation` (``end - start``, exact at the end), :mod:`.pca` (PCA of a
trajectory, projection), :mod:`.hessian` (top eigenvectors), :mod:`.curvature` (the plane
of the extreme eigenvectors, and the curvature a random plane shows), :mod:`.checkpoints`
(the plane through three checkpoints), :mod:`.files` (save, the one loader, directions from
a file); :mod:`.drawing` draws and normalizes random tensors in pieces; :mod:`.recipes` makes
directions that are never stored (``random_directions(..., stored=False)``).

A direction is a state: a mapping from parameter (or buffer) names to tensors of the
same shapes. Normalization follows Li et al. (2018), per tensor with ``dim > 1``
iterating over dim 0 (a filter is a conv output channel or a row of a linear layer):

- ``filter``: each filter rescaled to the norm of the same filter of the weights;
- ``layer``: each tensor rescaled to the norm of the weight tensor;
- ``weight``: multiplied elementwise by the weights;
- ``none``: raw Gaussian.

Tensors with ``dim <= 1`` are zeroed with ``ignore="biasbn"`` (default) or normalized as a
one-filter tensor with ``ignore="none"``; running statistics move along themselves (see
:mod:`.random`). ``params=`` (see :func:`landscape.params.select_names`) restricts a
direction to some tensors.
"""

from __future__ import annotations

from .checkpoints import CheckpointPlane, checkpoint_plane
from .core import Directions, Interpolation, State  # noqa: F401  (State: as in 0.2)
from .curvature import (
    ChanceCurvature,
    chance_curvature,
    curvature_directions,
    directional_curvature,
)
from .files import directions_from_file, load_directions, save_directions
from .hessian import hessian_plane
from .interpolation import interpolation_direction, interpolation_directions
from .normalization import (  # noqa: F401  (NORMS, IGNORES: as in 0.2)
    IGNORES,
    NORMS,
    Ignore,
    Norm,
    is_running_stat,
    normalize_direction,
)
from .pca import pca_directions, project_states
from .random import random_direction, random_directions, random_plane
from .recipes import RecipeDirection, stored_directions

__all__ = [
    "Directions",
    "Interpolation",
    "Norm",
    "Ignore",
    "normalize_direction",
    "random_direction",
    "random_directions",
    "interpolation_direction",
    "is_running_stat",
    "load_directions",
    "pca_directions",
    "project_states",
    "save_directions",
    "directions_from_file",
    "hessian_plane",
    "interpolation_directions",
    "random_plane",
    "RecipeDirection",
    "stored_directions",
    "CheckpointPlane",
    "checkpoint_plane",
    "ChanceCurvature",
    "chance_curvature",
    "curvature_directions",
    "directional_curvature",
]
