"""One save/load convention over one schema registry: ``save(result, path)``, ``load(path)``.

Each kind of result registers one :class:`Schema` (its classes, its writer, its reader and
how to tell that a file holds one) where its layout is defined: ``hessian``, ``sharpness``
and ``paths`` here in :mod:`landscape.storage`, the surface, directions, trajectory and
tracking kinds in :mod:`landscape.io` (their classes are made by the compute modules above
this layer). :func:`save` picks the schema by the result's class; :func:`load` reads the
kind asked for or, without one, the kind the file records: its ``format`` attribute and the
groups it holds (a kind stored inside another one, such as the directions of a surface,
counts as part of it).

Collections: a ``sharpness`` or ``paths`` file holds several results by name, so those
kinds save one result or a mapping ``{name: result}`` and load the mapping.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import h5py

from .files import open_landscape_file

__all__ = [
    "Schema",
    "kinds_in",
    "load",
    "register",
    "result_and_path",
    "save",
    "schema",
    "schemas",
]


@dataclass(frozen=True)
class Schema:
    """How one kind of result is stored.

    Attributes:
        kind: the kind's name (``"surface"``, ``"hessian.eigen"``, ``"sharpness"``, ...).
        types: the result classes written under this kind.
        write: ``write(result, path, **options)``; for a collection, ``result`` is a mapping
            ``{key: result}``.
        read: ``read(path)`` -> the result (the mapping, for a collection).
        holds: whether an open landscape file holds a result of this kind.
        parts: kinds stored inside this one (read with it): ``load`` without a kind reads
            the whole.
        key: for a collection, the attribute that keys a result in its mapping (``name``
            for sharpness, ``kind`` for paths); ``None`` for a single result.
    """

    kind: str
    types: tuple[type, ...]
    write: Callable[..., None]
    read: Callable[..., Any]
    holds: Callable[[h5py.File], bool]
    parts: tuple[str, ...] = ()
    key: str | None = None


_SCHEMAS: dict[str, Schema] = {}


def register(entry: Schema) -> Schema:
    """Register a kind's schema once (a second schema for a kind or class is refused).

    Raises:
        ValueError: the kind, or one of its classes, already has a schema.
    """
    taken = _SCHEMAS.get(entry.kind)
    if taken is not None and taken != entry:
        raise ValueError(f"expected one schema per kind, got a second one for {entry.kind!r}")
    for other in _SCHEMAS.values():
        shared = set(other.types) & set(entry.types)
        if other.kind != entry.kind and shared:
            names = sorted(t.__name__ for t in shared)
            raise ValueError(f"expected one schema per class, got {names} in {other.kind!r} too")
    _SCHEMAS[entry.kind] = entry
    return entry


def schema(kind: str) -> Schema:
    """The schema registered for ``kind``.

    Raises:
        ValueError: no schema has that name.
    """
    try:
        return _SCHEMAS[kind]
    except KeyError:
        raise ValueError(f"expected a kind in {sorted(_SCHEMAS)}, got {kind!r}") from None


def schemas() -> dict[str, Schema]:
    """Every registered schema, by kind, in the order registered."""
    return dict(_SCHEMAS)


def _schema_of(result: Any) -> tuple[Schema, Any]:
    """The schema of a result (or of a mapping of a collection's results), and what its
    writer takes."""
    for entry in _SCHEMAS.values():
        if isinstance(result, entry.types):
            if entry.key is None:
                return entry, result
            return entry, {getattr(result, entry.key): result}
    if isinstance(result, Mapping) and result:
        types = {type(value) for value in result.values()}
        for entry in _SCHEMAS.values():
            if entry.key is not None and all(issubclass(t, entry.types) for t in types):
                return entry, dict(result)
    known = sorted(t.__name__ for entry in _SCHEMAS.values() for t in entry.types)
    raise TypeError(f"expected a result of a registered class {known}, got {_name(result)}")


def _name(value: Any) -> str:
    if isinstance(value, Mapping):
        inner = sorted({type(v).__name__ for v in value.values()})
        return f"a mapping of {inner}" if inner else "an empty mapping"
    return type(value).__name__


def save(result: Any, path: str | os.PathLike, **options: Any) -> None:
    """Write a result into the landscape file at ``path`` with its kind's schema.

    Args:
        result: any registered result (a mapping ``{name: result}`` for a collection).
        path: the file; created if missing, otherwise added to where the kind allows it.
        **options: the writer's options (``overwrite=``, ``attrs=``, ...).

    Raises:
        TypeError: no schema is registered for the result's class.
    """
    entry, value = _schema_of(result)
    entry.write(value, path, **options)


def kinds_in(path: str | os.PathLike) -> list[str]:
    """The kinds of result the landscape file at ``path`` holds, a kind stored inside
    another one left out (the directions of a surface, the eigenpairs of ``hessian``)."""
    with open_landscape_file(path) as f:
        found = [kind for kind, entry in _SCHEMAS.items() if entry.holds(f)]
    inside = {part for kind in found for part in _SCHEMAS[kind].parts}
    return [kind for kind in found if kind not in inside]


def load(path: str | os.PathLike, kind: str | None = None) -> Any:
    """Read a result from the landscape file at ``path``: of ``kind``, or of the one kind
    the file holds (see :func:`kinds_in`).

    Raises:
        FileNotFoundError: no file. ValueError: not a landscape file, an unknown kind, or
            no kind given for a file holding none or several.
        KeyError: the file holds no result of ``kind``.
    """
    if kind is None:
        found = kinds_in(path)
        if len(found) != 1:
            raise ValueError(
                f"expected a file holding one kind of result, got {found or 'none'} in "
                f"{os.fspath(path)}; pass kind= one of {found or sorted(_SCHEMAS)}"
            )
        kind = found[0]
    return schema(kind).read(path)


_R = TypeVar("_R")


@overload
def result_and_path(first: Any, second: Any, function: str) -> tuple[Any, Any]: ...
@overload
def result_and_path(
    first: Any, second: Any, function: str, *, keyed: tuple[type[_R], str]
) -> tuple[Mapping[str, _R], Any]: ...


def result_and_path(
    first: Any, second: Any, function: str, *, keyed: tuple[type, str] | None = None
) -> tuple[Any, Any]:
    """``(result, path)`` from a call's first two arguments, in the documented order
    ``(result, path)`` or the old ``(path, result)`` (with a DeprecationWarning).

    ``keyed=(cls, attribute)``, for a kind saved as a mapping: a lone ``cls`` result comes
    back as ``{result.<attribute>: result}``.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True):
        ...     result_and_path("out.h5", {"rise": 1.0}, "save_sharpness")
        ({'rise': 1.0}, 'out.h5')
    """
    if isinstance(first, (str, os.PathLike)) and not isinstance(second, (str, os.PathLike)):
        warnings.warn(
            f"{function}(path, result) is deprecated; expected {function}(result, path)",
            DeprecationWarning,
            stacklevel=3,
        )
        first, second = second, first
    if keyed is not None and isinstance(first, keyed[0]):
        first = {getattr(first, keyed[1]): first}
    return first, second
