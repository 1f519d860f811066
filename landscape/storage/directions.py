"""The directions schema: ``/directions`` of a landscape file (a surface's, or any other).

Layout::

    /directions            attrs: kind, settings
    /directions/x/<param>  one dataset per tensor, named by its parameter (or buffer) name
    /directions/y/<param>  absent for a line

A surface records the fingerprint ``directions_sha256`` of its directions on its root; the
stored tensors are checked against it whenever they are read. Version 0.1 files recorded
the kind and settings only in a surface's root attributes (``directions``,
``direction_settings``, ``cosine``); they are read from there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np
import torch

from .._hashing import state_sha256
from .codec import decode_attr, decode_attrs, encode_attr
from .files import create_file, open_landscape_file, rewrite_file

__all__ = [
    "check_fingerprint",
    "fill_directions",
    "load_directions",
    "read_directions",
    "write_directions",
]


def _write_tensors(group: h5py.Group, direction: Mapping[str, torch.Tensor]) -> None:
    for name, tensor in direction.items():
        group.create_dataset(name, data=tensor.detach().cpu().numpy())


def fill_directions(
    f: h5py.File | h5py.Group,
    directions: tuple[Mapping[str, torch.Tensor], ...],
    kind: str | None,
    settings: Mapping[str, Any] | None,
) -> None:
    group = f.require_group("directions")
    for axis, direction in zip("xy", directions, strict=False):
        _write_tensors(group.create_group(axis), direction)
    if kind is not None:
        group.attrs["kind"] = encode_attr(kind)
        group.attrs["settings"] = encode_attr(dict(settings or {}))


def check_fingerprint(f: h5py.File, path: str) -> None:
    """Refuse stored directions that differ from the ``directions_sha256`` they were
    stored with."""
    expected = decode_attr(f.attrs.get("directions_sha256"))
    if not isinstance(expected, str) or "directions/x" not in f:
        return
    stored = {
        f"{axis}/{key}": torch.from_numpy(np.asarray(tensor))
        for axis, direction in zip("xy", _read_tensors(f), strict=False)
        for key, tensor in direction.items()
    }
    if state_sha256(stored) != expected:
        raise ValueError(
            f"{path} is damaged: its stored directions do not match their fingerprint "
            "directions_sha256"
        )


def _read_tensors(f: h5py.File) -> list[dict[str, torch.Tensor]]:
    """The tensors under ``/directions/x`` (and ``/directions/y``), by parameter name."""
    out = []
    for axis in "xy":
        if f"directions/{axis}" in f:
            tensors: dict[str, torch.Tensor] = {}

            def visit(key: str, obj: Any, into: dict[str, torch.Tensor] = tensors) -> None:
                if isinstance(obj, h5py.Dataset):
                    into[key] = torch.from_numpy(np.asarray(obj[()]))

            f[f"directions/{axis}"].visititems(visit)
            out.append(tensors)
    return out


def read_directions(
    path: str | os.PathLike,
) -> tuple[tuple[dict[str, torch.Tensor], ...], str, dict[str, Any]]:
    """``(tensors, kind, settings)`` of the directions stored in a landscape file:
    ``tensors`` holds one state (CPU tensors) per axis. Version 0.1 files recorded the kind
    and settings only in a surface's root attributes (``directions``,
    ``direction_settings``, ``cosine``); they are read from there.

    Raises:
        KeyError: the file holds no directions.
        ValueError: they differ from the fingerprint stored with them.
    """
    with open_landscape_file(path) as f:
        if "directions/x" not in f:
            raise KeyError(f"{os.fspath(path)} holds no directions (no /directions/x)")
        check_fingerprint(f, os.fspath(path))
        out = _read_tensors(f)
        group_attrs = decode_attrs(f["directions"].attrs)
        if "kind" in group_attrs:
            return tuple(out), group_attrs["kind"], dict(group_attrs.get("settings") or {})
        root = decode_attrs(f.attrs)
        kind = root.get("directions", "custom")
        settings = dict(root.get("direction_settings") or {})
        if len(out) == 2 and "cosine" in root and kind == "random":
            settings["cosine"] = root["cosine"]
        return tuple(out), kind, settings


def load_directions(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], ...]:
    """The directions stored in a landscape file, as CPU tensors (empty if none)."""
    try:
        return read_directions(path)[0]
    except KeyError:
        return ()


def write_directions(
    path: str | os.PathLike,
    directions: tuple[Mapping[str, torch.Tensor], ...],
    *,
    kind: str,
    settings: Mapping[str, Any],
    overwrite: bool = False,
) -> None:
    """Store directions as ``/directions`` of a landscape file (created whole if missing).

    Raises:
        ValueError: the file already holds directions and ``overwrite`` is false.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        with create_file(path, "landscape.results") as f:
            fill_directions(f, directions, kind, settings)
        return
    with rewrite_file(path) as f:
        if "directions" in f:
            if not overwrite:
                raise ValueError(
                    f"{path} already holds directions; pass overwrite=True to replace them"
                )
            del f["directions"]
        fill_directions(f, directions, kind, settings)
        f.flush()
