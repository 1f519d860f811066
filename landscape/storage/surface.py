"""The surface schema: create a surface file, check it for a resume, write points, read it.

(The directions it stores are :mod:`~landscape.storage.directions`'s schema; ``same_attr``,
``load_directions``, ``read_directions`` and ``write_directions`` are still importable
from here, as in version 0.2.)

Layout (format ``"landscape.surface"``, see the README)::

    /                      attrs: the stamp (format, format_version, ...) and the run's
                                  identity (checkpoint_sha256, data_sha256, norm, seed, ...)
    /coords/x, /coords/y   float64 (nx,), (ny,): dimension scales of every metric
    /metrics/<name>        float64 (nx, ny) or (nx,); NaN where not yet computed
    /computed              bool, the grid's shape: which points are done
    /directions/x/<param>  one dataset per tensor (attrs of /directions: kind, settings)
    /directions/y/<param>

The ``computed`` mask, not NaN, says what is done, so a metric that is truly NaN or inf
is kept and never recomputed. Every dataset is allocated and filled when the file is
created, so writing points needs no more disk space. Points are written metrics first
(flushed), mask last (flushed), and readers read the mask first: a reader, or a run
killed in between, never sees a point marked done without its value. The schema (grid,
metric and mask shapes and dtypes) is checked on every open, and the stored directions
against their fingerprint ``directions_sha256`` on a resume and when they are read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np
import torch

from ..limits import MAX_POINTS, check_limit, check_memory
from .checksum import CHECKSUM_ATTR, values_sha256
from .codec import decode_attr, decode_attrs, encode_attr, same_attr
from .directions import (  # noqa: F401  (load_directions, read_directions, write_directions: as in 0.2)
    check_fingerprint,
    fill_directions,
    load_directions,
    read_directions,
    write_directions,
)
from .diskguard import planned_bytes
from .files import FORMAT, STAMP_ATTRS, create_file, open_landscape_file, write_error

__all__ = [
    "VOLATILE_ATTRS",
    "SurfaceWriter",
    "check_surface_file",
    "check_surface_schema",
    "create_surface_file",
    "load_surface_arrays",
    "read_computed",
]

# Root attributes that may differ between a run and its resumption (``cosine`` is derived
# from the directions, which ``directions_sha256`` already pins down).
VOLATILE_ATTRS = frozenset({*STAMP_ATTRS, "checkpoint_path", "cosine", "points_per_pass"})


def create_surface_file(
    path: str | os.PathLike,
    *,
    x: np.ndarray,
    y: np.ndarray | None,
    names: tuple[str, ...],
    directions: tuple[Mapping[str, torch.Tensor], ...],
    attrs: Mapping[str, Any],
    direction_kind: str | None = None,
    direction_settings: Mapping[str, Any] | None = None,
    writer: bool = False,
) -> SurfaceWriter | None:
    """Create a new surface file whole: root attrs, coordinates, NaN metrics, an all-False
    ``computed`` mask and the directions (with their kind and settings, if given); any
    file at ``path`` is replaced, unless another process is writing it. A disk without
    room for the whole file (the grid, the metrics and the directions give its size) is
    refused before anything is written.

    Returns:
        With ``writer``, a :class:`SurfaceWriter` on the new file, open since before its
        rename (so no other run can take it in between); else None.
    """
    shape = (len(x),) if y is None else (len(x), len(y))
    num_points = int(np.prod(shape))
    tensors = [t for direction in directions for t in direction.values()]
    size = planned_bytes([np.empty(0)] * (2 + len(names)) + tensors)
    size += num_points * (8 * len(names) + 1) + 8 * (len(x) + len(y if y is not None else ()))
    with create_file(path, FORMAT, keep_open=writer, size=size) as f:
        for key, value in attrs.items():
            f.attrs[key] = encode_attr(value)
        coords = f.create_group("coords")
        scales = [coords.create_dataset("x", data=np.asarray(x, dtype=np.float64))]
        if y is not None:
            scales.append(coords.create_dataset("y", data=np.asarray(y, dtype=np.float64)))
        for scale, axis in zip(scales, "xy", strict=False):
            scale.make_scale(axis)
        metrics = f.create_group("metrics")
        for name in names:
            ds = metrics.create_dataset(name, data=np.full(shape, np.nan), fillvalue=np.nan)
            for dim, scale in enumerate(scales):
                ds.dims[dim].attach_scale(scale)
        f.create_dataset("computed", data=np.zeros(shape, dtype=bool), fillvalue=False)
        if directions or direction_kind is not None:
            fill_directions(f, directions, direction_kind, direction_settings)
    return SurfaceWriter(path, f) if writer else None


def _open_surface(path: str | os.PathLike) -> h5py.File:
    """A surface file open for reading, its schema checked (grid, metric and mask shapes)."""
    f = open_landscape_file(path)
    try:
        check_surface_schema(f, os.fspath(path))
    except ValueError:
        f.close()
        raise
    return f


def check_surface_schema(f: h5py.File, path: str) -> None:
    """Raise ValueError naming what is wrong when ``f`` is not a well-formed surface file."""
    fmt = decode_attr(f.attrs["format"])
    if fmt != FORMAT:
        raise ValueError(f"{path} is a landscape file but not a surface (format {fmt!r})")
    for needed in ("coords/x", "metrics", "computed"):
        if needed not in f:
            raise ValueError(f"{path} is a damaged surface file: /{needed} is missing")
    axes = [f["coords/x"]] + ([f["coords/y"]] if "coords/y" in f else [])
    for ds in axes:
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 1 or ds.dtype.kind != "f":
            raise ValueError(f"{path} is a damaged surface file: {ds.name} is not a 1D float array")
    shape = tuple(len(ds) for ds in axes)
    _check_grid_size(path, shape, len(f["metrics"]))
    checks = [("/computed", f["computed"], "b")]
    checks += [(f"metric {name!r}", ds, "f") for name, ds in f["metrics"].items()]
    for what, ds, kind in checks:
        if not isinstance(ds, h5py.Dataset) or ds.shape != shape or ds.dtype.kind != kind:
            got = f"{ds.dtype} of shape {ds.shape}" if isinstance(ds, h5py.Dataset) else "a group"
            expected = "bool" if kind == "b" else "float"
            raise ValueError(
                f"{path} is a damaged surface file: {what} should be {expected} of shape "
                f"{shape}, it is {got}"
            )


def _check_grid_size(path: str, shape: tuple[int, ...], num_metrics: int) -> None:
    """Refuse a file declaring a grid larger than a run may ask for (before reading it)."""
    num_points = int(np.prod(shape, dtype=np.int64))
    try:
        check_limit("grid points", num_points, MAX_POINTS)
        check_memory("its arrays", num_points * (8 * num_metrics + 1))
    except ValueError as err:
        grid = " x ".join(map(str, shape))
        raise ValueError(f"{path} declares a grid of {grid} points: {err}") from None


def check_surface_file(
    path: str | os.PathLike,
    *,
    x: np.ndarray,
    y: np.ndarray | None,
    names: tuple[str, ...],
    attrs: Mapping[str, Any],
) -> None:
    """Refuse to resume a file made with other settings, listing every difference.

    Raises:
        ValueError: the file is foreign or damaged, or made for another run.
    """
    problems = []
    with _open_surface(path) as f:
        stored = decode_attrs(f.attrs)
        for key, value in attrs.items():
            if key in VOLATILE_ATTRS:
                continue
            if key not in stored:
                problems.append(f"{key}: file has none, run has {value!r}")
            elif not same_attr(stored[key], value):
                problems.append(f"{key}: file has {stored[key]!r}, run has {value!r}")
        for axis, coords in (("x", x), ("y", y)):
            have = f["coords"][axis][()] if axis in f["coords"] else None
            if (have is None) != (coords is None) or (
                have is not None and not np.array_equal(have, np.asarray(coords, np.float64))
            ):
                problems.append(f"grid {axis}: file and run differ")
        missing = [n for n in names if n not in f["metrics"]]
        if missing:
            problems.append(f"metrics missing from the file: {missing}")
        check_fingerprint(f, os.fspath(path))
    if any(p.startswith("data_sha256") for p in problems):
        problems.append(
            "the data fingerprint covers the batches in order: a shuffled DataLoader or "
            "another batch size changes it"
        )
    if problems:
        raise ValueError(
            f"{os.fspath(path)} was made for another run ({'; '.join(problems[:7])}); "
            "use another output file, or overwrite=True / --overwrite to start again"
        )


def read_computed(path: str | os.PathLike) -> np.ndarray:
    """The boolean mask of the points of a surface file already computed."""
    with _open_surface(path) as f:
        return f["computed"][()]


def computed_sha256(metrics: Mapping[str, np.ndarray], computed: np.ndarray) -> str:
    """The checksum of a surface's computed values and mask (``/computed``'s
    ``values_sha256``)."""
    computed = np.asarray(computed, dtype=bool)
    arrays = {name: np.asarray(array)[computed] for name, array in metrics.items()}
    return values_sha256({**arrays, "/computed": computed})


def load_surface_arrays(
    path: str | os.PathLike, *, verify: bool = True
) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray], dict[str, Any], np.ndarray]:
    """``(x, y, metrics, attrs, computed)`` read from a surface file; ``attrs`` are all the
    root attributes, decoded. The computed values are checked against their checksum;
    with ``verify=False`` a mismatch gives a mask of no point computed instead (a resume
    computes them again).

    Raises:
        FileNotFoundError, ValueError: no file, not a surface file, or a damaged one.
    """
    with _open_surface(path) as f:
        computed = f["computed"][()]  # before the metrics: a point marked done has its value
        stored = decode_attr(f["computed"].attrs.get(CHECKSUM_ATTR))
        x = f["coords/x"][()]
        y = f["coords/y"][()] if "coords/y" in f else None
        metrics = {name: ds[()] for name, ds in f["metrics"].items()}
        if stored is not None and stored != computed_sha256(metrics, computed):
            if verify:
                raise ValueError(
                    f"{os.fspath(path)} is damaged: its computed values do not match their "
                    f"checksum {CHECKSUM_ATTR}; run the same command again to compute them again"
                )
            computed = np.zeros_like(computed)
        return x, y, metrics, decode_attrs(f.attrs), computed


class SurfaceWriter:
    """A surface file open for writing computed points (use as a context manager); give
    ``file`` to take over one already open for writing.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = f"{tmp}/s.h5"
        ...     create_surface_file(path, x=np.zeros(2), y=None, names=("loss",),
        ...                         directions=(), attrs={})
        ...     with SurfaceWriter(path) as writer:
        ...         writer.write({"loss": np.array([0.5, np.nan])}, np.array([True, False]))
        ...     read_computed(path).tolist()
        [True, False]
    """

    def __init__(self, path: str | os.PathLike, file: h5py.File | None = None):
        self.path = os.fspath(path)
        self._file: h5py.File | None = open_landscape_file(self.path, "a") if file is None else file

    def write(self, values: Mapping[str, np.ndarray], computed: np.ndarray) -> None:
        """Write the metric arrays whole and flush, then the computed mask and flush (one
        h5py call each; point by point costs about a millisecond a point). A reader, or a
        kill in between, never sees a point marked done without its value.

        Raises:
            RuntimeError: the disk is full (the file stays resumable).
        """
        if self._file is None:
            raise ValueError(f"the writer of {self.path} is closed")
        try:
            for name, array in values.items():
                self._file["metrics"][name][...] = array
            self._file.flush()
            metrics = {
                n: values[n] if n in values else ds[()] for n, ds in self._file["metrics"].items()
            }
            self._file["computed"][...] = computed
            self._file["computed"].attrs[CHECKSUM_ATTR] = computed_sha256(metrics, computed)
            self._file.flush()
        except OSError as err:
            raise write_error(err, self.path) from None

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            try:
                file.close()
            except OSError as err:
                raise write_error(err, self.path) from None

    def __enter__(self) -> SurfaceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
