"""Directions stored in a landscape file: :func:`save_directions`, and the one loader,
:func:`load_directions` (``landscape.storage.load_directions`` is its low-level
0.2 form, returning bare tensors)."""

from __future__ import annotations

import os

from .core import Directions

__all__ = ["load_directions", "save_directions"]


def save_directions(
    directions: Directions, path: str | os.PathLike, *, overwrite: bool = False
) -> None:
    """Store directions (tensors, kind and settings) as ``/directions`` of a landscape HDF5
    file, created if missing; :func:`load_directions` reads them back equal.

    Raises:
        ValueError: the file already holds directions and ``overwrite`` is false, or it is
            not a landscape file.

    Example:
        >>> import tempfile
        >>> from torch import nn
        >>> from landscape.directions import random_directions
        >>> dirs = random_directions(nn.Linear(3, 2), seed=0)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     save_directions(dirs, f"{tmp}/d.h5")
        ...     load_directions(f"{tmp}/d.h5") == dirs
        True
    """
    from .. import storage

    used = (directions.x,) if directions.y is None else (directions.x, directions.y)
    storage.write_directions(
        path, used, kind=directions.kind, settings=directions.settings, overwrite=overwrite
    )


def load_directions(path: str | os.PathLike) -> Directions:
    """The directions stored in a landscape file (by :func:`save_directions`, or with a
    surface), as CPU tensors; files of version 0.1 give the kind and settings from the
    surface's attributes.

    Raises:
        FileNotFoundError, ValueError: no file, or not a landscape file.
        KeyError: the file holds no directions.
    """
    from .. import storage

    tensors, kind, settings = storage.read_directions(path)
    y = tensors[1] if len(tensors) > 1 else None
    return Directions(tensors[0], y, kind=kind, settings=settings)
