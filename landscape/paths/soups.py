"""Model soups: the uniform average of several checkpoints (Wortsman et al. 2022)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..checks import check_state

__all__ = ["model_soup"]


def model_soup(
    checkpoints: Sequence[nn.Module | Mapping[str, torch.Tensor]],
) -> dict[str, torch.Tensor]:
    """The uniform average of several checkpoints (a "model soup", Wortsman et al. 2022).

    Floating tensors (parameters and running statistics) are averaged in float64 and cast
    back to their dtype; integer buffers (``num_batches_tracked``) are taken from the first.

    Args:
        checkpoints: two or more models or state_dicts with the same names and shapes.

    Returns:
        A state_dict; load it with ``model.load_state_dict(soup)``.

    Raises:
        ValueError: fewer than two checkpoints, or names or shapes that differ.

    Example:
        >>> soup = model_soup([{"w": torch.tensor([1.0])}, {"w": torch.tensor([3.0])}])
        >>> soup["w"].tolist()
        [2.0]
    """
    states = [c.state_dict() if isinstance(c, nn.Module) else dict(c) for c in checkpoints]
    if len(states) < 2:
        raise ValueError(f"expected at least two checkpoints for a soup, got {len(states)}")
    first = states[0]
    for i, state in enumerate(states[1:], start=1):
        check_state(state, first, name=f"checkpoint {i}", against="checkpoint 0")
    soup: dict[str, torch.Tensor] = {}
    for name, t in first.items():
        if t.is_floating_point():
            total = torch.zeros(t.shape, dtype=torch.float64, device=t.device)
            for s in states:
                total = total + s[name].detach().to(device=t.device, dtype=torch.float64)
            soup[name] = (total / len(states)).to(t.dtype)
        else:
            soup[name] = t.detach().clone()
    return soup
