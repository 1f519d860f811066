"""Where the groups of a hand-written spec (:mod:`~.gpt2`, :mod:`~.llama`) show in the
activations, recorded with forward hooks (``torch.fx`` cannot trace those models): the
input or the output of a named module, its last axis the group's units.

A :class:`Probe` may read a segment of the axis (the query or key third of GPT-2's
``c_attn``), an axis read in several copies (:class:`~.repeated.Repeated`: each copy is
one more sample of the units), or units of ``width`` entries each matched entry by entry
(a Llama key/value head, whose dimensions stay in place: the correlation of two heads is
the mean correlation of their like dimensions, :func:`per_unit`).

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> found = record(net, [Probe("2", "0"), Probe("1", "0", output=True)], torch.ones(5, 3))
    >>> [tuple(x.shape) for x in found], torch.equal(found[0], found[1])
    ([(5, 4), (5, 4)], True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..data import call_model
from .repeated import Repeated, spread

__all__ = ["Probe", "per_unit", "record"]


@dataclass(frozen=True)
class Probe:
    """One activation of a group.

    Attributes:
        module: the module's name in the model.
        group: the group whose units the last axis holds.
        output: the module's output (the first element of a tuple); else its first input.
        segment: ``(start, stop)``: the units are that part of the last axis.
        repeated: the axis is read by several copies of the units, each a sample.
        width: entries per unit, matched entry by entry (:func:`per_unit`).
    """

    module: str
    group: str
    output: bool = False
    segment: tuple[int, int] | None = None
    repeated: Repeated | None = None
    width: int = 1

    def samples(self, x: torch.Tensor) -> torch.Tensor:
        """``(samples, entries)`` in float64: every position (and copy) a sample."""
        x = x.detach().to(torch.float64)
        if self.segment is not None:
            x = x[..., self.segment[0] : self.segment[1]]
        if self.repeated is not None:
            x = spread(x, x.dim() - 1, self.repeated)
        return x.reshape(-1, x.shape[-1])


def per_unit(corr: torch.Tensor, width: int) -> torch.Tensor:
    """The correlations of units of ``width`` entries: unit ``i`` against unit ``j``, the
    mean of ``corr`` over their like entries (the diagonal of block ``(i, j)``).

    Example:
        >>> per_unit(torch.eye(4), 2).tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    if width == 1:
        return corr
    units = corr.shape[0] // width
    blocks = corr.reshape(units, width, units, width)
    return torch.diagonal(blocks, dim1=1, dim2=3).mean(-1)


@torch.no_grad()
def record(model: nn.Module, probes: Sequence[Probe], inputs: Any) -> list[torch.Tensor]:
    """``probe.samples`` of every probe's activation in one forward pass of ``model``
    (called as :func:`landscape.data.call_model`); the hooks are removed after."""
    kept: dict[int, torch.Tensor] = {}

    def hook(i: int, probe: Probe) -> Any:
        def keep(_: nn.Module, args: tuple[Any, ...], out: Any = None) -> None:
            x = out if probe.output else args[0]
            kept[i] = probe.samples(x[0] if isinstance(x, tuple) else x)

        return keep

    handles = []
    try:
        for i, probe in enumerate(probes):
            module = model.get_submodule(probe.module)
            if probe.output:
                handles.append(module.register_forward_hook(hook(i, probe)))
            else:
                handles.append(module.register_forward_pre_hook(hook(i, probe)))
        call_model(model, inputs)
    finally:
        for handle in handles:
            handle.remove()
    return [kept[i] for i in range(len(probes))]
