"""Computing a surface: :func:`compute_surface` evaluates an
:class:`~landscape.objective.Objective` at every point of a line or a plane, with a file
written as it goes and resumed, and the points dealt to the ranks of a process group.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import distributed
from .._progress import progress_bar
from ..directions import Directions
from ..directions.recipes import is_recipe, stored_directions
from ..objective import Objective
from ..params import ParamSelection, point_state, select_params
from .files import open_surface_file
from .grid import check_size, coordinates
from .identity import check_direction, identity, restricted, starts_at
from .recipe_points import RecipePoints, evaluate_recipe_points
from .result import Surface

MIN_CHUNK = 8  # points per call of Objective.evaluate_points

# The options that build the Objective, and their defaults: an Objective given to
# compute_surface comes with its own.
_OBJECTIVE_OPTIONS = {
    "loss": "cross_entropy",
    "loss_reduction": "auto",
    "metrics": None,
    "accuracy": None,
    "batch_loss": None,
    "train_mode": False,
    "cache_data": True,
    "allow_nonfinite": False,
    "batch_size": None,
    "precision": "fp32",
    "points_per_pass": None,
}


def compute_surface(
    objective: Objective | nn.Module | None = None,
    data: Any = None,
    directions: Directions | Any = None,
    x: Any = None,
    y: Any = None,
    *,
    loss: Any = "cross_entropy",
    loss_reduction: str = "auto",
    metrics: Mapping[str, Any] | None = None,
    accuracy: bool | None = None,
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
    model: nn.Module | None = None,
    store_directions: bool | None = None,
) -> Surface:
    """Evaluate the loss and metrics on a line (``y=None``) or a plane around a checkpoint.

    Called as ``compute_surface(objective, directions, x, y)``: the
    :class:`~landscape.objective.Objective` brings the model, the data (already on the
    device and fingerprinted) and how to evaluate. One Objective serves a series of
    surfaces: ``compute_surface(objective.at(checkpoint), ...)`` for each checkpoint moves,
    copies and checks nothing again. ``compute_surface(model, data, directions, x, y,
    **options)`` is a shortcut that builds ``Objective(model, data, **options)`` first
    (with an Objective, giving those options here is an error).

    Args:
        objective: the Objective (or a model, never modified, with ``data``).
        data: evaluation data, for a model (see :class:`~landscape.objective.Objective`).
        directions: from :func:`~landscape.directions.random_directions` and friends.
        x, y: coordinates along ``directions.x`` and ``directions.y`` (any lengths).
        loss, loss_reduction, metrics, batch_loss, train_mode, cache_data, batch_size: with
            a model, as for ``Objective`` (so are the next four).
        accuracy: ``False`` leaves the accuracy out: no point computes it (default: on
            for the classification losses).
        precision: ``"fp32"``, ``"tf32"`` or ``"bf16"``.
        points_per_pass: K points evaluated per pass over a batch (``None``: automatic,
            1 on CPU).
        allow_nonfinite: go on with NaN or inf in the model or the first batch.
        path: HDF5 file to write as it goes; an unfinished file made by the same run is
            resumed, one made by another run is refused unless ``overwrite``.
        attrs: extra attributes to record (and check on resume), e.g. the model's name.
        write_interval: seconds between writes to the file (a kill loses at most this).
        progress: show a tqdm bar.
        convexity: also compute Li et al.'s ``|lambda_min / lambda_max|`` of the Hessian at
            every point (metric ``"convexity"``, see :func:`landscape.hessian.min_max_ratio`;
            tens of Hessian-vector products a point).
        params: move only these tensors (names, glob patterns, a predicate or
            ``"trainable"``, see :func:`landscape.params.select_names`, over the model's
            weights and buffers): the directions' other entries are dropped. Recorded as
            the attribute ``params`` (``"all"`` or the names), part of a resume's identity.
        model: the 0.2 keyword name of the first argument (deprecated alias).
        store_directions: store the directions' tensors in the file (``None``, the
            default: stored directions are, recipe directions from
            ``random_directions(..., stored=False)`` are not: the file records their
            recipe in ``/directions`` settings and a resume makes them again). ``True``
            with recipes makes and holds both directions first (Li et al.-style reuse of
            the file's directions), at the memory of stored directions.

    With recipe directions (``random_directions(..., stored=False)``) every point is
    formed tensor by tensor from values made again (see
    :mod:`landscape.surface.recipe_points`) and evaluated alone: the extra memory is one
    perturbed copy of what moves plus a scratch block.

    Under an initialized ``torch.distributed`` process group (e.g. from
    :func:`landscape.distributed.init_from_env` under ``torchrun``), every rank calls
    this with the same arguments and its own device: the pending points are cut into
    chunks of K and dealt round-robin to the ranks, rank 0 alone creates, checks and
    writes the file, and every rank returns the same complete Surface. A run killed on
    any rank resumes with any number of ranks.

    Returns:
        The :class:`~landscape.surface.Surface`.

    Raises:
        ValueError: bad coordinates, directions that do not fit the model, a selection
            that matches nothing or that the directions do not move, or a file made for
            another run.
        TypeError: ``directions`` is not a :class:`~landscape.directions.Directions`.

    Example:
        >>> from landscape.directions import random_directions
        >>> model = nn.Linear(4, 3)
        >>> objective = Objective(model, (torch.randn(20, 4), torch.randint(0, 3, (20,))))
        >>> surface = compute_surface(objective, random_directions(model), [-1, 0, 1], [0, 1],
        ...                           progress=False)
        >>> surface["loss"].shape, list(surface.metrics)
        ((3, 2), ['loss', 'accuracy'])
    """
    options = dict(loss=loss, loss_reduction=loss_reduction, metrics=metrics, accuracy=accuracy,
                   batch_loss=batch_loss, train_mode=train_mode,
                   cache_data=cache_data, batch_size=batch_size, precision=precision,
                   points_per_pass=points_per_pass,
                   allow_nonfinite=allow_nonfinite)  # fmt: skip
    if model is not None:
        warnings.warn("compute_surface(model=...) is now its first argument, objective",
                      DeprecationWarning, stacklevel=2)  # fmt: skip
        if objective is not None:
            raise TypeError("compute_surface got the model twice (objective and model=)")
        objective = model
    if isinstance(objective, Objective):
        directions, x, y = _from_objective((data, directions, x, y), options)
    elif not isinstance(objective, nn.Module):
        raise TypeError(
            f"expected an Objective or an nn.Module first, got {type(objective).__name__}"
        )
    elif data is None:
        raise TypeError("compute_surface(model, data, directions, x, y) needs the data")
    if not isinstance(directions, Directions):
        raise TypeError(
            f"directions must be a Directions (from random_directions, ...), "
            f"got {type(directions).__name__}"
        )
    if x is None:
        raise TypeError("compute_surface needs the coordinates x")
    xs = coordinates(x, "x")
    ys = None if y is None else coordinates(y, "y")
    if ys is not None and directions.y is None:
        raise ValueError("a 2D surface needs two directions; these have only x")
    check_size(len(xs) * (1 if ys is None else len(ys)))
    if not isinstance(objective, Objective):
        objective = Objective(objective, data, **options)
    if store_directions and any(is_recipe(d) for d in (directions.x, directions.y)):
        directions = stored_directions(directions)
    return _compute(objective, directions, xs, ys, path=path, overwrite=overwrite, attrs=attrs,
                    write_interval=write_interval, progress=progress, convexity=convexity,
                    params=params)  # fmt: skip


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


def _compute(
    objective: Objective,
    directions: Directions,
    xs: np.ndarray,
    ys: np.ndarray | None,
    *,
    path: str | os.PathLike | None,
    overwrite: bool,
    attrs: Mapping[str, Any] | None,
    write_interval: float,
    progress: bool,
    convexity: bool,
    params: ParamSelection,
) -> Surface:
    """The surface of checked arguments (see :func:`compute_surface`)."""
    names = objective.names + (("convexity",) if convexity else ())
    if convexity:
        objective.check_differentiable()  # its Hessian: a sharded model refused before any work
    if (
        objective.sharded
        and path is not None
        and not all(is_recipe(d) for d in (directions.x, directions.y) if d is not None)
    ):
        raise ValueError(
            f"expected recipe directions (random_directions(model, stored=False)) for a file "
            f"of a model sharded by {objective.sharded} (it stores a recipe, never whole "
            "directions), got stored directions with a path"
        )
    base = objective.base_state
    selected = select_params(objective.model, params, "states")
    # an end that came with an interpolation direction applies where the line starts here
    implicit_end = directions.x_end is not None and directions.x_end is getattr(
        directions.x, "end", None
    )
    if params is not None:
        directions = restricted(directions, set(selected))
    used = (directions.x,) if ys is None else (directions.x, directions.y)
    for direction in used:
        check_direction(direction, base)
    shape = (len(xs),) if ys is None else (len(xs), len(ys))
    # Every rank must cut the same chunks: from the smallest K any rank chose, and at
    # least MIN_CHUNK points per call so that small models do not pay per-call overhead
    # per point (a kill loses at most one chunk per rank).
    k = min(distributed.all_gather_objects(objective.resolve_points_per_pass()))
    x_end = directions.x_end
    if implicit_end and not starts_at(directions.x, x_end, base):
        x_end = None  # the line is drawn elsewhere: base + t d, as any direction
    ends = (x_end, None)[: len(used)]  # an interpolation's end: exact at 1
    run = identity(objective, directions, used, selected, names, k, attrs)

    values = {name: np.full(shape, np.nan) for name in names}
    computed = np.zeros(shape, dtype=bool)
    leader = distributed.rank() == 0
    writer = None
    if path is not None:
        # Rank 0 alone touches the file; the others learn what is done (or what failed).
        outcome: Any = None
        if leader:
            try:
                outcome, writer = open_surface_file(path, xs, ys, names, directions, run, overwrite)
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
    # recipes into a perturbed copy; a sharded model's points are written into its shards
    recipe = (
        RecipePoints(base, used)
        if all(is_recipe(d) for d in used) and not objective.sharded
        else None
    )
    pending = np.flatnonzero(~computed.reshape(-1))
    chunk = k * max(1, -(-MIN_CHUNK // k))
    world = distributed.world_size()
    # a sharded model's forward is collective: every rank evaluates every point
    dealt, me = (1, 0) if objective.sharded else (world, None)
    mine = distributed.shard_chunks(pending.tolist(), chunk, world=dealt, rank_=me)
    num_rounds = -(-len(pending) // (chunk * dealt))
    try:
        buffered: list[int] = []
        last_write = time.monotonic()
        bar = progress_bar(progress, desc="surface", unit="pt", total=len(pending))
        for round_ in range(num_rounds):
            flats = mine[round_] if round_ < len(mine) else []
            result = None
            if flats and recipe is not None:
                result = evaluate_recipe_points(objective, recipe, all_coords[flats], convexity)
            elif flats:
                result = _evaluate(objective, base, used, all_coords[flats], convexity, ends)
            gathered: list[Any] = (
                [(flats, result)]  # a sharded model's: rank 0 holds them all
                if objective.sharded
                else distributed.gather_objects((flats, result))
            )
            if not leader:
                continue
            for rank_flats, rank_result in gathered:
                if not rank_flats:
                    continue
                where = np.unravel_index(np.asarray(rank_flats, dtype=np.int64), shape)
                for name in names:
                    values[name][where] = rank_result[name]
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
    attrs_out = dict(run, num_computed=int(computed.size), num_points=int(computed.size))
    return Surface(xs, ys, values, attrs=attrs_out, path=None if path is None else os.fspath(path))


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
        from ..hessian import min_max_ratio

        points = (point_state(base, used, point, ends=ends) for point in coords)
        result["convexity"] = np.array([min_max_ratio(objective, state) for state in points])
    return result
