"""Result groups in landscape files: written whole (all the groups of one result in one
commit) and read back checked.

A missing file is created whole (:func:`~landscape.storage.files.create_file`); groups
are added to an existing one through a copy renamed into place
(:func:`~landscape.storage.files.rewrite_file`), so a reader, a kill or a full disk sees
all of them or none. Each group records ``values_sha256``
(:mod:`~landscape.storage.checksum`), verified by :func:`read_group`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import h5py
import numpy as np

from ..limits import check_memory
from .checksum import CHECKSUM_ATTR, group_sha256, intact
from .codec import decode_attrs, encode_attr
from .diskguard import planned_bytes
from .files import STAGING, create_file, open_landscape_file, rewrite_file

__all__ = ["existing_groups", "read_group", "write_group", "write_groups"]


def existing_groups(path: str | os.PathLike, names: list[str]) -> list[str]:
    """Which of the groups ``names`` a landscape file already has (none if no file)."""
    if not os.path.exists(path):
        return []
    with open_landscape_file(path) as f:
        return [name for name in names if name in f]


def _fill_group(group: h5py.Group, arrays: Mapping[str, Any], attrs: Mapping[str, Any]) -> None:
    for key, value in attrs.items():
        group.attrs[key] = encode_attr(value)
    for key, value in arrays.items():
        group.create_dataset(key, data=np.asarray(value))


def _taken(path: str, name: str) -> ValueError:
    return ValueError(
        f"{path} already has /{name}; pass overwrite=True (--overwrite) to replace it"
    )


def check_free(path: str | os.PathLike, names: Iterable[str], *, overwrite: bool) -> None:
    """Refuse, before any work, groups ``names`` that the file at ``path`` already has
    (unless ``overwrite``); :func:`write_groups` checks again while it writes.

    Raises:
        ValueError: a group exists and ``overwrite`` is false, or the file is foreign.
    """
    if overwrite or not os.path.exists(path):
        return
    with open_landscape_file(path) as f:
        taken = [name for name in names if name in f]
    if taken:
        raise _taken(os.fspath(path), taken[0])


def write_groups(
    path: str | os.PathLike,
    groups: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]],
    *,
    overwrite: bool = False,
    group_attrs: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Write result groups ``{name: (arrays, attrs)}`` (attrs encoded by
    :func:`~landscape.storage.codec.encode_attr`) into the landscape file at ``path``; a
    missing file is created whole (format ``"landscape.results"``), an existing one is
    changed through :func:`rewrite_file`: a reader, a kill or a full disk sees all the
    groups or none of them. ``group_attrs`` (``{group: attrs}``) are set on groups, made
    if missing, in the same commit (a ``complete`` mark, say).

    Raises:
        ValueError: a group exists and ``overwrite`` is false, or the file is foreign or
            held by another writer.
        DiskFullError: the disk is full.
    """
    path = os.fspath(path)
    size = planned_bytes(np.asarray(v) for arrays, _ in groups.values() for v in arrays.values())
    if not os.path.exists(path):
        with create_file(path, "landscape.results", size=size) as f:
            _fill_groups(f, groups, group_attrs)
        return
    with rewrite_file(path, size=size) as f:
        taken = [name for name in groups if name in f]
        if taken and not overwrite:
            raise _taken(path, taken[0])
        if STAGING in f:  # left by a run of version 0.2 killed while saving
            del f[STAGING]
        for name in groups:
            if name in f:
                del f[name]
        _fill_groups(f, groups, group_attrs)


def _fill_groups(
    f: h5py.File,
    groups: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]],
    group_attrs: Mapping[str, Mapping[str, Any]] | None,
) -> None:
    for name, (arrays, attrs) in groups.items():
        _fill_group(f.create_group(name), arrays, attrs)
    for name in groups:  # once every group is whole (a parent's covers its children's values)
        f[name].attrs[CHECKSUM_ATTR] = group_sha256(f[name])
    for name, attrs in (group_attrs or {}).items():
        group = f.require_group(name)
        for key, value in attrs.items():
            group.attrs[key] = encode_attr(value)


def write_group(
    path: str | os.PathLike,
    name: str,
    *,
    arrays: Mapping[str, Any],
    attrs: Mapping[str, Any],
    overwrite: bool = False,
) -> None:
    """Write one result group ``/name``, as :func:`write_groups` does.

    Raises:
        ValueError: the group exists and ``overwrite`` is false, or the file is foreign.
    """
    write_groups(path, {name: (arrays, attrs)}, overwrite=overwrite)


class _Stored(dict):
    """What a group holds (datasets or attributes): reading a name it lacks says the file
    is damaged, in one line, instead of a bare ``KeyError('residuals')``."""

    def __init__(self, items: Mapping[str, Any], where: str):
        super().__init__(items)
        self.where = where

    def __missing__(self, key: str) -> Any:
        raise ValueError(f"{self.where} {key}")

    def pop(self, key: str, *default: Any) -> Any:
        if not default and key not in self:
            return self.__missing__(key)
        return super().pop(key, *default)


def read_group(path: str | os.PathLike, name: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read ``/name`` back: ``({dataset: array}, attrs)``, attrs decoded; nested groups
    are flattened with ``/`` in the keys. Reading a dataset or attribute that the group
    lacks raises ValueError ("FILE is damaged: /NAME has no KEY").

    Raises:
        KeyError: the file has no group ``/name``.
    """
    with open_landscape_file(path) as f:
        if name not in f or not isinstance(f[name], h5py.Group):
            raise KeyError(f"{os.fspath(path)} has no group /{name}; it has {sorted(f)}")
        group = f[name]
        if not intact(group):
            raise ValueError(
                f"{os.fspath(path)} is damaged: /{name} does not match its checksum "
                f"{CHECKSUM_ATTR}; compute it again (--overwrite)"
            )
        arrays: dict[str, np.ndarray] = {}

        def visit(key: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                check_memory(f"/{name}/{key} of {os.fspath(path)}", obj.size * obj.dtype.itemsize)
                arrays[key] = obj[()]

        group.visititems(visit)
        attrs = decode_attrs(group.attrs)
        attrs.pop(CHECKSUM_ATTR, None)
        damaged = f"{os.fspath(path)} is damaged: /{name} has no"
        return _Stored(arrays, damaged), _Stored(attrs, f"{damaged} attribute")
