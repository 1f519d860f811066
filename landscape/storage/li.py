"""Li et al.'s HDF5 files (github tomgoldstein/loss-landscape), read and written as they are.

Their direction files hold groups ``xdirection`` and ``ydirection`` (the second absent for a
line), each with datasets ``"0"``, ``"1"``, ... : one tensor per entry of
``model.parameters()`` (``dir_type="weights"``) or of ``model.state_dict()``
(``"states"``), in that order, with no names. Their surface files hold ``xcoordinates``
(and ``ycoordinates``), one dataset per metric (``train_loss``, ``train_acc`` in percent,
``test_loss``, ...; ``-1`` where not computed) and the direction file's path in
``dir_file``. These files carry no ``format`` attribute: they are read here as plain HDF5.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import h5py
import numpy as np

from .files import create_file

__all__ = ["read_li_directions", "read_li_surface", "write_li_directions"]


def _text(value: Any) -> str:
    if isinstance(value, np.ndarray):
        value = value.item() if value.shape == () else value.tolist()
    return value.decode() if isinstance(value, bytes) else str(value)


def _open(path: str | os.PathLike, what: str) -> h5py.File:
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such {what}: {os.fspath(path)}")
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as err:
        raise ValueError(f"{os.fspath(path)} is not a readable HDF5 file: {err}") from None


def read_li_surface(path: str | os.PathLike) -> dict[str, Any]:
    """``{"x", "y" (None for a line), "metrics": {name: raw array}, "dir_file"}`` as stored.

    Raises:
        FileNotFoundError: no file.
        ValueError: not an HDF5 file, or no ``xcoordinates``.
    """
    with _open(path, "Li et al. surface file") as f:
        if "xcoordinates" not in f:
            raise ValueError(
                f"{os.fspath(path)} has no xcoordinates: not a surface file of Li et al.'s "
                f"code (it has {sorted(f)})"
            )
        x = np.asarray(f["xcoordinates"][()], dtype=np.float64).reshape(-1)
        y = (
            np.asarray(f["ycoordinates"][()], dtype=np.float64).reshape(-1)
            if "ycoordinates" in f
            else None
        )
        metrics = {}
        for name, obj in f.items():
            if name in ("xcoordinates", "ycoordinates", "dir_file") or not isinstance(
                obj, h5py.Dataset
            ):
                continue
            if obj.dtype.kind in "fiu":
                metrics[name] = np.asarray(obj[()], dtype=np.float64)
        dir_file = None
        if "dir_file" in f:
            dir_file = _text(f["dir_file"][()])
        elif "dir_file" in f.attrs:
            dir_file = _text(f.attrs["dir_file"])
    return {"x": x, "y": y, "metrics": metrics, "dir_file": dir_file}


def read_li_directions(path: str | os.PathLike) -> list[list[np.ndarray]]:
    """The direction lists ``[x]`` or ``[x, y]``, each a list of arrays in index order.

    Raises:
        FileNotFoundError: no file.
        ValueError: not an HDF5 file, no ``xdirection`` group, or datasets not named
            ``"0"`` ... ``"n-1"``.
    """
    with _open(path, "Li et al. direction file") as f:
        if "xdirection" not in f:
            raise ValueError(
                f"{os.fspath(path)} has no xdirection group: not a direction file of Li et "
                f"al.'s code (it has {sorted(f)})"
            )
        out = []
        for group_name in ("xdirection", "ydirection"):
            if group_name not in f:
                continue
            group = f[group_name]
            keys = sorted(group, key=lambda k: int(k) if k.isdigit() else -1)
            if keys != [str(i) for i in range(len(keys))]:
                raise ValueError(
                    f"{os.fspath(path)}/{group_name}: expected datasets '0' ... "
                    f"'{len(keys) - 1}', got {keys[:5]}"
                )
            out.append([np.asarray(group[k][()]) for k in keys])
    return out


def write_li_directions(
    path: str | os.PathLike, directions: Sequence[Sequence[np.ndarray]], *, overwrite: bool = False
) -> None:
    """Write ``xdirection`` (and ``ydirection``) groups of datasets ``"0"``, ``"1"``, ...

    Raises:
        ValueError: the file exists and ``overwrite`` is false, or not one or two lists.
    """
    if len(directions) not in (1, 2):
        raise ValueError(f"expected one or two directions, got {len(directions)}")
    if os.path.exists(path) and not overwrite:
        raise ValueError(f"{os.fspath(path)} exists; pass overwrite=True to replace it")
    with create_file(path, None) as f:  # Li et al.'s format: no landscape stamp
        for group_name, tensors in zip(("xdirection", "ydirection"), directions, strict=False):
            group = f.create_group(group_name)
            for i, array in enumerate(tensors):
                group.create_dataset(str(i), data=np.asarray(array))
