"""The schema of curvature as an optimizer sees it: one group per result under ``/optim``.

Layout (in any landscape file; a new file gets format ``"landscape.results"``)::

    /optim/preconditioned_sharpness   attrs: converged, num_hvps, threshold, lr, optimizer,
                                             step, names; arrays: eigenvalues, residuals
    /optim/batch_sharpness            attrs: value, stderr, ratio_of_expectations,
                                             num_batches, batch_size, threshold;
                                             array: samples
    /optim/gradient_alignment         attrs: share, gradient_norm, converged, num_hvps;
                                             array: eigenvalues
    /optim/<kind>/settings            attrs: the result's settings

Example:
    >>> import tempfile, numpy as np
    >>> result = BatchSharpness(2.0, 0.1, np.array([1.9, 2.1]), 2.0, 2, 8)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     save_optim(result, f"{tmp}/o.h5")
    ...     load_optim(f"{tmp}/o.h5")["batch_sharpness"] == result
    True
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..results.optim import BatchSharpness, GradientAlignment, PreconditionedSharpness
from .files import open_landscape_file
from .groups import read_group, write_groups
from .registry import Schema, register

__all__ = ["KINDS", "load_optim", "save_optim"]

#: The group name of each result class.
KINDS = {
    PreconditionedSharpness: "preconditioned_sharpness",
    BatchSharpness: "batch_sharpness",
    GradientAlignment: "gradient_alignment",
}
_CLASSES = {kind: cls for cls, kind in KINDS.items()}

Result = PreconditionedSharpness | BatchSharpness | GradientAlignment


def save_optim(
    results: Result | Mapping[str, Result], path: str | os.PathLike, *, overwrite: bool = False
) -> None:
    """Write results into ``/optim/<kind>`` groups (one or a ``{kind: result}`` mapping).

    Raises:
        ValueError: a group exists and ``overwrite`` is false; a mapping key that is not the
            result's kind.
    """
    if not isinstance(results, Mapping):
        results = {KINDS[type(results)]: results}
    groups = {}
    for kind, result in results.items():
        if KINDS.get(type(result)) != kind:
            raise ValueError(f"expected the key {KINDS.get(type(result))!r}, got {kind!r}")
        fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
        settings = fields.pop("settings")
        arrays = {k: v for k, v in fields.items() if isinstance(v, np.ndarray)}
        attrs = {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}
        attrs = {k: v for k, v in attrs.items() if k not in arrays}
        groups[f"optim/{kind}"] = (arrays, attrs)
        groups[f"optim/{kind}/settings"] = ({}, dict(settings))
    if not overwrite and os.path.exists(path):
        with open_landscape_file(path) as f:
            taken = [g for g in groups if g in f]
        if taken:
            raise ValueError(f"{os.fspath(path)} already has /{taken[0]}; pass overwrite=True")
    write_groups(path, groups, overwrite=overwrite)


def _value(cls: type, name: str, value: Any) -> Any:
    kind = {f.name: f.type for f in dataclasses.fields(cls)}[name]
    if "tuple" in str(kind):
        return tuple(value)
    if kind in ("bool",):
        return bool(value)
    if kind in ("int",):
        return int(value)
    if kind in ("float",):
        return float(value)
    return value


def load_optim(path: str | os.PathLike) -> dict[str, Result]:
    """Every ``/optim/<kind>`` result of a file, by kind (empty if there is none)."""
    with open_landscape_file(path) as f:
        kinds = [k for k in f["optim"] if k in _CLASSES] if "optim" in f else []
    results = {}
    for kind in kinds:
        cls = _CLASSES[kind]
        arrays, attrs = read_group(path, f"optim/{kind}")
        _, settings = read_group(path, f"optim/{kind}/settings")
        values = {k: _value(cls, k, v) for k, v in {**attrs, **arrays}.items()}
        results[kind] = cls(**values, settings=settings)
    return results


def _schema(cls: type, kind: str) -> Schema:
    return Schema(
        f"optim.{kind}",
        (cls,),
        save_optim,
        lambda path: load_optim(path)[kind],
        lambda f: f"optim/{kind}" in f,
    )


for _cls, _kind in KINDS.items():
    register(_schema(_cls, _kind))
