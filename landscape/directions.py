"""Directions in parameter space: normalized random, interpolation, PCA of a trajectory.

A direction is a state: a mapping from parameter (or buffer) names to tensors of the
same shapes. Normalization follows Li et al. (2018), per tensor with ``dim > 1``
iterating over dim 0 (a filter is a conv output channel or a row of a linear layer):

- ``filter``: each filter rescaled to the norm of the same filter of the weights;
- ``layer``: each tensor rescaled to the norm of the weight tensor;
- ``weight``: multiplied elementwise by the weights;
- ``none``: raw Gaussian.

Tensors with ``dim <= 1`` (biases, norm-layer parameters, running stats) are zeroed with
``ignore="biasbn"`` (default) or normalized as a one-filter tensor with ``ignore="none"``.
A filter of the direction that is all zeros (a frozen layer in an interpolation direction)
stays zero, as in Li et al.'s code, rather than turning the whole surface NaN.

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

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from . import options
from ._drawing import dot64, draw_tensor, normalize_, skip_normal
from .checks import check_choice, check_seed
from .options import IgnoreName, NormName, values
from .params import (
    DirType,
    ParamSelection,
    flatten,
    model_state,
    select_params,
    selection_attr,
    state_dot,
)
from .results import Result

Norm = NormName  # the Literal aliases of landscape.options, under their 0.2 names
Ignore = IgnoreName
NORMS = values(options.Norm)
IGNORES = values(options.Ignore)

State = dict[str, torch.Tensor]

__all__ = [
    "Directions",
    "Interpolation",
    "Norm",
    "Ignore",
    "normalize_direction",
    "random_direction",
    "random_directions",
    "interpolation_direction",
    "is_running_stat",
    "load_directions",
    "pca_directions",
    "project_states",
    "save_directions",
]


@dataclass(frozen=True, eq=False)
class Directions(Result):
    """One or two directions and the settings that made them; compared by value.

    Attributes:
        x: the first direction (a state).
        y: the second direction, or ``None`` for a line.
        kind: ``"random"``, ``"interpolation"``, ``"hessian"``, ``"pca"`` or ``"custom"``.
        settings: everything needed to make them again (norm, ignore, dir_type, seed, ...)
            and what was achieved (``cosine`` between x and y).
        cosine: cosine of the angle between x and y in float64 (``None`` for a line, NaN
            if one is zero), computed once when the Directions are made.
        x_end: for an interpolation, the end state (``x = x_end - start``, same names):
            a surface then forms the point ``t`` as ``lerp(start, x_end, t)`` (see
            :func:`landscape.params.point_state`), so ``t = 1`` is the end checkpoint bit
            for bit; ``None`` otherwise. Taken from ``x`` when ``x`` is an
            :class:`Interpolation` (what :func:`interpolation_direction` returns), so
            ``Directions(interpolation_direction(a, b))`` is exact at both ends.
    """

    x: State
    y: State | None = None
    kind: str = "custom"
    settings: dict[str, Any] = field(default_factory=dict)
    x_end: State | None = field(default=None, compare=False, repr=False)
    cosine: float | None = field(default=None, init=False, compare=False)

    def __post_init__(self) -> None:
        if self.x_end is None and isinstance(self.x, Interpolation):
            object.__setattr__(self, "x_end", self.x.end)
        object.__setattr__(self, "cosine", None if self.y is None else _cosine(self.x, self.y))


class Interpolation(dict):
    """The direction ``end - start`` made by :func:`interpolation_direction`: a mapping of
    names to tensors, as every direction, that also holds the end's tensors (``end``,
    same names), so that a surface puts ``t = 1`` at the end bit for bit, where
    ``start + 1 * (end - start)`` is not ``end`` in floating point.

    Example:
        >>> a, b = {"w": torch.tensor([0.1])}, {"w": torch.tensor([0.7])}
        >>> d = interpolation_direction(a, b)
        >>> torch.equal(d.end["w"], b["w"]), Directions(d).x_end is d.end
        (True, True)
    """

    def __init__(self, direction: Mapping[str, torch.Tensor], end: Mapping[str, torch.Tensor]):
        super().__init__(direction)
        self.end: State = dict(end)


def _cosine(x: Mapping[str, torch.Tensor], y: Mapping[str, torch.Tensor]) -> float:
    """``<x, y> / (|x| |y|)`` over the shared floating tensors, in float64, one pass."""
    xy = xx = yy = 0.0
    for name, a in x.items():
        b = y.get(name)
        if b is None or not a.is_floating_point():
            continue
        xy += dot64(a, b)  # in pieces: no float64 copy of a whole tensor
        xx += dot64(a, a)
        yy += dot64(b, b)
    if xx == 0 or yy == 0:
        return float("nan")
    return xy / math.sqrt(xx * yy)


def save_directions(
    directions: Directions, path: str | os.PathLike, *, overwrite: bool = False
) -> None:
    """Store directions (tensors, kind and settings) as ``/directions`` of a landscape HDF5
    file, created if missing; :func:`load_directions` reads them back equal.

    Raises:
        ValueError: the file already holds directions and ``overwrite`` is false, or it is
            not a landscape file.

    Example:
        >>> import tempfile
        >>> dirs = random_directions(nn.Linear(3, 2), seed=0)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     save_directions(dirs, f"{tmp}/d.h5")
        ...     load_directions(f"{tmp}/d.h5") == dirs
        True
    """
    from . import storage

    used = (directions.x,) if directions.y is None else (directions.x, directions.y)
    storage.write_directions(
        path, used, kind=directions.kind, settings=directions.settings, overwrite=overwrite
    )


def load_directions(path: str | os.PathLike) -> Directions:
    """The directions stored in a landscape file (by :func:`save_directions`, or with a
    surface), as CPU tensors; files of version 0.1 give the kind and settings from the
    surface's attributes.

    Raises:
        FileNotFoundError, ValueError: no file, or not a landscape file.
        KeyError: the file holds no directions.
    """
    from . import storage

    tensors, kind, settings = storage.read_directions(path)
    y = tensors[1] if len(tensors) > 1 else None
    return Directions(tensors[0], y, kind=kind, settings=settings)


def _check_options(norm: str, ignore: str) -> None:
    check_choice(norm, options.Norm, "norm")
    check_choice(ignore, options.Ignore, "ignore")


def _as_state(model_or_state: nn.Module | Mapping[str, torch.Tensor], dir_type: DirType) -> State:
    """A model's weights or states; a mapping is taken as it is (it cannot tell its buffers
    from its weights, so pass a model to have ``dir_type="weights"`` leave buffers out)."""
    if isinstance(model_or_state, nn.Module):
        return model_state(model_or_state, dir_type, copy=False)
    if isinstance(model_or_state, Mapping):
        return {n: t.detach() for n, t in model_or_state.items()}
    raise TypeError(
        f"expected an nn.Module or a mapping of tensors, got {type(model_or_state).__name__}"
    )


def _selected(
    model_or_state: nn.Module | Mapping[str, torch.Tensor],
    state: State,
    params: ParamSelection,
    dir_type: DirType,
) -> State:
    """``state`` restricted to the floating tensors ``params`` selects (integer ones stay)."""
    if params is None:
        return state
    keep = set(select_params(model_or_state, params, dir_type))
    return {n: t for n, t in state.items() if n in keep or not t.is_floating_point()}


def is_running_stat(name: str) -> bool:
    """Whether a state entry is a norm layer's running statistic (``running_mean`` or
    ``running_var``), which a random direction moves along itself (see the module docstring).

    Example:
        >>> is_running_stat("1.running_var"), is_running_stat("1.weight")
        (True, False)
    """
    return name.rsplit(".", 1)[-1] in ("running_mean", "running_var")


def normalize_direction(
    direction: Mapping[str, torch.Tensor],
    weights: Mapping[str, torch.Tensor],
    *,
    norm: Norm = "filter",
    ignore: Ignore = "biasbn",
) -> State:
    """Rescale a direction to the weights, tensor by tensor (see the module docstring).

    Args:
        direction: the raw direction.
        weights: the point it is normalized to (same names and shapes).
        norm: ``"filter"``, ``"layer"``, ``"weight"`` or ``"none"``.
        ignore: ``"biasbn"`` zeroes tensors with ``dim <= 1``; ``"none"`` keeps them.

    Returns:
        A new state; the inputs are not modified.

    Example:
        >>> w = {"w": torch.tensor([[3.0, 4.0], [0.0, 1.0]]), "b": torch.ones(2)}
        >>> d = normalize_direction({"w": torch.ones(2, 2), "b": torch.ones(2)}, w)
        >>> [round(v, 6) for v in d["w"].norm(dim=1).tolist()], d["b"].tolist()
        ([5.0, 1.0], [0.0, 0.0])
    """
    _check_options(norm, ignore)
    out = {}
    for name, d in direction.items():
        if name not in weights:
            raise ValueError(f"direction has {name!r}, which the weights lack")
        w = weights[name]
        if d.shape != w.shape:
            raise ValueError(f"{name}: direction shape {tuple(d.shape)} != weight {tuple(w.shape)}")
        work = torch.promote_types(d.dtype, torch.float32)  # norms in float32 or better
        draft = d.to(work, copy=True, memory_format=torch.contiguous_format)
        out[name] = normalize_(draft, w.to(work), norm, ignore).to(d.dtype)
    return out


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

    Entries are drawn on the CPU in float64 from ``seed`` (an int; ``None`` means 0, as in
    0.2; a float is a ``TypeError``) or from ``generator``, so a seed
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
        seed = 0 if seed is None else check_seed(seed)  # None is seed 0, as in 0.2
        generator = torch.Generator().manual_seed(seed)
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


def random_directions(
    model_or_state: nn.Module | Mapping[str, torch.Tensor],
    *,
    num: int = 2,
    norm: Norm = "filter",
    ignore: Ignore = "biasbn",
    dir_type: DirType = "weights",
    seed: int = 0,
    orthogonalize: bool = False,
    params: ParamSelection = None,
) -> Directions:
    """One or two normalized random directions (Li et al. 2018), reproducible from ``seed``.

    With ``orthogonalize=True`` the second is made orthogonal to the first (Gram-Schmidt in
    the flat space) and normalized again; renormalizing filter by filter leaves a small
    cosine, which is recorded in ``settings["cosine"]``. Running statistics
    (``dir_type="states", ignore="none"``) move along the first direction only: their
    entries in the second are zero, so the whole plane keeps valid variances where the
    line ``x > -1`` does. With ``params`` (see :func:`landscape.params.select_names`) the
    directions hold the selected tensors only, and ``settings["params"]`` their names.

    Example:
        >>> dirs = random_directions(nn.Linear(4, 3), seed=0, orthogonalize=True)
        >>> abs(dirs.cosine) < 0.5
        True
        >>> sorted(random_directions(nn.Linear(4, 3), params="bias", ignore="none").x)
        ['bias']
    """
    if num not in (1, 2):
        raise ValueError(f"num must be 1 or 2, got {num}")
    full = _as_state(model_or_state, dir_type)
    state = _selected(model_or_state, full, params, dir_type)
    seed = check_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    options = dict(norm=norm, ignore=ignore, dir_type=dir_type)
    x = random_direction(state, generator=generator, **options)
    y = random_direction(state, generator=generator, **options) if num == 2 else None
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
    settings: dict[str, Any] = dict(options, seed=int(seed), orthogonalize=bool(orthogonalize))
    if params is not None:  # only then, so that the settings of 0.1 files still match
        settings["params"] = selection_attr(list(x), full)
    directions = Directions(x, y, kind="random", settings=settings)
    if y is not None:
        settings["cosine"] = directions.cosine
    return directions


def _without_running_stats(direction: State) -> State:
    return {n: torch.zeros_like(t) if is_running_stat(n) else t for n, t in direction.items()}


def interpolation_direction(
    start: nn.Module | Mapping[str, torch.Tensor],
    end: nn.Module | Mapping[str, torch.Tensor],
    *,
    dir_type: DirType = "states",
    params: ParamSelection = None,
) -> Interpolation:
    """The direction ``end - start``, which also holds the end's tensors (an
    :class:`Interpolation`), so that a surface over ``Directions(d)`` centred at
    ``start`` gives at ``t = 1`` exactly the end's state, running statistics included
    (``start + 1 * d`` is not ``end`` in floating point: points from ``t = 0.5`` on are
    formed as ``end + (t - 1) d``, see :func:`landscape.params.point_state`).

    With ``dir_type="states"`` buffers (BatchNorm running mean and variance) are part of
    the line too, as in the classic interpolation plot from -0.5 to 1.5; integer buffers
    (``num_batches_tracked``) stay the start's, which no evaluation reads. With
    ``params`` (selected in ``start``) only the selected tensors are in the direction.

    Raises:
        ValueError: if the two have different names or shapes, or ``params`` matches
            nothing.
    """
    a, b = _as_state(start, dir_type), _as_state(end, dir_type)
    if dir_type == "weights":  # a loaded state_dict also holds buffers: keep the weights
        models = [m for m in (start, end) if isinstance(m, nn.Module)]
        if models:
            names = [n for n, _ in models[0].named_parameters()]
            a = {n: a[n] for n in names if n in a}
            b = {n: b[n] for n in names if n in b}
    if set(a) != set(b):
        raise ValueError(
            f"checkpoints differ in names: only in start {sorted(set(a) - set(b))[:5]}, "
            f"only in end {sorted(set(b) - set(a))[:5]}"
        )
    keep = set(_selected(start, a, params, dir_type))
    out, ends = {}, {}
    for name, t in a.items():
        if t.shape != b[name].shape:
            raise ValueError(f"{name}: shape {tuple(t.shape)} vs {tuple(b[name].shape)}")
        if t.is_floating_point() and name in keep:
            ends[name] = b[name].to(device=t.device, dtype=t.dtype)
            out[name] = ends[name] - t
    return Interpolation(out, ends)


def pca_directions(
    trajectory: Sequence[Mapping[str, torch.Tensor] | nn.Module],
    final: Mapping[str, torch.Tensor] | nn.Module | None = None,
    *,
    num: int = 2,
    ignore: Ignore = "biasbn",
) -> Directions:
    """The top principal directions of a training trajectory (Li et al. 2018, Sec. 7).

    The matrix of ``theta_t - theta_final`` (weights only; with ``ignore="biasbn"`` tensors
    with ``dim <= 1`` are left out) is centred and its top ``num`` right singular vectors
    become the directions, each with unit norm. ``settings["explained_variance"]`` holds
    the explained variance ratios.

    Args:
        trajectory: states (or models) along training.
        final: the point the directions are drawn around (default: the last state).
        num: 1 or 2.
        ignore: ``"biasbn"`` or ``"none"``.
    """
    if num not in (1, 2):
        raise ValueError(f"num must be 1 or 2, got {num}")
    if len(trajectory) < num + 1:
        raise ValueError(f"need at least {num + 1} trajectory states, got {len(trajectory)}")
    states = [_as_state(s, "weights") for s in trajectory]
    origin = _as_state(final, "weights") if final is not None else states[-1]
    names = [n for n, t in origin.items() if t.is_floating_point()]
    if ignore == "biasbn":
        names = [n for n in names if origin[n].dim() > 1]
    centre = flatten(origin, names).double()
    rows = torch.stack([flatten(s, names).double() - centre for s in states])
    rows = rows - rows.mean(dim=0, keepdim=True)
    _, singular, vh = torch.linalg.svd(rows, full_matrices=False)
    variance = singular**2
    ratio = (variance / variance.sum())[:num].tolist()
    dirs = []
    for k in range(num):
        parts = torch.split(vh[k], [origin[n].numel() for n in names])
        d = {n: torch.zeros_like(t) for n, t in origin.items() if t.is_floating_point()}
        for n, p in zip(names, parts, strict=True):
            d[n] = p.reshape(origin[n].shape).to(origin[n].dtype)
        dirs.append(d)
    settings = {"ignore": ignore, "dir_type": "weights", "explained_variance": ratio}
    return Directions(dirs[0], dirs[1] if num == 2 else None, kind="pca", settings=settings)


def project_states(
    directions: Directions,
    states: Sequence[Mapping[str, torch.Tensor] | nn.Module],
    origin: Mapping[str, torch.Tensor] | nn.Module,
) -> np.ndarray:
    """Coordinates of states in the plane of two directions, by least squares.

    Returns an array ``(len(states), 2)`` (``(len(states), 1)`` for a line) such that
    ``origin + c[0] x + c[1] y`` is the closest point of the plane to each state: use it to
    draw a training trajectory over a surface.
    """
    basis = [directions.x] + ([directions.y] if directions.y is not None else [])
    base = _as_state(origin, "weights")
    names = [n for n in directions.x if n in base]
    matrix = torch.stack([flatten(d, names).double() for d in basis], dim=1)
    centre = flatten(base, names).double()
    coords = []
    for s in states:
        target = flatten(_as_state(s, "weights"), names).double() - centre
        coords.append(torch.linalg.lstsq(matrix, target[:, None]).solution[:, 0])
    return torch.stack(coords).numpy()
