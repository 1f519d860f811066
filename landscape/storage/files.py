"""Landscape HDF5 files: create (atomically), open and validate, stamp, result groups.

Every landscape file carries ``format`` (``"landscape.surface"``, ``"landscape.results"``,
``"landscape.compare"``, ...) and ``format_version`` on its root; :func:`open_landscape_file`
refuses anything else with one line saying what is wrong. A new file is written under a
temporary name in the same folder and renamed into place when complete, so a reader (or
a rerun) never finds a half-created file under the real name.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator, Mapping
from typing import Any

import h5py
import numpy as np
import torch

from .codec import decode_attrs, encode_attr

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "PROVENANCE_ATTRS",
    "STAMP_ATTRS",
    "create_file",
    "describe_file",
    "existing_groups",
    "open_landscape_file",
    "read_group",
    "stamp_root",
    "write_group",
]

FORMAT = "landscape.surface"
FORMAT_VERSION = 1
#: Root attributes that say which file this is, not what was computed.
STAMP_ATTRS = ("format", "format_version", "landscape_version", "torch_version", "created")
#: Attributes of a result group that say where it came from; ``describe_file`` prints them.
PROVENANCE_ATTRS = (
    "model",
    "checkpoint_path",
    "checkpoint_sha256",
    "data",
    "data_sha256",
    "num_examples",
    "loss_name",
    "train_mode",
    "precision",
)


def _version() -> str:
    from .. import __version__

    return __version__


def stamp_root(f: h5py.File, fmt: str = FORMAT) -> None:
    """Write the attributes every landscape file carries on its root."""
    f.attrs["format"] = fmt
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["landscape_version"] = _version()
    f.attrs["torch_version"] = str(torch.__version__)
    f.attrs["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@contextlib.contextmanager
def create_file(path: str | os.PathLike, fmt: str = FORMAT) -> Iterator[h5py.File]:
    """A new stamped landscape file, written under a temporary name and renamed to ``path``
    when the block ends without error (replacing any file there); on error nothing appears.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     with create_file(f"{tmp}/r.h5", "landscape.results") as f:
        ...         f["values"] = np.arange(3.0)
        ...     with open_landscape_file(f"{tmp}/r.h5") as f:
        ...         f["values"][()].tolist()
        [0.0, 1.0, 2.0]
    """
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    try:
        with h5py.File(temporary, "w") as f:
            stamp_root(f, fmt)
            yield f
            f.flush()
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def open_landscape_file(path: str | os.PathLike, mode: str = "r") -> h5py.File:
    """Open an existing landscape HDF5 file, refusing truncated, foreign or newer files.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not HDF5, is damaged, is held by a writer (``mode="a"``),
            is not a landscape file, or was written by a newer format version.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory, not a landscape HDF5 file")
    try:  # reading never takes the lock, so `landscape info` works while a run writes
        f = h5py.File(path, mode, locking=False) if mode == "r" else h5py.File(path, mode)
    except OSError as err:
        if "unable to lock" in str(err):
            raise ValueError(
                f"{path} is open for writing by another process (a run still going?); "
                "wait for it to finish or stop it"
            ) from None
        advice = (  # never advise deleting what may be the user's checkpoint or data
            "landscape reads the .h5 files it writes"
            if mode == "r"
            else "choose another output path, or replace it with overwrite=True / --overwrite"
        )
        raise ValueError(
            f"{path} is not a readable HDF5 file (not HDF5, truncated or damaged): {err}; {advice}"
        ) from None
    fmt = _text(f.attrs.get("format"))
    version = f.attrs.get("format_version")
    problem = None
    if not isinstance(fmt, str) or not fmt.startswith("landscape."):
        problem = f"{path} is an HDF5 file but not a landscape file (format attr: {fmt!r})"
    elif not isinstance(version, (int, np.integer)) or isinstance(version, (bool, np.bool_)):
        problem = f"{path} has no integer format_version (got {_text(version)!r}); damaged?"
    elif version > FORMAT_VERSION:
        problem = (
            f"{path} has format_version {int(version)}, newer than the {FORMAT_VERSION} this "
            f"landscape {_version()} reads; upgrade landscape to read it"
        )
    if problem is not None:
        f.close()
        raise ValueError(problem)
    return f


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


def write_group(
    path: str | os.PathLike,
    name: str,
    *,
    arrays: Mapping[str, Any],
    attrs: Mapping[str, Any],
    overwrite: bool = False,
) -> None:
    """Write a result group ``/name`` (datasets from ``arrays``, settings in ``attrs``,
    encoded by :func:`~landscape.storage.codec.encode_attr`) into the landscape file at
    ``path``; a missing file is created whole (format ``"landscape.results"``).

    Raises:
        ValueError: the group exists and ``overwrite`` is false, or the file is foreign.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        with create_file(path, "landscape.results") as f:
            _fill_group(f.create_group(name), arrays, attrs)
        return
    with open_landscape_file(path, "a") as f:
        if name in f:
            if not overwrite:
                raise ValueError(
                    f"{path} already has /{name}; pass overwrite=True (--overwrite) to replace it"
                )
            del f[name]
        _fill_group(f.create_group(name), arrays, attrs)
        f.flush()


def read_group(path: str | os.PathLike, name: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read ``/name`` back: ``({dataset: array}, attrs)``, attrs decoded; nested groups
    are flattened with ``/`` in the keys.

    Raises:
        KeyError: the file has no group ``/name``.
    """
    with open_landscape_file(path) as f:
        if name not in f or not isinstance(f[name], h5py.Group):
            raise KeyError(f"{os.fspath(path)} has no group /{name}; it has {sorted(f)}")
        group = f[name]
        arrays: dict[str, np.ndarray] = {}

        def visit(key: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                arrays[key] = obj[()]

        group.visititems(visit)
        return arrays, decode_attrs(group.attrs)


def _provenance_lines(group: h5py.Group) -> list[str]:
    """The provenance attributes of ``group``'s subgroups: once when they all agree, else
    subgroup by subgroup (subgroups without any, as version 0.1 wrote, are left out)."""
    found = {}
    for name, child in group.items():
        if isinstance(child, h5py.Group):
            attrs = decode_attrs(child.attrs)
            values = {k: attrs[k] for k in PROVENANCE_ATTRS if k in attrs}
            if values:
                found[name] = values
    distinct = {repr(sorted(v.items())) for v in found.values()}
    blocks = [("", next(iter(found.values())))] if len(distinct) == 1 else list(found.items())
    lines = []
    for name, values in blocks:
        indent = "    "
        if name:
            lines.append(f"    /{group.name.lstrip('/')}/{name}:")
            indent = "      "
        width = max(map(len, values))
        lines += [f"{indent}{key:<{width}}  {value}" for key, value in values.items()]
    return lines


def describe_file(path: str | os.PathLike) -> str:
    """A readable summary of a landscape file: attributes, grid, completeness, groups, and
    where each group of results came from (:data:`PROVENANCE_ATTRS`)."""
    lines = [os.fspath(path)]
    with open_landscape_file(path) as f:
        attrs = decode_attrs(f.attrs)
        width = max(map(len, attrs), default=0)
        lines += [f"  {key:<{width}}  {value}" for key, value in sorted(attrs.items())]
        if "coords" in f and "computed" in f and "metrics" in f:
            shape = " x ".join(str(len(f["coords"][a])) for a in ("x", "y") if a in f["coords"])
            done = f["computed"][()]
            lines.append(f"  grid: {shape} points, {int(done.sum())} of {done.size} computed")
            for name, ds in f["metrics"].items():
                values = ds[()]
                values = values[done] if values.shape == done.shape else values
                finite = values[np.isfinite(values)]
                span = f"{finite.min():.6g} .. {finite.max():.6g}" if finite.size else "none finite"
                lines.append(f"  metric {name}: {span}")
        for name in f:
            if name not in ("coords", "metrics", "computed", "directions"):
                obj = f[name]
                children = ", ".join(sorted(obj)) if isinstance(obj, h5py.Group) else ""
                lines.append(f"  /{name}: {children}")
                if isinstance(obj, h5py.Group):
                    lines += _provenance_lines(obj)
    return "\n".join(lines)
