"""Seeded random draws: the one place where the measures make noise.

Draws come from a ``torch.Generator`` (never the global one). For weights on the CPU they
are made in float64, so the same seed gives the same numbers in every dtype, then cast to
the weights' dtype. For weights on a CUDA device they are made on that device (float32,
or the weights' dtype if wider), so no draw is copied from the host: they differ from the
CPU draws for the same seed, but are reproducible on the same device
(:mod:`landscape._seeding`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal

import torch

from .._seeding import draw_dtype, seeded_generator

State = dict[str, torch.Tensor]


def generator_for(like: Mapping[str, torch.Tensor], seed: int) -> torch.Generator:
    """A generator seeded with ``seed`` on the device of the tensors of ``like`` if it is a
    CUDA device, else on the CPU."""
    device = next(iter(like.values())).device if like else torch.device("cpu")
    return seeded_generator(seed, device)


def draw_like(
    like: Mapping[str, torch.Tensor],
    generator: torch.Generator,
    kind: Literal["normal", "uniform"] = "normal",
) -> State:
    """One draw per entry of ``like``, on the generator's device: standard normal, or
    uniform on ``[-1, 1]``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> draw = draw_like({"w": torch.zeros(3, dtype=torch.float32)}, g, "uniform")
        >>> draw["w"].dtype, bool(draw["w"].abs().max() <= 1)
        (torch.float32, True)
    """
    out = {}
    for name, t in like.items():
        dtype, device = draw_dtype(generator, t.dtype), generator.device
        if kind == "normal":
            x = torch.randn(t.shape, generator=generator, dtype=dtype, device=device)
        else:
            x = 2 * torch.rand(t.shape, generator=generator, dtype=dtype, device=device) - 1
        out[name] = x.to(t.device, t.dtype)
    return out


def normal_draws(like: Mapping[str, torch.Tensor], seed: int, num_draws: int) -> Iterator[State]:
    """``num_draws`` standard normal states, the same sequence for the same ``seed`` (and
    device)."""
    generator = generator_for(like, seed)
    for _ in range(num_draws):
        yield draw_like(like, generator)
