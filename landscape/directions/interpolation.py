"""The interpolation direction ``end - start``, exact at its end, and the line (or
plane) it makes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..checks import check_state
from ..params import DirType, ParamSelection
from .core import Directions, Interpolation, _as_state, _selected

__all__ = ["Interpolation", "interpolation_direction", "interpolation_directions"]


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
    check_state(b, a, name="the end checkpoint", against="the start checkpoint")
    keep = set(_selected(start, a, params, dir_type))
    out, ends = {}, {}
    for name, t in a.items():
        if t.is_floating_point() and name in keep:
            ends[name] = b[name].to(device=t.device, dtype=t.dtype)
            out[name] = ends[name] - t
    return Interpolation(out, ends)


def interpolation_directions(
    start: nn.Module | Mapping[str, torch.Tensor],
    end: nn.Module | Mapping[str, torch.Tensor],
    *,
    y: Mapping[str, torch.Tensor] | None = None,
    dir_type: DirType = "states",
    params: ParamSelection = None,
    settings: Mapping[str, Any] | None = None,
) -> Directions:
    """The line from ``start`` to ``end`` (:func:`interpolation_direction`, exact at
    ``t = 1``) as Directions of kind ``"interpolation"``, with ``y`` as a second direction
    for a plane (``landscape surface --directions interp`` takes a random one).

    ``settings`` (for example the end checkpoint's ``target_sha256``) are recorded after
    ``dir_type``.

    Example:
        >>> a, b = {"w": torch.tensor([0.1])}, {"w": torch.tensor([0.7])}
        >>> line = interpolation_directions(a, b)
        >>> line.kind, torch.equal(line.x_end["w"], b["w"]), line.y is None
        ('interpolation', True, True)
    """
    x = interpolation_direction(start, end, dir_type=dir_type, params=params)
    recorded = {"dir_type": dir_type, **(settings or {})}
    y = None if y is None else dict(y)
    return Directions(x, y, kind="interpolation", settings=recorded)
