"""An axis read by several copies of a group's units: the output projection's columns under
grouped-query attention, where ``repeat`` query heads share one key/value head.

The columns are laid out ``(head, copy, dim)``; the group's units are ``(head, dim)``, and
one permutation of them moves every copy alike. :func:`spread` lays the axis out as
``(copy, unit)`` so that the units are one ordinary axis, :func:`gather` undoes it.

Example:
    >>> import torch
    >>> axis = Repeated("v", heads=2, repeat=2)
    >>> t = torch.arange(8.0)  # (head, copy, dim) with 2 heads, 2 copies, 2 dims
    >>> spread(t, 0, axis).tolist()  # (copy, (head, dim))
    [[0.0, 1.0, 4.0, 5.0], [2.0, 3.0, 6.0, 7.0]]
    >>> torch.equal(gather(spread(t, 0, axis), 0, axis), t)
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Repeated", "gather", "spread"]


@dataclass(frozen=True)
class Repeated:
    """An axis of ``heads * repeat * d`` entries that ``group`` (``heads * d`` units)
    permutes in each of ``repeat`` copies per head."""

    group: str
    heads: int
    repeat: int


def spread(t: torch.Tensor, axis: int, entry: Repeated) -> torch.Tensor:
    """``t`` with ``axis`` split into ``(copy, unit)``: the units are axis ``axis + 1``."""
    split = t.unflatten(axis, (entry.heads, entry.repeat, -1)).movedim(axis + 1, axis)
    return split.flatten(axis + 1, axis + 2)


def gather(t: torch.Tensor, axis: int, entry: Repeated) -> torch.Tensor:
    """The inverse of :func:`spread`: ``(copy, unit)`` at ``axis`` back to one axis."""
    split = t.unflatten(axis + 1, (entry.heads, -1)).movedim(axis, axis + 1)
    return split.flatten(axis, axis + 2)
