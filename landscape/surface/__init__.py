"""1D lines and 2D planes of the loss around a checkpoint: compute, resume, return a Surface.

The point ``(x[i], y[j])`` is ``theta + x[i] * d_x + y[j] * d_y`` and every metric array is
indexed ``[i, j]`` for it. With a file, results are written and flushed as they come
(at most every ``write_interval`` seconds), so a killed run started again with the same
arguments computes only the points it lacks.

The package's modules, one job each: :mod:`~landscape.surface.compute`
(:func:`compute_surface`), :mod:`~landscape.surface.result` (the :class:`Surface`),
:mod:`~landscape.surface.grid` (coordinates and ranges), :mod:`~landscape.surface.identity`
(directions fitted to the model, the attributes that name a run) and
:mod:`~landscape.surface.files` (resuming, saving and loading surface files).
"""

from .compute import MIN_CHUNK, compute_surface
from .files import load_surface, save_surface
from .grid import parse_range
from .result import Surface

__all__ = ["MIN_CHUNK", "Surface", "compute_surface", "load_surface", "parse_range", "save_surface"]
