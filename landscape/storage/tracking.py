"""The tracking schema: measures logged during training, one row a logged step.

Layout (in any landscape file; a new file is ``format = "landscape.results"``)::

    /tracking                 attrs: every setting of the Tracker (measures, every, loss,
                              data_sha256, seed, lr, ...) and measure_names
    /tracking/steps           int64 (n,), the logged steps, increasing
    /tracking/values/<name>   float64 (n,), or (n, nx) for the slice; NaN where not
                              computed (the trace between its logs, see trace_every)
    /tracking/stderr/<name>   float64 (n,), 0 for an exact value (absent for the slice)

Datasets grow by one row a log (or a few, see ``append_tracking_rows``), each append a
copy of the file renamed into place. ``steps`` is written last: a row is recorded once its
step is, and rows past ``len(steps)`` (from a process killed mid-write) are dropped when
the file is opened again. A column that a file made by an older version lacks (the
eigenvalues' ``<measure>_residual``) is added when a run continues it, NaN for the rows
before.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import numpy as np

from .codec import decode_attrs, encode_attr, same_attr
from .files import create_file, open_landscape_file, rewrite_file

GROUP = "tracking"

__all__ = [
    "append_tracking",
    "append_tracking_rows",
    "prepare_tracking",
    "read_tracking",
    "save_tracking",
    "write_tracking",
]


def _dataset(group: h5py.Group, name: str, row: np.ndarray) -> None:
    group.create_dataset(
        name, shape=(0, *row.shape), maxshape=(None, *row.shape), dtype=row.dtype,
        chunks=(64, *row.shape),
    )  # fmt: skip


def prepare_tracking(
    path: str | os.PathLike, settings: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]
) -> np.ndarray:
    """Create ``/tracking`` (and the file), or check an existing one; returns its steps.

    Args:
        path: the landscape file.
        settings: every setting of the run, compared on a restart.
        shapes: ``{measure: shape of one row}``: ``()`` for a number, ``(nx,)`` for a slice.

    Raises:
        ValueError: the file's ``/tracking`` was made with other settings (the message names
            each differing setting with both values), or the file is not a landscape file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        with create_file(path, "landscape.results"):
            pass
    with rewrite_file(path) as f:
        if GROUP in f:
            group = f[GROUP]
            stored = decode_attrs(group.attrs)
            differ = [
                f"{k}: file {stored.get(k)!r}, now {v!r}"
                for k, v in settings.items()
                if not same_attr(stored.get(k), v)
            ]
            if differ:
                raise ValueError(
                    f"{path} tracks a run with other settings ({'; '.join(differ)}); "
                    "use the same settings to continue it, or another path"
                )
            steps = group["steps"]
            for kind in ("values", "stderr"):  # drop rows past the last step
                for dataset in group[kind].values():
                    if len(dataset) > len(steps):
                        dataset.resize(len(steps), axis=0)
            _add_columns(group, shapes, len(steps))
            return steps[()]
        _create(f, settings, shapes)
        f.flush()
    return np.zeros(0, dtype=np.int64)


def _add_columns(group: h5py.Group, shapes: Mapping[str, tuple[int, ...]], n: int) -> None:
    """Columns of ``shapes`` that an older file lacks (a residual column, say), NaN for
    its ``n`` rows, appended to ``measure_names``."""
    names = list(decode_attrs(group.attrs)["measure_names"])
    for name, shape in shapes.items():
        if name in names:
            continue
        kinds = ("values", "stderr") if shape == () else ("values",)
        for kind in kinds:
            _dataset(group[kind], name, np.zeros(shape))
            group[kind][name].resize(n, axis=0)
            group[kind][name][...] = np.nan
        names.append(name)
    group.attrs["measure_names"] = encode_attr(names)


def _create(
    f: h5py.File, settings: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]
) -> h5py.Group:
    """An empty ``/tracking`` group with room to grow: no row yet."""
    group = f.create_group(GROUP)
    for key, value in {**settings, "measure_names": list(shapes)}.items():
        group.attrs[key] = encode_attr(value)
    _dataset(group, "steps", np.zeros((), dtype=np.int64))
    for kind in ("values", "stderr"):
        group.create_group(kind)
    for name, shape in shapes.items():
        _dataset(group["values"], name, np.zeros(shape))
        if shape == ():
            _dataset(group["stderr"], name, np.zeros(()))
    return group


def save_tracking(run: Any, path: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Write a :class:`~landscape.tracking.TrackingRun` (a :class:`~landscape.Tracker`'s
    ``run``, or one loaded) as ``/tracking``; :func:`landscape.load_tracking` reads it back.

    Raises:
        ValueError: as :func:`write_tracking`.
    """
    write_tracking(
        path, steps=run.steps, values=run.values, stderr=run.stderr, settings=run.settings,
        overwrite=overwrite,
    )  # fmt: skip


def write_tracking(
    path: str | os.PathLike,
    *,
    steps: np.ndarray,
    values: Mapping[str, np.ndarray],
    stderr: Mapping[str, np.ndarray],
    settings: Mapping[str, Any],
    overwrite: bool = False,
) -> None:
    """Write a whole logged run as ``/tracking`` in one commit (a Tracker given the same
    settings continues it, as one that logged it).

    Raises:
        ValueError: ``/tracking`` exists and ``overwrite`` is false, or the stderr are not
            those of the numeric measures.
    """
    path = os.fspath(path)
    steps = np.asarray(steps, dtype=np.int64)
    rows = {name: np.asarray(v, dtype=np.float64) for name, v in values.items()}
    numbers = sorted(name for name, v in rows.items() if v.ndim == 1)
    if sorted(stderr) != numbers:
        raise ValueError(f"expected stderr for {numbers}, got {sorted(stderr)}")
    if not os.path.exists(path):
        with create_file(path, "landscape.results"):
            pass
    with rewrite_file(path) as f:
        if GROUP in f:
            if not overwrite:
                raise ValueError(f"{path} already has /{GROUP}; pass overwrite=True to replace it")
            del f[GROUP]
        group = _create(f, settings, {name: v.shape[1:] for name, v in rows.items()})
        columns = [(group["values"][k], v) for k, v in rows.items()]
        columns += [(group["stderr"][k], np.asarray(v, np.float64)) for k, v in stderr.items()]
        for dataset, column in [*columns, (group["steps"], steps)]:
            dataset.resize(len(steps), axis=0)
            dataset[...] = column
        f.flush()


def append_tracking(
    path: str | os.PathLike,
    step: int,
    values: Mapping[str, Any],
    stderr: Mapping[str, float],
) -> None:
    """Append one logged step (every measure's value, and stderr of the numbers); flushed.

    Raises:
        ValueError: names other than the file's measures.
    """
    append_tracking_rows(path, [(step, values, stderr)])


def append_tracking_rows(
    path: str | os.PathLike,
    rows: Sequence[tuple[int, Mapping[str, Any], Mapping[str, float]]],
) -> None:
    """Append logged steps ``(step, values, stderr)`` in one commit (one rewrite of the
    file); flushed.

    Raises:
        ValueError: names other than the file's measures.
    """
    if not rows:
        return
    with rewrite_file(path) as f:
        group = f[GROUP]
        names = decode_attrs(group.attrs)["measure_names"]
        for _, values, _ in rows:
            if set(values) != set(names):
                raise ValueError(f"expected values for {names}, got {sorted(values)}")
        n, m = len(group["steps"]), len(rows)
        columns = [(group["values"][k], [r[1][k] for r in rows]) for k in rows[0][1]]
        columns += [(group["stderr"][k], [r[2][k] for r in rows]) for k in rows[0][2]]
        columns.append((group["steps"], [r[0] for r in rows]))  # steps last: the commit
        for dataset, column in columns:
            dataset.resize(n + m, axis=0)
            dataset[n:] = np.asarray(column, dtype=dataset.dtype)
        f.flush()


def read_tracking(path: str | os.PathLike) -> dict[str, Any]:
    """``/tracking`` as ``{steps, values, stderr, settings}``.

    Raises:
        KeyError: the file has no ``/tracking``.
    """
    with open_landscape_file(path) as f:
        if GROUP not in f:
            raise KeyError(f"{os.fspath(path)} has no /{GROUP}; it has {sorted(f)}")
        group = f[GROUP]
        settings = decode_attrs(group.attrs)
        names = settings.pop("measure_names")
        steps = group["steps"][()]
        n = len(steps)
        values = {k: group["values"][k][:n] for k in names}
        stderr = {k: group["stderr"][k][:n] for k in names if k in group["stderr"]}
    return {"steps": steps, "values": values, "stderr": stderr, "settings": settings}
