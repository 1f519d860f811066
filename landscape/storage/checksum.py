"""Checksums of stored values: a block of results is verified whenever it is read.

Each result group written by :func:`~landscape.storage.groups.write_groups` records
``values_sha256``: the SHA-256 of its attributes and of every dataset under it (names,
dtypes, shapes and bytes). A surface records one over its computed values and mask on
``/computed``. Reading, resuming and ``landscape info`` recompute it, so one flipped byte
is found; files without checksums (version 0.2 and before) are read as they are.
"""

from __future__ import annotations

import hashlib
from typing import Any

import h5py
import numpy as np

__all__ = ["CHECKSUM_ATTR", "damaged_groups", "group_sha256", "values_sha256"]

CHECKSUM_ATTR = "values_sha256"


def _feed(digest: Any, key: str, value: Any) -> None:
    digest.update(key.encode() + b"\0")
    if isinstance(value, bytes):
        digest.update(b"b" + value)
    elif isinstance(value, str):
        digest.update(b"s" + value.encode())
    else:
        array = np.asarray(value)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        if array.dtype.kind == "O":
            digest.update(repr(array.tolist()).encode())
        else:
            digest.update(np.ascontiguousarray(array).tobytes())


def values_sha256(arrays: dict[str, Any]) -> str:
    """The SHA-256 of named arrays (names, dtypes, shapes and bytes), in name order.

    Example:
        >>> values_sha256({"a": np.zeros(2)}) == values_sha256({"a": np.zeros(2)})
        True
    """
    digest = hashlib.sha256()
    for key in sorted(arrays):
        _feed(digest, key, arrays[key])
    return digest.hexdigest()


def group_sha256(group: h5py.Group) -> str:
    """The checksum of a group: its attributes (but the checksum) and every dataset
    under it."""
    digest = hashlib.sha256()
    for key in sorted(group.attrs):
        if key != CHECKSUM_ATTR:
            _feed(digest, f"@{key}", group.attrs[key])
    found: list[tuple[str, h5py.Dataset]] = []
    group.visititems(
        lambda k, obj: found.append((k, obj)) if isinstance(obj, h5py.Dataset) else None
    )
    for key, dataset in sorted(found, key=lambda item: item[0]):
        _feed(digest, key, dataset[()])
    return digest.hexdigest()


def intact(group: h5py.Group) -> bool:
    """Whether a group matches its recorded checksum (True when it records none)."""
    stored = group.attrs.get(CHECKSUM_ATTR)
    if stored is None:
        return True
    stored = stored.decode() if isinstance(stored, bytes) else stored
    return stored == group_sha256(group)


def damaged_groups(f: h5py.File) -> list[str]:
    """The groups of a file that do not match their recorded checksum."""
    bad: list[str] = []

    def visit(key: str, obj: Any) -> None:
        if isinstance(obj, h5py.Group) and CHECKSUM_ATTR in obj.attrs and not intact(obj):
            bad.append(key)

    f.visititems(visit)
    return bad
