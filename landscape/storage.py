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
    from . import __version__

    return __version__


def encode_attr(value: Any) -> Any:
    """An attribute value h5py can store: numbers, strings and arrays as they are,
    anything else (None, dicts, lists of strings) as JSON text."""
    if isinstance(value, (bool, int, float, str, np.integer, np.floating, np.bool_)):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value
    if isinstance(value, (list, tuple)) and value and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
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
    f.attrs["torch_version"] = torch.__version__
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
    try:
        f = h5py.File(path, mode)
    except OSError as err:
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
                raise ValueError(f"{path} already has /{name}; pass overwrite=True to replace it")
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
