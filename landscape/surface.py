"""1D lines and 2D planes of the loss around a checkpoint: compute, resume, return a Surface.

The point ``(x[i], y[j])`` is ``theta + x[i] * d_x + y[j] * d_y`` and every metric array is
indexed ``[i, j]`` for it. With a file, results are written and flushed as they come
(at most every ``write_interval`` seconds), so a killed run started again with the same
arguments computes only the points it lacks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from . import distributed, storage
from ._fingerprint import FINGERPRINT_ATTRS, classes_sha256, model_probe, probe_problem
from ._progress import progress_bar
from ._provenance import model_sha256
from .directions import Directions
from .limits import MAX_POINTS, check_limit
from .objective import Objective
from .params import ParamSelection, point_state, select_params, selection_attr, state_sha256
from .results import Result


@dataclass(frozen=True, eq=False)
class Surface(Result):
    """Metrics on a grid of points ``theta + x[i] * d_x (+ y[j] * d_y)``.

    Surfaces compare by value (:class:`~landscape.results.Result`): one loaded from a file
    equals the one computed and written there; ``path`` and ``provenance`` are left out.

    Attributes:
        x: coordinates along the first direction, shape ``(nx,)``.
        y: coordinates along the second direction, shape ``(ny,)``, or ``None`` for a line.
        metrics: ``{name: array}`` of shape ``(nx, ny)`` (or ``(nx,)``), indexed ``[i, j]``;
            NaN where not computed.
        attrs: every setting that made it (norm, seed, loss, ...), plus ``x_label`` and
            ``y_label`` naming the directions for plots, and ``num_computed`` and
            ``num_points`` for a computed or loaded surface.
        path: the HDF5 file it lives in, if any.
        provenance: for a surface read from a file, the file's stamp (``format``,
            ``format_version``, ``landscape_version``, ``torch_version``, ``created``).
    """

    x: np.ndarray
    y: np.ndarray | None
    metrics: dict[str, np.ndarray]
    attrs: dict[str, Any] = field(default_factory=dict)
    path: str | None = field(default=None, compare=False)
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_2d(self) -> bool:
        return self.y is not None

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.metrics[name]
        except KeyError:
            raise KeyError(f"no metric {name!r}; this surface has {sorted(self.metrics)}") from None


MIN_CHUNK = 8  # points per call of Objective.evaluate_points


def _check_size(num_points: int) -> None:
    """A larger grid than :data:`~landscape.limits.MAX_POINTS` is refused before anything
    is allocated."""
    check_limit("grid points", num_points, MAX_POINTS, "; use fewer points")


def parse_range(text: str) -> np.ndarray:
    """``"START:STOP:NUM"`` -> ``np.linspace(START, STOP, NUM)``.

    Example:
        >>> parse_range("-1:1:5")
        array([-1. , -0.5,  0. ,  0.5,  1. ])
    """
    parts = str(text).split(":")
    try:
        if len(parts) != 3:
            raise ValueError
        start, stop, num = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise ValueError(f"expected a range START:STOP:NUM such as -1:1:51, got {text!r}") from None
    if num < 1 or not (np.isfinite(start) and np.isfinite(stop)):
        raise ValueError(
            f"expected a range START:STOP:NUM with finite START, STOP and NUM >= 1, got {text!r}"
        )
    if num > 1 and start == stop:
        raise ValueError(
            f"expected a range START:STOP:NUM with START != STOP, got {text!r} ({num} equal "
            f"coordinates); for one point write {parts[0]}:{parts[1]}:1"
        )
    _check_size(num)
    return np.linspace(start, stop, num)


def _coords(values: Any, axis: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or len(array) == 0 or not np.all(np.isfinite(array)):
        raise ValueError(f"{axis} must be a non-empty 1D array of finite numbers, got {values!r}")
    return array


def _labels(directions: Directions) -> tuple[str, str]:
    if directions.kind == "interpolation":
        return "interpolation coefficient", "direction y"
    if directions.kind == "random":
        norm = directions.settings.get("norm", "filter")
        return f"random direction x ({norm}-normalized)", f"random direction y ({norm}-normalized)"
    if directions.kind == "checkpoints" and directions.settings.get("dir_type") == "states":
        note = " (states: buffers move too)"
    elif directions.kind == "checkpoints" and directions.settings.get("buffers"):
        note = " (weights only: buffers kept at a)"
    else:
        note = ""
    return f"{directions.kind} direction x{note}", f"{directions.kind} direction y{note}"


def _directions_sha256(used: tuple[Mapping[str, torch.Tensor], ...]) -> str:
    named = {f"{axis}/{n}": t for axis, d in zip("xy", used, strict=False) for n, t in d.items()}
    return state_sha256(named)


def _check_direction(direction: Mapping[str, torch.Tensor], base: Mapping[str, torch.Tensor]):
    for name, tensor in direction.items():
        if name not in base:
            raise ValueError(f"direction has {name!r}, which the model's state lacks")
        if tuple(tensor.shape) != tuple(base[name].shape):
            raise ValueError(
                f"direction {name!r} has shape {tuple(tensor.shape)}, "
                f"the model's has {tuple(base[name].shape)}"
            )


# The options that build the Objective, and their defaults: an Objective given to
# compute_surface comes with its own.
_OBJECTIVE_OPTIONS = {
    "loss": "cross_entropy",
    "loss_reduction": "auto",
    "metrics": None,
    "batch_loss": None,
    "train_mode": False,
    "cache_data": True,
    "allow_nonfinite": False,
    "batch_size": None,
    "precision": "fp32",
    "points_per_pass": None,
}


def _from_objective(
    args: tuple[Any, Any, Any, Any], options: Mapping[str, Any]
) -> tuple[Any, Any, Any]:
    """``(directions, x, y)`` of a call ``compute_surface(objective, directions, x, y)``,
    from the values of the parameters ``(data, directions, x, y)``."""
    given = sorted(k for k, v in options.items() if not _is_default(v, _OBJECTIVE_OPTIONS[k]))
    if given:
        raise ValueError(
            f"{given} configure the Objective; with an Objective, set them when building it"
        )
    data, directions, x, y = args
    if isinstance(directions, Directions):  # directions=... by keyword
        if data is not None:
            raise TypeError("compute_surface(objective, directions, x, y) takes no data")
        return directions, x, y
    if directions is None:  # x=... by keyword
        return data, x, y
    if x is not None and y is not None:
        raise TypeError("compute_surface(objective, directions, x, y) got y twice")
    return data, directions, x if x is not None else y


def _is_default(value: Any, default: Any) -> bool:
    return value is default or (isinstance(value, (str, bool)) and value == default)


def compute_surface(
    model: nn.Module | Objective,
    data: Any = None,
    directions: Directions | Any = None,
    x: Any = None,
    y: Any = None,
    *,
    loss: Any = "cross_entropy",
    loss_reduction: str = "auto",
    metrics: Mapping[str, Any] | None = None,
    batch_loss: Any = None,
    train_mode: bool = False,
    cache_data: bool = True,
    batch_size: int | None = None,
    path: str | os.PathLike | None = None,
    overwrite: bool = False,
    attrs: Mapping[str, Any] | None = None,
    write_interval: float = 1.0,
    progress: bool = True,
    precision: str = "fp32",
    points_per_pass: int | None = None,
    convexity: bool = False,
    params: ParamSelection = None,
    allow_nonfinite: bool = False,
) -> Surface:
    """Evaluate the loss and metrics on a line (``y=None``) or a plane around ``model``.

    Called as ``compute_surface(model, data, directions, x, y)``, or with an
    :class:`~landscape.objective.Objective` as ``compute_surface(objective, directions, x,
    y)``: then its data, already on the device and fingerprinted, is used as it is (the
    Objective's options then come from the Objective; giving them here is an error).

    Args:
        model: the checkpoint, as a model (never modified), or an Objective.
        data: evaluation data (see :class:`~landscape.objective.Objective`).
        directions: from :func:`~landscape.directions.random_directions` and friends.
        x, y: coordinates along ``directions.x`` and ``directions.y`` (any lengths).
        loss, loss_reduction, metrics, batch_loss, train_mode, cache_data, batch_size: as
            for ``Objective``.
        path: HDF5 file to write as it goes; an unfinished file made by the same run is
            resumed, one made by another run is refused unless ``overwrite``.
        attrs: extra attributes to record (and check on resume), e.g. the model's name.
        write_interval: seconds between writes to the file (a kill loses at most this).
        progress: show a tqdm bar.
        precision: ``"fp32"``, ``"tf32"`` or ``"bf16"``, as for ``Objective``.
        points_per_pass: K points evaluated per pass over a batch (``None``: automatic,
            1 on CPU), as for ``Objective``.
        convexity: also compute Li et al.'s ``|lambda_min / lambda_max|`` of the Hessian at
            every point (metric ``"convexity"``, see :func:`landscape.hessian.min_max_ratio`;
            tens of Hessian-vector products a point).
        params: move only these tensors (names, glob patterns, a predicate or
            ``"trainable"``, see :func:`landscape.params.select_names`, over the model's
            weights and buffers): the directions' other entries are dropped. Recorded as
            the attribute ``params`` (``"all"`` or the names), part of a resume's identity.
        allow_nonfinite: go on with NaN or inf in the model or the first batch (refused
            by default), as for ``Objective``.

    Under an initialized ``torch.distributed`` process group (e.g. from
    :func:`landscape.distributed.init_from_env` under ``torchrun``), every rank calls
    this with the same arguments and its own device: the pending points are cut into
    chunks of K and dealt round-robin to the ranks, rank 0 alone creates, checks and
    writes the file, and every rank returns the same complete Surface. A run killed on
    any rank resumes with any number of ranks.

    Returns:
        The :class:`Surface`.

    Raises:
        ValueError: bad coordinates, directions that do not fit the model, a selection
            that matches nothing or that the directions do not move, or a file made for
            another run.
        TypeError: ``directions`` is not a :class:`~landscape.directions.Directions`.

    Example:
        >>> from landscape.directions import random_directions
        >>> model = nn.Linear(4, 3)
        >>> data = (torch.randn(20, 4), torch.randint(0, 3, (20,)))
        >>> surface = compute_surface(model, data, random_directions(model), [-1, 0, 1],
        ...                           [0, 1], progress=False)
        >>> surface["loss"].shape
        (3, 2)
    """
    options = dict(loss=loss, loss_reduction=loss_reduction, metrics=metrics,
                   batch_loss=batch_loss, train_mode=train_mode,
                   cache_data=cache_data, batch_size=batch_size, precision=precision,
                   points_per_pass=points_per_pass,
                   allow_nonfinite=allow_nonfinite)  # fmt: skip
    if isinstance(model, Objective):
        directions, x, y = _from_objective((data, directions, x, y), options)
    elif data is None:
        raise TypeError("compute_surface(model, data, directions, x, y) needs the data")
    if not isinstance(directions, Directions):
        raise TypeError(
            f"directions must be a Directions (from random_directions, ...), "
            f"got {type(directions).__name__}"
        )
    if x is None:
        raise TypeError("compute_surface needs the coordinates x")
    xs = _coords(x, "x")
    ys = None if y is None else _coords(y, "y")
    if ys is not None and directions.y is None:
        raise ValueError("a 2D surface needs two directions; these have only x")
    _check_size(len(xs) * (1 if ys is None else len(ys)))
    objective = model if isinstance(model, Objective) else Objective(model, data, **options)
    names = objective.names + (("convexity",) if convexity else ())
    base = objective.base_state
    selected = select_params(objective.model, params, "states")
    # an end that came with an interpolation direction applies where the line starts here
    implicit_end = directions.x_end is not None and directions.x_end is getattr(
        directions.x, "end", None
    )
    if params is not None:
        directions = _restricted(directions, set(selected))
    used = (directions.x,) if ys is None else (directions.x, directions.y)
    for direction in used:
        _check_direction(direction, base)
    shape = (len(xs),) if ys is None else (len(xs), len(ys))
    x_label, y_label = _labels(directions)
    # Every rank must cut the same chunks: from the smallest K any rank chose, and at
    # least MIN_CHUNK points per call so that small models do not pay per-call overhead
    # per point (a kill loses at most one chunk per rank).
    k = min(distributed.all_gather_objects(objective.resolve_points_per_pass()))
    x_end = directions.x_end
    if implicit_end and not _starts_at(directions.x, x_end, base):
        x_end = None  # the line is drawn elsewhere: base + t d, as any direction
    ends = (x_end, None)[: len(used)]  # an interpolation's end: exact at 1
    identity: dict[str, Any] = {
        "model": type(objective.model).__qualname__,
        "model_sha256": model_sha256(objective.model),
        "model_classes_sha256": classes_sha256(objective.model),
        "model_probe": model_probe(objective),
        "checkpoint_sha256": state_sha256(base),
        "data_sha256": _data_sha256(objective),
        "num_examples": objective.num_examples,
        "loss": objective.loss_name,
        # recorded for a mean only: files without it (all of 0.1's) hold batch sums
        **({"loss_reduction": "mean"} if objective.loss_reduction == "mean" else {}),
        "metrics": list(names),
        "train_mode": objective.train_mode,
        **({"objective_seed": objective.seed} if objective.train_mode else {}),
        "precision": objective.precision,
        "points_per_pass": k,
        "directions": directions.kind,
        "directions_sha256": _directions_sha256(used),
        "norm": directions.settings.get("norm", "none"),
        "ignore": directions.settings.get("ignore", "none"),
        "dir_type": directions.settings.get("dir_type", "weights"),
        "seed": directions.settings.get("seed", -1),
        "direction_settings": {k: v for k, v in directions.settings.items() if k != "cosine"},
        "params": selection_attr(selected, base),
        "x_label": x_label,
        "y_label": y_label,
        **dict(attrs or {}),
    }
    cosine = directions.cosine
    if cosine is not None:
        identity["cosine"] = cosine

    values = {name: np.full(shape, np.nan) for name in names}
    computed = np.zeros(shape, dtype=bool)
    leader = distributed.rank() == 0
    writer = None
    if path is not None:
        # Rank 0 alone touches the file; the others learn what is done (or what failed).
        outcome: Any = None
        if leader:
            try:
                outcome, writer = _open_surface_file(
                    path, xs, ys, names, directions, identity, overwrite
                )
            except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
                outcome = err  # raised on every rank below, so none waits forever
        outcome = distributed.broadcast_object(outcome)
        if isinstance(outcome, Exception):
            raise outcome
        if outcome is not None:
            stored, computed = outcome
            values.update({n: stored[n] for n in names})

    grids = np.meshgrid(xs, *(() if ys is None else (ys,)), indexing="ij")
    all_coords = np.stack([g.reshape(-1) for g in grids], axis=1)
    pending = np.flatnonzero(~computed.reshape(-1))
    chunk = k * max(1, -(-MIN_CHUNK // k))
    world = distributed.world_size()
    mine = distributed.shard_chunks(pending.tolist(), chunk)
    num_rounds = -(-len(pending) // (chunk * world))
    try:
        buffered: list[int] = []
        last_write = time.monotonic()
        bar = progress_bar(progress, desc="surface", unit="pt", total=len(pending))
        for round_ in range(num_rounds):
            flats = mine[round_] if round_ < len(mine) else []
            result = (
                _evaluate(objective, base, used, all_coords[flats], convexity, ends)
                if flats
                else None
            )
            gathered = distributed.gather_objects((flats, result))
            if not leader:
                continue
            for rank_flats, rank_result in gathered:
                for i, flat in enumerate(rank_flats):
                    where = np.unravel_index(flat, shape)
                    for name in names:
                        values[name][where] = rank_result[name][i]
                    computed[where] = True
                buffered.extend(rank_flats)
                bar.update(len(rank_flats))
            if writer is not None and time.monotonic() - last_write >= write_interval:
                writer.write(values, computed)
                buffered, last_write = [], time.monotonic()
        if writer is not None and buffered:
            writer.write(values, computed)
        bar.close()
    finally:
        if writer is not None:
            writer.close()
    if world > 1:
        values = distributed.broadcast_object(values)
    attrs_out = dict(identity, num_computed=int(computed.size), num_points=int(computed.size))
    return Surface(xs, ys, values, attrs=attrs_out, path=None if path is None else os.fspath(path))


def _restricted(directions: Directions, keep: set[str]) -> Directions:
    """``directions`` with only the entries named in ``keep``.

    Raises:
        ValueError: the directions move none of them.
    """

    def cut(state: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
        return None if state is None else {n: t for n, t in state.items() if n in keep}

    x = cut(directions.x)
    if not x or (directions.y is not None and not cut(directions.y)):
        raise ValueError(
            f"the directions move none of the selected tensors {sorted(keep)[:5]}; select "
            "tensors the directions hold, or make the directions with the same params="
        )
    return Directions(x, cut(directions.y), kind=directions.kind, settings=directions.settings,
                      x_end=cut(directions.x_end))  # fmt: skip


def _starts_at(
    direction: Mapping[str, torch.Tensor],
    end: Mapping[str, torch.Tensor],
    base: Mapping[str, torch.Tensor],
) -> bool:
    """Whether ``direction`` is ``end - base`` exactly (one read for all tensors)."""
    if any(n not in end for n in direction):
        return False
    agree = [(end[n].to(base[n]) - base[n] == d.to(base[n])).all() for n, d in direction.items()]
    return bool(torch.stack(agree).all()) if agree else True


def _data_sha256(objective: Objective) -> str:
    """The Objective's data fingerprint, computed once per Objective (a method in 0.1)."""
    sha = objective.data_sha256
    return sha() if callable(sha) else sha


def _evaluate(
    objective: Objective,
    base: Mapping[str, torch.Tensor],
    used: tuple[Mapping[str, torch.Tensor], ...],
    coords: np.ndarray,
    convexity: bool,
    ends: tuple[Mapping[str, torch.Tensor] | None, ...],
) -> dict[str, np.ndarray]:
    """The metrics at ``coords`` and, if asked, the Hessian's ``|lambda_min / lambda_max|``."""
    result = objective.evaluate_points(base, used, coords, ends=ends)
    if convexity:
        from .hessian import min_max_ratio

        points = (point_state(base, used, point, ends=ends) for point in coords)
        result["convexity"] = np.array([min_max_ratio(objective, state) for state in points])
    return result


# Identity attributes added after 0.1, with the value every older file was made with.
_ADDED_ATTRS = {"params": "all"}
# Fingerprints added after 0.1 that older files did not take: not checked where missing.
_UNRECORDED_ATTRS = ("model_sha256", "objective_seed", *FINGERPRINT_ATTRS)


def _open_surface_file(
    path: str | os.PathLike,
    xs: np.ndarray,
    ys: np.ndarray | None,
    names: tuple[str, ...],
    directions: Directions,
    identity: dict[str, Any],
    overwrite: bool,
) -> tuple[tuple[dict[str, np.ndarray], np.ndarray] | None, storage.SurfaceWriter]:
    """``((metrics, computed), writer)`` of an existing file, checked, or ``(None,
    writer)`` of a new one; the writer holds the file's lock.

    An attribute newer than a file (see :data:`_ADDED_ATTRS`) that it lacks counts as the
    value such a file was made with; a fingerprint it lacks (:data:`_UNRECORDED_ATTRS`)
    is not checked."""
    if os.path.exists(path) and not overwrite:
        storage.load_surface_arrays(path, verify=False)  # a foreign file is named before the lock
        writer = storage.SurfaceWriter(path)  # held from here on, then read again under it
        try:
            _, _, stored, stored_attrs, computed = storage.load_surface_arrays(path, verify=False)
            check = {
                k: v
                for k, v in identity.items()
                if k in stored_attrs
                or (k not in _ADDED_ATTRS and k not in _UNRECORDED_ATTRS)
                or not storage.same_attr(_ADDED_ATTRS.get(k, v), v)
            }
            probe = check.pop("model_probe", None)  # compared with a tolerance
            storage.check_surface_file(path, x=xs, y=ys, names=names, attrs=check)
            problem = None
            if probe is not None:
                problem = probe_problem(stored_attrs["model_probe"], probe, identity["precision"])
            if problem:
                raise ValueError(
                    f"{os.fspath(path)} was made for another run ({problem}); use another "
                    "output file, or overwrite=True / --overwrite to start again"
                )
        except BaseException:
            writer.close()
            raise
        return (stored, computed), writer
    used = (directions.x,) if ys is None else (directions.x, directions.y)
    writer = storage.create_surface_file(
        path, x=xs, y=ys, names=names, directions=used, attrs=identity,
        direction_kind=directions.kind, direction_settings=directions.settings, writer=True,
    )  # fmt: skip
    return None, writer


def save_surface(
    surface: Surface,
    path: str | os.PathLike,
    *,
    directions: Directions | None = None,
    overwrite: bool = False,
) -> None:
    """Write a Surface (one computed without ``path=``, say) to a surface file.

    Points with a NaN loss are marked not computed, so ``compute_surface`` with the same
    arguments can fill them in later.

    Args:
        surface: what to write; its ``attrs`` become the file's root attributes.
        path: the HDF5 file.
        directions: the directions to store with it (optional).
        overwrite: replace an existing file.

    Raises:
        ValueError: the file exists and ``overwrite`` is false.

    Example:
        >>> import tempfile
        >>> s = Surface(np.array([0.0, 1.0]), None, {"loss": np.array([0.5, 0.7])})
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     save_surface(s, f"{tmp}/s.h5")
        ...     load_surface(f"{tmp}/s.h5")["loss"].tolist()
        [0.5, 0.7]
    """
    if os.path.exists(path) and not overwrite:
        raise ValueError(f"{os.fspath(path)} exists; pass overwrite=True to replace it")
    used = () if directions is None else tuple(d for d in (directions.x, directions.y) if d)
    names = tuple(surface.metrics)
    volatile = ("num_computed", "num_points")
    attrs = {k: v for k, v in surface.attrs.items() if k not in volatile}
    with storage.create_surface_file(
        path, x=surface.x, y=surface.y, names=names, directions=used, attrs=attrs,
        direction_kind=None if directions is None else directions.kind,
        direction_settings=None if directions is None else directions.settings, writer=True,
    ) as writer:  # fmt: skip
        writer.write(surface.metrics, ~np.isnan(surface.metrics["loss"]))


def load_surface(path: str | os.PathLike) -> Surface:
    """Read a surface file (complete or not; missing points are NaN).

    Raises:
        FileNotFoundError, ValueError: no file, or not a landscape surface file.
    """
    x, y, metrics, attrs, computed = storage.load_surface_arrays(path)
    provenance = {k: attrs.pop(k) for k in storage.STAMP_ATTRS if k in attrs}
    attrs["num_computed"] = int(computed.sum())
    attrs["num_points"] = int(computed.size)
    order = [n for n in attrs.get("metrics", ()) if n in metrics]  # the order computed in
    metrics = {n: metrics[n] for n in [*order, *sorted(set(metrics) - set(order))]}
    return Surface(x, y, metrics, attrs=attrs, path=os.fspath(path), provenance=provenance)
