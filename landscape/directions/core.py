"""The :class:`Directions` type: one or two directions and the settings that made them.

A direction is a state: a mapping from parameter (or buffer) names to tensors of the
same shapes. Every builder of :mod:`landscape.directions` returns :class:`Directions`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..checks import check_count
from ..params import DirType, ParamSelection, model_state, select_params
from ..results import Result
from .drawing import dot64

State = dict[str, torch.Tensor]

__all__ = ["Directions", "Interpolation"]


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

    x: Mapping[str, torch.Tensor]  # a state, or a RecipeDirection that makes its values
    y: Mapping[str, torch.Tensor] | None = None
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
        >>> from landscape.directions import interpolation_direction
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
    for a, b in _pairs(x, y):
        xy += dot64(a, b)  # in pieces: no float64 copy of a whole tensor
        xx += dot64(a, a)
        yy += dot64(b, b)
    if xx == 0 or yy == 0:
        return float("nan")
    return xy / math.sqrt(xx * yy)


def check_num_directions(value: Any) -> int:
    """1 (a line) or 2 (a plane), as an ``int``: what every builder's ``num_directions``
    takes (its name before 0.3: ``num``).

    Example:
        >>> check_num_directions(2)
        2
    """
    if check_count(value, "num_directions") > 2:
        raise ValueError(f"expected num_directions 1 or 2, got {value!r}")
    return int(value)


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


def _pairs(x: Mapping[str, torch.Tensor], y: Mapping[str, torch.Tensor]):
    """The floating tensors of ``x`` and ``y`` under the same names, in pairs; for two
    recipe directions (see :mod:`.recipes`) block by block, so no whole tensor is made."""
    blocks = getattr(x, "blocks", None), getattr(y, "blocks", None)
    for name in x:
        if name not in y:
            continue
        if blocks[0] is not None and blocks[1] is not None:
            for (_, _, a), (_, _, b) in zip(blocks[0](name), blocks[1](name), strict=True):
                yield a, b
            continue
        a, b = x[name], y[name]
        if a.is_floating_point():
            yield a, b
