"""The HDF5 schema: root attributes, result groups, surfaces; write, read, resume, validate."""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np
import torch

FORMAT = "landscape.surface"
FORMAT_VERSION = 1


def _version() -> str:
    from .. import __version__

    return __version__


def encode_attr(value: Any) -> Any:
    """An attribute value h5py can store: numbers, strings and arrays as they are,
    anything else (None, dicts, lists of strings) as JSON text."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (bool, int, float, np.integer, np.floating, np.bool_)):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        return np.asarray(value)
    return json.dumps(value, default=str)


def decode_attrs(attrs: h5py.AttributeManager) -> dict[str, Any]:
    """Attributes as plain Python values (numpy scalars become int/float/bool)."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def stamp_root(f: h5py.File, fmt: str = FORMAT) -> None:
    """Write the attributes every landscape file carries on its root."""
    f.attrs["format"] = fmt
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["landscape_version"] = _version()
    f.attrs["torch_version"] = str(torch.__version__)
    f.attrs["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def open_landscape_file(path: str | os.PathLike, mode: str = "r") -> h5py.File:
    """Open an existing landscape HDF5 file, refusing truncated or foreign files clearly.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not HDF5, is damaged, or is not a landscape file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    try:  # reading never takes the lock, so `landscape info` works while a run writes
        f = h5py.File(path, mode, locking=False) if mode == "r" else h5py.File(path, mode)
    except OSError as err:
        if "unable to lock" in str(err):
            raise ValueError(
                f"{path} is open for writing by another process (a run still going?); "
                "wait for it to finish or stop it"
            ) from None
        raise ValueError(
            f"{path} is not a readable HDF5 file (truncated or damaged?): {err}; "
            "remove it or pass overwrite=True / --overwrite"
        ) from None
    fmt = f.attrs.get("format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode()
    if not isinstance(fmt, str) or not fmt.startswith("landscape."):
        f.close()
        raise ValueError(f"{path} is an HDF5 file but not a landscape file (format attr: {fmt!r})")
    return f


def existing_groups(path: str | os.PathLike, names: list[str]) -> list[str]:
    """Which of the groups ``names`` a landscape file already has (none if no file)."""
    if not os.path.exists(path):
        return []
    with open_landscape_file(path) as f:
        return [name for name in names if name in f]


def write_group(
    path: str | os.PathLike,
    name: str,
    *,
    arrays: Mapping[str, Any],
    attrs: Mapping[str, Any],
    overwrite: bool = False,
) -> None:
    """Write a result group ``/name`` (datasets from ``arrays``, settings in ``attrs``) into
    the landscape file at ``path``, creating the file if needed.

    Raises:
        ValueError: the group exists and ``overwrite`` is false, or the file is foreign.
    """
    path = os.fspath(path)
    if os.path.exists(path):
        f = open_landscape_file(path, "a")
    else:
        f = h5py.File(path, "w")
        stamp_root(f, "landscape.results")
    with f:
        if name in f:
            if not overwrite:
                raise ValueError(
                    f"{path} already has /{name}; pass overwrite=True (--overwrite) to replace it"
                )
            del f[name]
        group = f.create_group(name)
        for key, value in attrs.items():
            group.attrs[key] = encode_attr(value)
        for key, value in arrays.items():
            group.create_dataset(key, data=np.asarray(value))
        f.flush()


def read_group(path: str | os.PathLike, name: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read ``/name`` back: ``({dataset: array}, attrs)``; nested groups are flattened
    with ``/`` in the keys."""
    with open_landscape_file(path) as f:
        if name not in f:
            raise KeyError(f"{os.fspath(path)} has no group /{name}; it has {sorted(f)}")
        group = f[name]
        arrays: dict[str, np.ndarray] = {}

        def visit(key: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                arrays[key] = obj[()]

        group.visititems(visit)
        return arrays, decode_attrs(group.attrs)


# ---------------------------------------------------------------- surfaces
# Root attributes that may differ between a run and its resumption (``cosine`` is derived
# from the directions, which ``directions_sha256`` already pins down).
VOLATILE_ATTRS = frozenset(
    {
        "format",
        "format_version",
        "landscape_version",
        "torch_version",
        "created",
        "checkpoint_path",
        "cosine",
    }
)


def same_attr(a: Any, b: Any) -> bool:
    """Whether a stored attribute equals a value, compared as they are stored."""
    a, b = encode_attr(a), encode_attr(b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    if isinstance(a, bytes):
        a = a.decode()
    if isinstance(b, bytes):
        b = b.decode()
    return a == b


def create_surface_file(
    path: str | os.PathLike,
    *,
    x: np.ndarray,
    y: np.ndarray | None,
    names: tuple[str, ...],
    directions: tuple[Mapping[str, torch.Tensor], ...],
    attrs: Mapping[str, Any],
) -> None:
    """Create a new surface file: root attrs, coordinates, NaN metrics, directions.

    The ``/computed`` boolean array marks the points already done, so a metric that is
    truly NaN or inf is kept and never taken for "not computed".
    """
    shape = (len(x),) if y is None else (len(x), len(y))
    with h5py.File(os.fspath(path), "w") as f:
        stamp_root(f)
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
            ds = metrics.create_dataset(name, shape=shape, dtype=np.float64, fillvalue=np.nan)
            for dim, scale in enumerate(scales):
                ds.dims[dim].attach_scale(scale)
        f.create_dataset("computed", shape=shape, dtype=bool, fillvalue=False)
        for axis, direction in zip("xy", directions, strict=False):
            group = f.create_group(f"directions/{axis}")
            for name, tensor in direction.items():
                group.create_dataset(name, data=tensor.detach().cpu().numpy())
        f.flush()


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
    with open_landscape_file(path) as f:
        if f.attrs.get("format") != FORMAT:
            raise ValueError(f"{os.fspath(path)} is not a surface file")
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
        if missing or "computed" not in f:
            problems.append(f"metrics missing from the file: {missing or ['computed']}")
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
    with open_landscape_file(path) as f:
        return f["computed"][()]


def load_directions(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], ...]:
    """The directions stored in a surface file, as CPU tensors."""
    with open_landscape_file(path) as f:
        out = []
        for axis in "xy":
            if f"directions/{axis}" in f:
                group = f[f"directions/{axis}"]
                tensors: dict[str, torch.Tensor] = {}
                group.visititems(
                    lambda key, obj, t=tensors: (
                        t.__setitem__(key, torch.from_numpy(obj[()]))
                        if isinstance(obj, h5py.Dataset)
                        else None
                    )
                )
                out.append(tensors)
        return tuple(out)


def load_surface_arrays(
    path: str | os.PathLike,
) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray], dict[str, Any], np.ndarray]:
    """``(x, y, metrics, attrs, computed)`` read from a surface file."""
    with open_landscape_file(path) as f:
        if f.attrs.get("format") != FORMAT:
            raise ValueError(f"{os.fspath(path)} is a landscape file but not a surface")
        x = f["coords/x"][()]
        y = f["coords/y"][()] if "coords/y" in f else None
        metrics = {name: ds[()] for name, ds in f["metrics"].items()}
        return x, y, metrics, decode_attrs(f.attrs), f["computed"][()]


def describe_file(path: str | os.PathLike) -> str:
    """A readable summary of a landscape file: attributes, grid, completeness, groups."""
    lines = [os.fspath(path)]
    with open_landscape_file(path) as f:
        attrs = decode_attrs(f.attrs)
        width = max(map(len, attrs), default=0)
        lines += [f"  {key:<{width}}  {value}" for key, value in sorted(attrs.items())]
        if "coords" in f:
            shape = " x ".join(str(len(f["coords"][a])) for a in ("x", "y") if a in f["coords"])
            done = f["computed"][()]
            lines.append(f"  grid: {shape} points, {int(done.sum())} of {done.size} computed")
            for name, ds in f["metrics"].items():
                values = ds[()][done]
                finite = values[np.isfinite(values)]
                span = f"{finite.min():.6g} .. {finite.max():.6g}" if finite.size else "none finite"
                lines.append(f"  metric {name}: {span}")
        for name in f:
            if name not in ("coords", "metrics", "computed", "directions"):
                obj = f[name]
                children = ", ".join(sorted(obj)) if isinstance(obj, h5py.Group) else ""
                lines.append(f"  /{name}: {children}")
    return "\n".join(lines)
