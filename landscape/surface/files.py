"""Surface files: open one to resume (checked against the run) or create it, and write or
read a whole :class:`~landscape.surface.Surface`."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .. import storage
from .._fingerprint import FINGERPRINT_ATTRS, probe_problem
from ..directions import Directions
from ..directions.recipes import is_recipe
from .result import Surface

# Identity attributes added after 0.1, with the value every older file was made with.
_ADDED_ATTRS = {"params": "all"}
# Fingerprints added after 0.1 that older files did not take: not checked where missing.
_UNRECORDED_ATTRS = ("model_sha256", "objective_seed", *FINGERPRINT_ATTRS)


def open_surface_file(
    path: str | os.PathLike,
    xs: np.ndarray,
    ys: np.ndarray | None,
    names: tuple[str, ...],
    directions: Directions,
    identity: dict[str, Any],
    overwrite: bool,
) -> tuple[tuple[dict[str, np.ndarray], np.ndarray] | None, storage.SurfaceWriter]:
    """``((metrics, computed), writer)`` of an existing file, checked, or ``(None,
    writer)`` of a new one; the writer holds the file's lock.

    An attribute newer than a file (see :data:`_ADDED_ATTRS`) that it lacks counts as the
    value such a file was made with; a fingerprint it lacks (:data:`_UNRECORDED_ATTRS`)
    is not checked."""
    if os.path.exists(path) and not overwrite:
        storage.load_surface_arrays(path, verify=False)  # a foreign file is named before the lock
        writer = storage.SurfaceWriter(path)  # held from here on, then read again under it
        try:
            _, _, stored, stored_attrs, computed = storage.load_surface_arrays(path, verify=False)
            check = {
                k: v
                for k, v in identity.items()
                if k in stored_attrs
                or (k not in _ADDED_ATTRS and k not in _UNRECORDED_ATTRS)
                or not storage.same_attr(_ADDED_ATTRS.get(k, v), v)
            }
            probe = check.pop("model_probe", None)  # compared with a tolerance
            storage.check_surface_file(path, x=xs, y=ys, names=names, attrs=check)
            problem = None
            if probe is not None:
                problem = probe_problem(stored_attrs["model_probe"], probe, identity["precision"])
            if problem:
                raise ValueError(
                    f"{os.fspath(path)} was made for another run ({problem}); use another "
                    "output file, or overwrite=True / --overwrite to start again"
                )
        except BaseException:
            writer.close()
            raise
        return (stored, computed), writer
    used = (directions.x,) if ys is None else (directions.x, directions.y)
    if all(is_recipe(d) for d in used):  # the recipe is in the settings; made again
        used = ()
    writer = storage.create_surface_file(
        path, x=xs, y=ys, names=names, directions=used, attrs=identity,
        direction_kind=directions.kind, direction_settings=directions.settings, writer=True,
    )  # fmt: skip
    return None, writer


def save_surface(
    surface: Surface,
    path: str | os.PathLike,
    *,
    directions: Directions | None = None,
    overwrite: bool = False,
) -> None:
    """Write a Surface (one computed without ``path=``, say) to a surface file.

    Points with a NaN loss are marked not computed, so ``compute_surface`` with the same
    arguments can fill them in later.

    Args:
        surface: what to write; its ``attrs`` become the file's root attributes.
        path: the HDF5 file.
        directions: the directions to store with it (optional).
        overwrite: replace an existing file.

    Raises:
        ValueError: the file exists and ``overwrite`` is false.

    Example:
        >>> import tempfile
        >>> s = Surface(np.array([0.0, 1.0]), None, {"loss": np.array([0.5, 0.7])})
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     save_surface(s, f"{tmp}/s.h5")
        ...     load_surface(f"{tmp}/s.h5")["loss"].tolist()
        [0.5, 0.7]
    """
    if os.path.exists(path) and not overwrite:
        raise ValueError(f"{os.fspath(path)} exists; pass overwrite=True to replace it")
    used = () if directions is None else tuple(d for d in (directions.x, directions.y) if d)
    names = tuple(surface.metrics)
    volatile = ("num_computed", "num_points")
    attrs = {k: v for k, v in surface.attrs.items() if k not in volatile}
    with storage.create_surface_file(
        path, x=surface.x, y=surface.y, names=names, directions=used, attrs=attrs,
        direction_kind=None if directions is None else directions.kind,
        direction_settings=None if directions is None else directions.settings, writer=True,
    ) as writer:  # fmt: skip
        writer.write(surface.metrics, ~np.isnan(surface.metrics["loss"]))


def load_surface(path: str | os.PathLike) -> Surface:
    """Read a surface file (complete or not; missing points are NaN).

    Raises:
        FileNotFoundError, ValueError: no file, or not a landscape surface file.
    """
    x, y, metrics, attrs, computed = storage.load_surface_arrays(path)
    provenance = {k: attrs.pop(k) for k in storage.STAMP_ATTRS if k in attrs}
    attrs["num_computed"] = int(computed.sum())
    attrs["num_points"] = int(computed.size)
    order = [n for n in attrs.get("metrics", ()) if n in metrics]  # the order computed in
    metrics = {n: metrics[n] for n in [*order, *sorted(set(metrics) - set(order))]}
    return Surface(x, y, metrics, attrs=attrs, path=os.fspath(path), provenance=provenance)
