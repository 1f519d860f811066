"""One-call entry points for users of ``loss-landscapes`` and PyHessian.

Thin layers over :func:`~landscape.compute_surface`, :func:`~landscape.random_directions`
and the Hessian functions: the same exact values, the same files and options.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> g = torch.Generator().manual_seed(0)
    >>> data = (torch.randn(32, 4, generator=g), torch.randint(0, 3, (32,), generator=g))
    >>> plane = random_plane(model, data, distance=0.5, num_points=5, progress=False)
    >>> plane["loss"].shape
    (5, 5)
    >>> top = Hessian(model, data).eigenvalues(num_eigenpairs=2)
    >>> len(top.eigenvalues)
    2
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from .checks import check_count, renamed_keywords
from .directions import random_directions
from .options import IgnoreName, NormName
from .surface import Surface, compute_surface

__all__ = ["Hessian", "random_line", "random_plane"]


def _grid(distance: float, num_points: int) -> np.ndarray:
    num_points = check_count(num_points, "num_points", minimum=2)
    if not distance > 0:
        raise ValueError(f"expected a positive distance, got {distance!r}")
    return np.linspace(-distance, distance, num_points)


@renamed_keywords(steps="num_points")
def random_line(
    model: nn.Module,
    data: Any,
    *,
    distance: float = 1.0,
    num_points: int = 51,
    norm: NormName = "filter",
    ignore: IgnoreName = "biasbn",
    seed: int = 0,
    **options: Any,
) -> Surface:
    """The loss along one filter-normalized random direction, from ``-distance`` to
    ``distance`` in ``num_points`` points (with an odd number the middle is the model).

    Args:
        model: the trained model (never modified).
        data: evaluation data, in any form :class:`~landscape.Objective` accepts.
        distance, num_points: the grid ``linspace(-distance, distance, num_points)``
            (``steps=``, the old name of ``num_points``, is deprecated).
        norm, ignore, seed: as for :func:`~landscape.random_directions`.
        **options: passed to :func:`~landscape.compute_surface` (``loss``, ``path``,
            ``progress``, ``batch_size``, ...).

    Returns:
        A 1D :class:`~landscape.Surface`.
    """
    directions = random_directions(model, num_directions=1, norm=norm, ignore=ignore, seed=seed)
    return compute_surface(model, data, directions, _grid(distance, num_points), **options)


@renamed_keywords(steps="num_points")
def random_plane(
    model: nn.Module,
    data: Any,
    *,
    distance: float = 1.0,
    num_points: int = 51,
    norm: NormName = "filter",
    ignore: IgnoreName = "biasbn",
    seed: int = 0,
    **options: Any,
) -> Surface:
    """The loss on the plane of two filter-normalized random directions (Li et al. 2018),
    a ``num_points`` x ``num_points`` grid over ``[-distance, distance]^2``; like
    ``loss_landscapes.random_plane`` but with exact means and a resumable file.

    Args: as for :func:`random_line`.

    Returns:
        A 2D :class:`~landscape.Surface`.
    """
    directions = random_directions(model, num_directions=2, norm=norm, ignore=ignore, seed=seed)
    grid = _grid(distance, num_points)
    return compute_surface(model, data, directions, grid, grid, **options)


class Hessian:
    """A PyHessian-style front end: ``Hessian(model, data).eigenvalues()``, ``.trace()``,
    ``.density()``.

    Each call runs the library's own solver on one :class:`~landscape.Objective` built
    here once (data moved to the device and fingerprinted once) and returns its result
    dataclass (eigenvalues with verified residuals, a trace with its standard error, ...).

    Args:
        model: the trained model (never modified).
        data: evaluation data.
        **objective_options: passed to :class:`~landscape.Objective` (``loss``,
            ``batch_size``, ``train_mode``, ...).
    """

    def __init__(self, model: nn.Module, data: Any, **objective_options: Any):
        from .objective import Objective

        self.objective = Objective(model, data, **objective_options)

    @renamed_keywords(top_n="num_eigenpairs")
    def eigenvalues(self, num_eigenpairs: int = 1, **options: Any) -> Any:
        """The ``num_eigenpairs`` largest eigenpairs (:func:`~landscape.hessian_eigenpairs`;
        ``top_n=``, the old name of ``num_eigenpairs``, is deprecated)."""
        from .hessian import hessian_eigenpairs

        return hessian_eigenpairs(self.objective, k=num_eigenpairs, **options)

    def trace(self, **options: Any) -> Any:
        """The trace with its standard error (:func:`~landscape.hessian_trace`)."""
        from .hessian import hessian_trace

        return hessian_trace(self.objective, **options)

    def density(self, **options: Any) -> Any:
        """The spectral density (:func:`~landscape.spectral_density`)."""
        from .hessian import spectral_density

        return spectral_density(self.objective, **options)
