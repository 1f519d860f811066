"""Attribute encoding: the one place where Python values become HDF5 attributes and back.

``decode_attr(encode_attr(v))`` equals ``v`` for every kind a result stores:

- ``str``, ``bool``, ``int``, ``float`` are stored as they are (numpy scalars come back
  as the equal Python number);
- numeric numpy arrays (bool, int, float, complex; one or more dimensions) are stored as
  they are and come back with their dtype and shape;
- everything else (``None``, lists, tuples, dicts, 0-d and non-numeric arrays, integers
  beyond 64 bits) is stored as text ``"json:"`` followed by JSON, with tuples, numpy
  arrays and dicts with non-string keys tagged so that they come back as they were.

A string that could be read as anything but itself (one starting with ``"json:"``, one
that looks like the untagged JSON of version 0.1 files, or one holding a NUL) is stored
tagged too. Version 0.1 files wrote ``None``, dicts and lists of strings as plain JSON
text; :func:`decode_attr` reads those back as the values they were. Other objects (a
``torch.dtype``, a path) are stored as their ``str()``.

Example:
    >>> value = {"metrics": ["loss", "accuracy"], "shape": (3, 4), "seed": None}
    >>> encode_attr(value)
    'json:{"metrics": ["loss", "accuracy"], "shape": {"__tuple__": [3, 4]}, "seed": null}'
    >>> decode_attr(encode_attr(value)) == value
    True
    >>> decode_attr('["loss", "accuracy"]')  # as version 0.1 stored a list of names
    ['loss', 'accuracy']
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..results import values_equal

__all__ = ["JSON_PREFIX", "encode_attr", "decode_attr", "decode_attrs", "same_attr"]

#: Marks an attribute stored as JSON text.
JSON_PREFIX = "json:"

_NUMERIC_KINDS = "biufc"
_TUPLE, _ARRAY, _DICT = "__tuple__", "__ndarray__", "__dict__"
_TAGS = ({_TUPLE}, {_ARRAY, "dtype", "shape"}, {_DICT})
_INT64 = (-(2**63), 2**63 - 1)


def _to_json(value: Any) -> Any:
    """``value`` as plain JSON types, tuples, arrays and awkward dicts tagged."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, np.generic):
        return _to_json(value.item())
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, tuple):
        return {_TUPLE: [_to_json(v) for v in value]}
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return {_ARRAY: _to_json(value.tolist()), "dtype": value.dtype.str, "shape": value.shape}
    if isinstance(value, Mapping):
        keys = set(value)
        if all(isinstance(k, str) for k in keys) and keys not in _TAGS:
            return {k: _to_json(v) for k, v in value.items()}
        return {_DICT: [[_to_json(k), _to_json(v)] for k, v in value.items()]}
    return str(value)


def _from_json(value: Any) -> Any:
    """The inverse of :func:`_to_json` on parsed JSON."""
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if not isinstance(value, dict):
        return value
    keys = set(value)
    if keys == {_TUPLE}:
        return tuple(_from_json(v) for v in value[_TUPLE])
    if keys == {_ARRAY, "dtype", "shape"}:
        shape = tuple(_from_json(value["shape"]))
        return np.array(value[_ARRAY], dtype=np.dtype(value["dtype"])).reshape(shape)
    if keys == {_DICT}:
        return {_hashable(_from_json(k)): _from_json(v) for k, v in value[_DICT]}
    return {k: _from_json(v) for k, v in value.items()}


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, (list, tuple)) else key


def _legacy_json(text: str) -> tuple[bool, Any]:
    """``(True, value)`` when ``text`` is JSON as version 0.1 wrote it for a value that was
    not a string or number (``null``, a list, a dict, a quoted ``str()``)."""
    if text != "null" and not text.startswith(("[", "{", '"')):
        return False, None
    try:
        return True, json.loads(text)
    except ValueError:
        return False, None


def encode_attr(value: Any) -> Any:
    """A value h5py can store as an attribute, which :func:`decode_attr` turns back into
    ``value`` (see the module docstring for the kinds).

    Example:
        >>> encode_attr(0.5), encode_attr("loss"), encode_attr(None), encode_attr([1, 2])
        (0.5, 'loss', 'json:null', 'json:[1, 2]')
    """
    if isinstance(value, str):
        if value.startswith(JSON_PREFIX) or "\x00" in value or _legacy_json(value)[0]:
            return JSON_PREFIX + json.dumps(value)
        return value
    if isinstance(value, (bool, np.bool_, float, np.floating, np.integer)):
        return value
    if isinstance(value, int) and _INT64[0] <= value <= _INT64[1]:
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in _NUMERIC_KINDS and value.ndim:
        return value
    return JSON_PREFIX + json.dumps(_to_json(value), default=str)


def decode_attr(value: Any) -> Any:
    """The value :func:`encode_attr` was given, from what h5py reads back.

    Example:
        >>> decode_attr(encode_attr(("a", 1))), decode_attr(encode_attr('["not a list"]'))
        (('a', 1), '["not a list"]')
    """
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str):
        if value.startswith(JSON_PREFIX):
            return _from_json(json.loads(value[len(JSON_PREFIX) :]))
        found, legacy = _legacy_json(value)
        if found:
            return legacy
    return value


def decode_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Every attribute of an h5py object (its ``.attrs``), decoded by :func:`decode_attr`."""
    return {key: decode_attr(value) for key, value in attrs.items()}


def same_attr(stored: Any, value: Any) -> bool:
    """Whether a decoded stored attribute equals a run's value once stored.

    Example:
        >>> same_attr(["loss", "accuracy"], ("loss", "accuracy")), same_attr(1, 2)
        (True, False)
    """
    run = decode_attr(encode_attr(value))
    if isinstance(stored, np.ndarray) or isinstance(run, np.ndarray):
        # version 0.1 stored lists of numbers as arrays
        return np.asarray(stored).shape == np.asarray(run).shape and bool(
            np.array_equal(np.asarray(stored), np.asarray(run))
        )
    return values_equal(stored, run)
