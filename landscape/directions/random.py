"""Normalized random directions (Li et al. 2018), reproducible from a seed.

Running statistics (the ``running_mean`` and ``running_var`` buffers of BatchNorm and
friends, part of ``dir_type="states"``) are not Gaussian with ``ignore="none"``: as in Li
et al.'s code the direction of a buffer is the buffer itself, so the point ``alpha`` holds
``(1 + alpha) * running_var``, a valid variance for every ``alpha > -1`` (a Gaussian
direction drives variances negative and the loss NaN). In a plane only the first
direction moves them (the second's entries are zero), so a plane is valid wherever its
line is. ``num_batches_tracked`` and other integer buffers never move.

``params=`` (names, glob patterns, a predicate or ``"trainable"``, see
:func:`landscape.params.select_names`) restricts a direction to some tensors: the others
are left out of it, so they never move.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..checks import check_seed, renamed_keywords
from ..params import DirType, ParamSelection, selection_attr, state_dot
from .core import Directions, State, _as_state, _selected, check_num_directions
from .drawing import draw_tensor, skip_normal
from .normalization import Ignore, Norm, _check_options, is_running_stat, normalize_direction
from .recipes import RecipeDirection

__all__ = ["random_direction", "random_directions", "random_plane"]


def random_direction(
    model_or_state: nn.Module | Mapping[str, torch.Tensor],
    *,
    norm: Norm = "filter",
    ignore: Ignore = "biasbn",
    dir_type: DirType = "weights",
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    params: ParamSelection = None,
) -> State:
    """A normalized Gaussian direction around a model (or a state).

    Entries are drawn on the CPU in float64 from ``seed`` (an int; a float is a
    ``TypeError``; ``None`` means 0, as in 0.2, with a ``DeprecationWarning``: pass 0) or
    from ``generator``, so a seed
    gives the same direction on every device, normalized in float32 (or the tensor's
    dtype, if wider) on its device, then kept in the tensor's dtype (bfloat16 for a
    bfloat16 model). One tensor at a time: its draft (in that working dtype, filled from
    float64 pieces of 2**20 entries) is normalized in place and freed before the next, so
    the memory is the direction plus one tensor's draft; the values are those of one
    float64 draw per tensor in state order (as 0.2 drew them), bit for bit.
    Integer buffers get no direction. With ``ignore="none"`` a running statistic's
    direction is the buffer itself (so ``(1 + alpha) * running_var`` stays a variance for
    ``alpha > -1``); with ``ignore="biasbn"`` it is zero. With ``params`` only the
    selected tensors get a direction (and draws).

    Example:
        >>> model = nn.Linear(3, 2)
        >>> d = random_direction(model, seed=1)
        >>> torch.allclose(d["weight"].norm(dim=1), model.weight.norm(dim=1))
        True
    """
    _check_options(norm, ignore)
    state = _selected(model_or_state, _as_state(model_or_state, dir_type), params, dir_type)
    if generator is None:
        if seed is None:  # seed 0, as in 0.2; random_directions refuses None
            warnings.warn(
                "random_direction(seed=None) means seed 0 and will be refused in a future "
                "version, as random_directions refuses it: pass seed=0",
                DeprecationWarning,
                stacklevel=2,
            )
            seed = 0
        generator = torch.Generator().manual_seed(check_seed(seed))
    direction = {}
    for name, t in state.items():  # one tensor at a time: its draft is freed before the next
        if not t.is_floating_point():
            continue
        if ignore == "none" and is_running_stat(name):
            skip_normal(t.numel(), generator)  # drawn as before, so later tensors match
            direction[name] = t.detach().clone()
        elif ignore == "biasbn" and t.dim() <= 1:
            skip_normal(t.numel(), generator)
            direction[name] = torch.zeros_like(t)
        else:
            direction[name] = draw_tensor(t, generator, norm, ignore)
    return direction


@renamed_keywords(num="num_directions")
def random_directions(
    model_or_state: nn.Module | Mapping[str, torch.Tensor],
    *,
    num_directions: int = 2,
    norm: Norm = "filter",
    ignore: Ignore = "biasbn",
    dir_type: DirType = "weights",
    seed: int = 0,
    orthogonalize: bool = False,
    params: ParamSelection = None,
    stored: bool = True,
) -> Directions:
    """One or two normalized random directions (Li et al. 2018), reproducible from ``seed``.

    With ``orthogonalize=True`` the second is made orthogonal to the first (Gram-Schmidt in
    the flat space) and normalized again; renormalizing filter by filter leaves a small
    cosine, which is recorded in ``settings["cosine"]``. Running statistics
    (``dir_type="states", ignore="none"``) move along the first direction only: their
    entries in the second are zero, so the whole plane keeps valid variances where the
    line ``x > -1`` does. With ``params`` (see :func:`landscape.params.select_names`) the
    directions hold the selected tensors only, and ``settings["params"]`` their names.
    ``num_directions`` is 1 (a line) or 2 (a plane); ``num=`` is its old name (deprecated).

    With ``stored=False`` the directions are recipes (see
    :mod:`landscape.directions.recipes`): no values are held, each tensor is made again
    from ``(seed, axis, name, chunk)`` whenever it is read, in the weights' dtype and on
    their device, so a surface over them costs one perturbed copy of what moves and a
    scratch block (other values than the stored draws of the same seed; no
    ``orthogonalize``). ``settings`` then record ``stored=False`` and the generator.

    Example:
        >>> dirs = random_directions(nn.Linear(4, 3), seed=0, orthogonalize=True)
        >>> abs(dirs.cosine) < 0.5
        True
        >>> sorted(random_directions(nn.Linear(4, 3), params="bias", ignore="none").x)
        ['bias']
    """
    num_directions = check_num_directions(num_directions)
    full = _as_state(model_or_state, dir_type)
    state = _selected(model_or_state, full, params, dir_type)
    seed = check_seed(seed)
    if not stored:
        return _recipe_directions(full, state, num_directions, norm, ignore, dir_type, seed,
                                  orthogonalize, params)  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    draws = [
        random_direction(state, norm=norm, ignore=ignore, dir_type=dir_type, generator=generator)
        for _ in range(num_directions)
    ]
    x, y = draws[0], (draws[1] if num_directions == 2 else None)
    if y is not None:
        y = _without_running_stats(y)
    if y is not None and orthogonalize:
        coef = state_dot(y, x) / state_dot(x, x)
        for name, t in y.items():  # tensor by tensor, each replaced as it is made
            t = t - coef * x[name]
            if norm != "none":
                t = normalize_direction({name: t}, state, norm=norm, ignore=ignore)[name]
            y[name] = t
        y = _without_running_stats(y)
    settings: dict[str, Any] = dict(norm=norm, ignore=ignore, dir_type=dir_type)
    settings.update(seed=int(seed), orthogonalize=bool(orthogonalize))
    if params is not None:  # only then, so that the settings of 0.1 files still match
        settings["params"] = selection_attr(list(x), full)
    directions = Directions(x, y, kind="random", settings=settings)
    if y is not None:
        settings["cosine"] = directions.cosine
    return directions


def _recipe_directions(
    full: State,
    state: State,
    num_directions: int,
    norm: Norm,
    ignore: Ignore,
    dir_type: DirType,
    seed: int,
    orthogonalize: bool,
    params: ParamSelection,
) -> Directions:
    """The directions of ``random_directions(..., stored=False)``: recipes."""
    _check_options(norm, ignore)
    if orthogonalize:
        raise ValueError("expected stored=True with orthogonalize=True (it needs the values)")
    x, y = (RecipeDirection(state, seed=seed, axis=axis, norm=norm, ignore=ignore)
            for axis in range(2))  # fmt: skip
    settings: dict[str, Any] = dict(norm=norm, ignore=ignore, dir_type=dir_type)
    settings.update(seed=int(seed), orthogonalize=False)
    if params is not None:
        settings["params"] = selection_attr(list(x), full)
    settings.update(stored=False, **{k: v for k, v in x.recipe().items() if k in _RECIPE_KEYS})
    directions = Directions(x, y if num_directions == 2 else None, kind="random",
                            settings=settings)  # fmt: skip
    if directions.y is not None:
        settings["cosine"] = directions.cosine
    return directions


_RECIPE_KEYS = ("generator", "chunk", "device")


def _without_running_stats(direction: State) -> State:
    return {n: torch.zeros_like(t) if is_running_stat(n) else t for n, t in direction.items()}


@renamed_keywords(num="num_directions")
def random_plane(
    model_or_state: nn.Module | Mapping[str, torch.Tensor],
    *,
    num_directions: int = 2,
    x_norm: Norm = "filter",
    y_norm: Norm | None = None,
    ignore: Ignore = "biasbn",
    dir_type: DirType = "weights",
    seed: int = 0,
    orthogonalize: bool = False,
    params: ParamSelection = None,
) -> Directions:
    """:func:`random_directions`, with another normalization for the second direction
    (``y_norm``, default ``x_norm``; ``landscape surface --x-norm/--y-norm``). With two
    norms the draws are those of :func:`random_directions` (one generator from ``seed``,
    x then y) and ``settings`` record ``x_norm`` and ``y_norm``. ``num=`` is the old name
    of ``num_directions`` (deprecated).

    Raises:
        ValueError: two norms with ``orthogonalize`` (it renormalizes with one norm).

    Example:
        >>> model = nn.Linear(4, 3)
        >>> plane = random_plane(model, x_norm="filter", y_norm="layer", seed=3)
        >>> same = random_directions(model, seed=3)
        >>> torch.equal(plane.x["weight"], same.x["weight"]), plane.settings["y_norm"]
        (True, 'layer')
    """
    y_norm = x_norm if y_norm is None else y_norm
    if check_num_directions(num_directions) == 1 or x_norm == y_norm:
        return random_directions(model_or_state, num_directions=num_directions, norm=x_norm,
                                 ignore=ignore, dir_type=dir_type, seed=seed,
                                 orthogonalize=orthogonalize, params=params)  # fmt: skip
    if orthogonalize:
        raise ValueError("expected one norm with orthogonalize, got x_norm != y_norm")
    generator = torch.Generator().manual_seed(check_seed(seed))  # the draws of random_directions
    x, y = (
        random_direction(
            model_or_state,
            norm=norm,
            ignore=ignore,
            dir_type=dir_type,
            generator=generator,
            params=params,
        )  # fmt: skip
        for norm in (x_norm, y_norm)
    )
    settings = dict(ignore=ignore, dir_type=dir_type, norm=x_norm, x_norm=x_norm, y_norm=y_norm,
                    seed=seed)  # fmt: skip
    return Directions(x, y, kind="random", settings=settings)
