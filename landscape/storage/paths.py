"""The paths schema: loss along lines and curves between two checkpoints.

Layout (in any landscape file; a new file gets format ``"landscape.results"``)::

    /paths/<kind>          kind: line, bezier or polychain
                           attrs: kind, barrier, barrier_t, metric_names, every setting
                                  (bn_reestimate, the fit's num_steps, lr, seed, ...)
    /paths/<kind>/t        float64 (num_points,), from 0 to 1
    /paths/<kind>/loss     float64 (num_points,)
    /paths/<kind>/accuracy float64 (num_points,), for a classifier (and one dataset per
                           other metric)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..results.paths import PathResult
from .files import open_landscape_file
from .groups import check_free, read_group, write_groups
from .registry import Schema, register, result_and_path

__all__ = ["load_paths", "save_paths"]

_RESERVED = frozenset({"kind", "barrier", "barrier_t", "metric_names"})
_ORDER = ("line", "bezier", "polychain")


def save_paths(
    results: Mapping[str, PathResult] | PathResult,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    attrs: Mapping[str, Any] | None = None,
) -> None:
    """Write path results into ``/paths/<kind>`` groups of a landscape HDF5 file, all in
    one commit (a kill leaves all of them or none). ``attrs`` are added to every group's
    attrs and read back as settings. The 0.2 order ``save_paths(path, results)`` still
    works, with a DeprecationWarning.

    Args:
        results: ``{kind: PathResult}`` (e.g. :attr:`landscape.paths.Connection.paths`),
            or one result (stored under its kind).
        path: the file; created if missing, otherwise added to.
        overwrite: replace groups that exist; otherwise they raise before anything is written.

    Raises:
        ValueError: a group exists and ``overwrite`` is false, the key is not the result's
            kind, a metric is called ``t``, or a setting uses a reserved name.

    Example:
        >>> import tempfile, numpy as np
        >>> from landscape.paths import PathResult
        >>> line = PathResult("line", np.array([0.0, 1.0]), {"loss": np.array([1.0, 2.0])},
        ...                   0.0, 0.0, {"bn_reestimate": False})
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     save_paths({"line": line}, f"{tmp}/p.h5")
        ...     load_paths(f"{tmp}/p.h5")["line"] == line
        True
    """
    results, path = result_and_path(results, path, "save_paths", keyed=(PathResult, "kind"))
    for kind, result in results.items():
        if kind != result.kind:
            raise ValueError(f"results[{kind!r}] holds a {result.kind!r} path; key it by its kind")
        if "t" in result.metrics:
            raise ValueError("a metric cannot be called 't' (the dataset of the curve parameter)")
        clash = set(result.settings) & _RESERVED
        if clash:
            raise ValueError(f"{kind}: settings use reserved names {sorted(clash)}")
    check_free(path, [f"paths/{k}" for k in results], overwrite=overwrite)
    groups = {}
    for kind, result in results.items():
        group_attrs = {
            **result.settings,
            **(attrs or {}),
            "kind": result.kind,
            "barrier": float(result.barrier),
            "barrier_t": float(result.barrier_t),
            "metric_names": list(result.metrics),
        }
        groups[f"paths/{kind}"] = ({"t": result.t, **result.metrics}, group_attrs)
    write_groups(path, groups, overwrite=overwrite)


def load_paths(path: str | os.PathLike) -> dict[str, PathResult]:
    """Every ``/paths/<kind>`` group written by :func:`save_paths`.

    Returns:
        ``{kind: PathResult}``, the line first; empty if the file holds no paths.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a landscape file.
    """
    with open_landscape_file(path) as f:
        kinds = list(f["paths"]) if "paths" in f else []
    kinds.sort(key=lambda k: _ORDER.index(k) if k in _ORDER else len(_ORDER))
    results = {}
    for kind in kinds:
        arrays, attrs = read_group(path, f"paths/{kind}")
        names = attrs.pop("metric_names")
        barrier, barrier_t = float(attrs.pop("barrier")), float(attrs.pop("barrier_t"))
        result_kind = attrs.pop("kind")
        metrics = {name: arrays[name] for name in names}
        results[kind] = PathResult(result_kind, arrays["t"], metrics, barrier, barrier_t, attrs)
    return results


register(Schema("paths", (PathResult,), save_paths, load_paths, lambda f: "paths" in f, key="kind"))
