"""The sharpness schema: one group per measure under ``/sharpness`` (or another parent).

Layout (in any landscape file; a new file gets format ``"landscape.results"``)::

    /sharpness/<name>      attrs: name, value, stderr (NaN where it cannot be estimated),
                                  every setting (provenance included: model,
                                  checkpoint_sha256, data_sha256, num_examples, loss_name,
                                  ...), every extra quantity, extra_names (which attrs are
                                  extras), interval (float64 [low, high], only when the
                                  result has one)
    /sharpness/<name>/samples   float64, the per-sample values, if any

Files written by version 0.1 (no ``interval``; ``None`` and lists stored as plain JSON
text) load unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..results.sharpness import CONTRACT_ORDER, SharpnessResult
from .files import open_landscape_file
from .groups import check_free, read_group, write_groups
from .registry import Schema, register, result_and_path

__all__ = ["load_sharpness", "save_sharpness"]

_RESERVED = frozenset({"name", "value", "stderr", "extra_names", "interval"})


def save_sharpness(
    results: Mapping[str, SharpnessResult] | SharpnessResult,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    group: str = "sharpness",
    attrs: Mapping[str, Any] | None = None,
) -> None:
    """Write results into ``/<group>/<name>`` groups of a landscape HDF5 file (the 0.2 order
    ``save_sharpness(path, results)`` still works, with a DeprecationWarning).

    Args:
        results: ``{name: SharpnessResult}`` as :func:`landscape.sharpness.sharpness`
            returns, or one result (stored under its name).
        path: the file; created if missing, otherwise added to.
        overwrite: replace groups that exist; otherwise they raise before anything is written.
            The groups are written together: a run killed while saving leaves none of
            them, or each one whole.
        group: the parent group (``compare/<label>/sharpness`` in a comparison file).
        attrs: added to every group's attrs over the settings of the same name (e.g. the
            import strings of the model and data); read back as settings.

    Raises:
        ValueError: a group exists and ``overwrite`` is false, the file is not a landscape
            file, or a result's settings and extra share a name or use a reserved one.

    Example:
        >>> import tempfile
        >>> from landscape.sharpness import SharpnessResult
        >>> result = SharpnessResult("rise", 0.5, 0.1, {"rho": 0.25, "seed": 0})
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     save_sharpness({"rise": result}, f"{tmp}/s.h5")
        ...     load_sharpness(f"{tmp}/s.h5")["rise"] == result
        True
    """
    results, path = result_and_path(
        results, path, "save_sharpness", keyed=(SharpnessResult, "name")
    )
    check_free(path, [f"{group}/{n}" for n in results], overwrite=overwrite)
    groups = sharpness_groups(results, group=group, attrs=attrs)
    write_groups(path, groups, overwrite=overwrite)


def sharpness_groups(
    results: Mapping[str, Any], *, group: str = "sharpness", attrs: Mapping[str, Any] | None = None
) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """The groups :func:`save_sharpness` writes, as :func:`write_groups` takes them.

    Raises:
        ValueError: a result's settings and extra share a name or use a reserved one.
    """
    added = dict(attrs or {})
    for name, result in results.items():
        settings = {**result.settings, **added}
        names = set(settings) | set(result.extra)
        clash = (set(settings) & set(result.extra)) | (names & _RESERVED)
        if clash:
            raise ValueError(
                f"{name}: settings and extra share names or use reserved ones: {sorted(clash)}"
            )
    groups = {}
    for name, result in results.items():
        group_attrs = {
            "name": result.name,
            "value": result.value,
            "stderr": result.stderr,
            **result.settings,
            **added,
            **result.extra,
            "extra_names": list(result.extra),
        }
        if result.interval is not None:
            group_attrs["interval"] = np.asarray(result.interval, dtype=np.float64)
        arrays = {} if result.samples is None else {"samples": result.samples}
        groups[f"{group}/{name}"] = (arrays, group_attrs)
    return groups


def load_sharpness(
    path: str | os.PathLike, *, group: str = "sharpness"
) -> dict[str, SharpnessResult]:
    """Read every ``/<group>/<name>`` group written by :func:`save_sharpness`.

    Returns:
        ``{name: SharpnessResult}`` in the contract's order (that of
        :data:`landscape.sharpness.MEASURES`), other names after; empty if the file has no
        sharpness results.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a landscape file.
    """
    with open_landscape_file(path) as f:
        names = list(f[group]) if group in f else []
    order = list(CONTRACT_ORDER)
    names.sort(key=lambda n: order.index(n) if n in order else len(order))
    results = {}
    for name in names:
        arrays, attrs = read_group(path, f"{group}/{name}")
        extra_names = attrs.pop("extra_names")
        extra = {k: float(attrs.pop(k)) for k in extra_names}
        interval = attrs.pop("interval", None)
        if interval is not None:
            interval = (float(interval[0]), float(interval[1]))
        result_name, value, stderr = attrs.pop("name"), attrs.pop("value"), attrs.pop("stderr")
        results[name] = SharpnessResult(
            result_name,
            float(value),
            float(stderr),
            attrs,
            extra,
            arrays.get("samples"),
            interval,
        )
    return results


register(Schema(
    "sharpness", (SharpnessResult,), save_sharpness, load_sharpness,
    lambda f: "sharpness" in f, key="name",
))  # fmt: skip
