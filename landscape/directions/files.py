"""Directions stored in a landscape file: :func:`save_directions`, and the one loader,
:func:`~landscape.directions.load_directions` (``landscape.storage.load_directions`` is
its low-level 0.2 form, returning bare tensors)."""

from __future__ import annotations

import os

from ..checks import renamed_keywords
from .core import Directions, check_num_directions

__all__ = ["directions_from_file", "load_directions", "save_directions"]


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
    surface's attributes. The one loader: ``landscape.storage.load_directions`` is its
    low-level 0.2 form (a tuple of bare states, empty if none), kept for its callers.

    Raises:
        FileNotFoundError, ValueError: no file, or not a landscape file.
        KeyError: the file holds no directions.
    """
    from .. import storage

    tensors, kind, settings = storage.read_directions(path)
    y = tensors[1] if len(tensors) > 1 else None
    return Directions(tensors[0], y, kind=kind, settings=settings)


@renamed_keywords(num="num_directions")
def directions_from_file(
    path: str | os.PathLike, *, num_directions: int | None = None
) -> Directions:
    """The first ``num_directions`` directions stored in a landscape file (all of them by default),
    as Directions of kind ``"file"`` whose settings name the file (``dir_file``, its
    absolute path): what ``landscape surface --dir-file`` uses. ``num=`` is the old name of
    ``num_directions`` (deprecated).

    Raises:
        ValueError: ``num_directions`` is not 1, 2 or None, or the file holds fewer.

    Example:
        >>> import tempfile
        >>> import torch
        >>> plane = Directions({"w": torch.ones(2)}, {"w": -torch.ones(2)}, kind="random")
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     save_directions(plane, f"{tmp}/plane.h5")
        ...     line = directions_from_file(f"{tmp}/plane.h5", num_directions=1)
        >>> line.kind, line.y is None, line.x["w"].tolist()
        ('file', True, [1.0, 1.0])
    """
    num = None if num_directions is None else check_num_directions(num_directions)
    try:
        stored = load_directions(path)
        found = 1 if stored.y is None else 2
    except KeyError:  # a landscape file without directions
        stored, found = None, 0
    num = found if num is None else num
    if stored is None or found < num:
        raise ValueError(f"expected {num or 1} direction(s) in {os.fspath(path)}, got {found}")
    y = stored.y if num == 2 else None
    settings = {"dir_file": os.path.abspath(path)}
    return Directions(stored.x, y, kind="file", settings=settings)
