"""Seeded random draws: the one place where the measures make noise.

Draws are made on the CPU in float64 from a ``torch.Generator`` (never the global one), so
the same seed gives the same numbers on every device and in every dtype, then cast to
the dtype and device of the tensors they perturb.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal

import torch

State = dict[str, torch.Tensor]


def draw_like(
    like: Mapping[str, torch.Tensor],
    generator: torch.Generator,
    kind: Literal["normal", "uniform"] = "normal",
) -> State:
    """One draw per entry of ``like``: standard normal, or uniform on ``[-1, 1]``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> draw = draw_like({"w": torch.zeros(3, dtype=torch.float32)}, g, "uniform")
        >>> draw["w"].dtype, bool(draw["w"].abs().max() <= 1)
        (torch.float32, True)
    """
    out = {}
    for name, t in like.items():
        if kind == "normal":
            x = torch.randn(t.shape, generator=generator, dtype=torch.float64)
        else:
            x = 2 * torch.rand(t.shape, generator=generator, dtype=torch.float64) - 1
        out[name] = x.to(t.device, t.dtype)
    return out


def normal_draws(like: Mapping[str, torch.Tensor], seed: int, num: int) -> Iterator[State]:
    """``num`` standard normal states, the same sequence for the same ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(num):
        yield draw_like(like, generator)
