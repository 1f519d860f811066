"""The interpolation direction ``end - start``, exact at its end."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..params import DirType, ParamSelection
from .core import Interpolation, _as_state, _selected

__all__ = ["Interpolation", "interpolation_direction"]


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
