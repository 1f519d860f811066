"""The comparison schema: one file for many checkpoints, written checkpoint by checkpoint.

Layout (the same as version 0.1 wrote, so its files still load and resume)::

    /                          attrs: format = "landscape.compare", the stamp, and every
                               setting of the comparison (measures, line, plane, seed, ...)
    /compare/<label>           attrs: train_* and test_* evaluation values,
                               checkpoint_sha256, complete (written last)
    /compare/<label>/sharpness one group per measure (landscape.storage.sharpness)
    /compare/<label>/line      x, metrics (num_directions, nx); attrs of the surface
    /compare/<label>/plane     x, y, metrics (nx, ny); attrs of the surface
    /barriers                  before (K, K) and, after alignment, after (K, K): the
                               pairwise loss barriers; attrs labels, align, repair,
                               num_points, seed

A label's groups and its ``complete`` mark are written in one commit (a copy of the file
renamed into place); a label marked complete that lacks a group it should have is
computed again.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

import h5py
import numpy as np

from .checksum import damaged_groups
from .codec import decode_attrs, encode_attr, same_attr
from .files import create_file, open_landscape_file
from .groups import read_group, write_groups
from .locks import holding
from .sharpness import load_sharpness, sharpness_groups

FORMAT_COMPARE = "landscape.compare"

__all__ = [
    "FORMAT_COMPARE",
    "holding_compare_file",
    "prepare_compare_file",
    "read_compare_label",
    "read_compare_results",
    "read_compare_barriers",
    "write_compare_barriers",
    "write_compare_label",
]

SurfaceArrays = tuple[dict[str, np.ndarray], dict[str, Any]]


def prepare_compare_file(
    path: str | os.PathLike, settings: Mapping[str, Any], *, overwrite: bool = False
) -> set[str]:
    """Create the comparison file, or check an existing one and return its finished labels
    (the file is not held afterwards: :func:`holding_compare_file` holds it).

    Raises:
        ValueError: the file was made by another comparison (the message names the
            settings that differ) and ``overwrite`` is false, or another process has it
            open for writing.
    """
    with holding_compare_file(path, settings, overwrite=overwrite) as done:
        return done


@contextlib.contextmanager
def holding_compare_file(
    path: str | os.PathLike, settings: Mapping[str, Any], *, overwrite: bool = False
) -> Iterator[set[str]]:
    """As :func:`prepare_compare_file`, holding the file (its lock) for the block: a second
    comparison on it, with or without ``overwrite``, is refused meanwhile. A new file is
    created whole under a temporary name and renamed into place (never truncating a file
    another process has open); each label is then added through a copy renamed into
    place, and the hold moves to each new file before its rename (:mod:`.locks`).

    Raises:
        ValueError: as :func:`prepare_compare_file`.
    """
    with holding(path):
        if os.path.exists(path) and not overwrite:
            with open_landscape_file(path) as f:
                stored = decode_attrs(f.attrs)
                differ = [k for k, v in settings.items() if not same_attr(stored.get(k), v)]
                if f.attrs.get("format") != FORMAT_COMPARE or differ:
                    raise ValueError(
                        f"{os.fspath(path)} was made by another comparison (differs in "
                        f"{differ}); use another file, or overwrite=True / --overwrite"
                    )
                group = f.get("compare", {})
                done = {label for label in group if _finished(group[label], settings)}
        else:
            with create_file(path, FORMAT_COMPARE) as f:
                for key, value in settings.items():
                    f.attrs[key] = encode_attr(value)
            done = set()
        yield done


def _finished(group: h5py.Group, settings: Mapping[str, Any]) -> bool:
    """Whether a label is marked complete, has every group the settings ask for and each
    matches its checksum (a group lost or damaged is computed again)."""
    if not group.attrs.get("complete", False):
        return False
    wanted = ["sharpness"] if settings.get("measures") else []
    wanted += [kind for kind in ("line", "plane") if settings.get(kind) is not None]
    if not all(kind in group for kind in wanted):
        return False
    return not damaged_groups(group)  # a damaged group is computed again too


def write_compare_label(
    path: str | os.PathLike,
    label: str,
    *,
    checkpoint_sha256: str,
    evaluation: Mapping[str, float],
    measures: Mapping[str, Any],
    surfaces: Mapping[str, SurfaceArrays],
) -> None:
    """Write one checkpoint's results and mark it complete (last, so a kill redoes it).

    Args:
        path: the comparison file (from :func:`prepare_compare_file`).
        label: the checkpoint's label.
        checkpoint_sha256: fingerprint of its state, checked when the file is resumed.
        evaluation: ``{"train_loss": ..., "test_accuracy": ...}``.
        measures: ``{name: SharpnessResult}``.
        surfaces: ``{"line" or "plane": (arrays, attrs)}``; arrays hold ``x`` (and ``y``)
            and the metrics.
    """
    base = f"compare/{label}"
    groups = sharpness_groups(measures, group=f"{base}/sharpness")
    for kind, (arrays, attrs) in surfaces.items():
        groups[f"{base}/{kind}"] = (arrays, attrs)
    mark = {**evaluation, "checkpoint_sha256": checkpoint_sha256, "complete": True}
    write_groups(path, groups, overwrite=True, group_attrs={base: mark})  # one commit


def read_compare_label(
    path: str | os.PathLike, label: str, *, checkpoint_sha256: str
) -> tuple[dict[str, float], dict[str, Any], dict[str, SurfaceArrays]]:
    """One finished checkpoint's ``(evaluation, measures, surfaces)`` as written by
    :func:`write_compare_label`; evaluation keys in the order they were computed (train
    before test, the loss first).

    Raises:
        ValueError: the label was computed for a checkpoint with another fingerprint.
    """
    base = f"compare/{label}"
    with open_landscape_file(path) as f:
        attrs = decode_attrs(f[base].attrs)
        kinds = [k for k in ("line", "plane") if k in f[base]]
    if attrs.get("checkpoint_sha256") != checkpoint_sha256:
        raise ValueError(f"{os.fspath(path)}: {label!r} was computed for another checkpoint")
    keys = [k for k in attrs if k.startswith(("train_", "test_"))]
    keys.sort(key=lambda k: (k.startswith("test_"), not k.endswith("_loss"), k))
    evaluation = {k: attrs[k] for k in keys}
    for key, value in evaluation.items():
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
            raise ValueError(
                f"{os.fspath(path)} is damaged: /{base} has {key} = {value!r}; expected a number"
            )
    measures = load_sharpness(path, group=f"{base}/sharpness")
    surfaces = {kind: read_group(path, f"{base}/{kind}") for kind in kinds}
    return evaluation, measures, surfaces


def read_compare_results(
    path: str | os.PathLike,
) -> tuple[dict[str, Any], dict[str, tuple[dict[str, float], dict[str, Any]]]]:
    """A comparison file's settings and, for every finished label, ``(evaluation,
    measures)`` as :func:`read_compare_label` gives them (the surfaces left out).

    Raises:
        ValueError: the file is not a comparison file.
    """
    with open_landscape_file(path) as f:
        if f.attrs.get("format") != FORMAT_COMPARE:
            raise ValueError(
                f"{os.fspath(path)} is not a comparison file (format {f.attrs.get('format')!r}); "
                "expected the compare.h5 that compare_checkpoints or landscape compare writes"
            )
        settings = decode_attrs(f.attrs)
        group = f.get("compare", {})
        found = {label: group[label].attrs["checkpoint_sha256"] for label in group
                 if group[label].attrs.get("complete", False)}  # fmt: skip
    results = {}
    for label, sha in found.items():
        evaluation, measures, _ = read_compare_label(path, label, checkpoint_sha256=sha)
        results[label] = (evaluation, measures)
    return settings, results


def write_compare_barriers(
    path: str | os.PathLike, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]
) -> None:
    """Write (or replace) the pairwise barrier matrix ``/barriers`` in one commit."""
    write_groups(path, {"barriers": (arrays, attrs)}, overwrite=True)


def read_compare_barriers(path: str | os.PathLike) -> SurfaceArrays | None:
    """``(arrays, attrs)`` of ``/barriers`` as :func:`write_compare_barriers` wrote them,
    or ``None`` where the file has none."""
    with open_landscape_file(path) as f:
        if "barriers" not in f:
            return None
    return read_group(path, "barriers")
