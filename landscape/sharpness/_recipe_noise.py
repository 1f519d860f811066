"""Noise made from recipes (``stored=False``): each draw is made again, block by block,
into one perturbed copy of the weights, and never held whole beside them.

Sample ``i`` of a Gaussian measure (``avg_l2``, ``pacbayes``) is the standard normal draw
keyed by ``(seed, i, name, chunk)`` (a :class:`~landscape.directions.recipes.RecipeDirection`
with ``axis=i`` and no normalization); a ``rise`` direction ``i`` is the first recipe
direction of ``seed + i``, what ``random_directions(..., seed=seed + i, stored=False).x``
holds. The perturbed copy is written as the stored path forms it (``w + scale * z``, the
scale computed from the block's weights), so the memory is the copy and a block
(``landscape.directions.recipes.BLOCK`` entries), whatever the number of samples.

Example:
    >>> w = {"w": torch.zeros(2, 3, dtype=torch.float64)}
    >>> z = noise_direction(w, seed=0, sample=0)
    >>> state = PerturbedCopy(w).write(z, lambda rows: 0.5)
    >>> torch.equal(state["w"], 0.5 * z["w"])
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np
import torch

from ..directions.recipes import RecipeDirection
from ..objective import Objective

State = dict[str, torch.Tensor]
#: The multiplier of a block's draw, from the block's weights (rows of whole filters).
Scale = Callable[[torch.Tensor], torch.Tensor | float]


def noise_direction(weights: Mapping[str, torch.Tensor], seed: int, sample: int) -> RecipeDirection:
    """The standard normal draw of sample ``sample``: keyed by ``(seed, sample, name,
    chunk)``, in the weights' dtype and on their device."""
    return RecipeDirection(weights, seed=seed, axis=sample, norm="none", ignore="none")


class PerturbedCopy:
    """One copy of the weights, rewritten as ``w + scale(w) * d`` for each draw ``d``."""

    def __init__(self, weights: Mapping[str, torch.Tensor]):
        self.weights = dict(weights)
        self.copy = {
            n: torch.empty_like(w, memory_format=torch.contiguous_format)
            for n, w in self.weights.items()
        }

    def write(self, direction: RecipeDirection, scale: Scale) -> State:
        """The copy at ``w + scale(w) * direction``, a block of filters at a time."""
        for name, w in self.weights.items():
            out = self.copy[name]
            if name not in direction or w.numel() == 0:
                out.copy_(w)
                continue
            rows = w.shape[0] if w.dim() > 1 else 1
            out_rows, base_rows = out.view(rows, -1), w.reshape(rows, -1)
            for lo, hi, values in direction.blocks(name):
                base = base_rows[lo:hi]
                out_rows[lo:hi] = base + scale(base) * values
        return self.copy


def losses_at_states(
    objective: Objective,
    states: Iterable[Mapping[str, torch.Tensor]],
    metric: str = "loss",
    callback: Callable[[int], object] | None = None,
) -> np.ndarray:
    """The exact mean of ``metric`` at each state, one at a time (each may be the same
    copy rewritten), left on the device until all are evaluated."""
    values = []
    for state in states:
        values.append(objective(dict(state), on_device=True)[metric])
        if callback is not None:
            callback(1)
    return torch.stack(values).cpu().numpy() if values else np.empty(0)


def losses_in_place(
    objective: Objective,
    directions: Iterable[RecipeDirection],
    scale: float,
    metric: str = "loss",
    callback: Callable[[int], object] | None = None,
) -> np.ndarray:
    """The exact mean of ``metric`` at ``w + scale * d`` for each recipe ``d``, written into
    a sharded model's own shards (:meth:`~landscape.objective.Objective.evaluate_points`:
    each rank makes its pieces of ``d``; the shards are put back after each point), left
    on the device until all are evaluated. The same roundings as :class:`PerturbedCopy`
    with a constant scale."""
    values = []
    for d in directions:
        coords = np.array([[scale]], dtype=np.float64)
        found = objective.evaluate_points(objective.base_state, [d], coords, on_device=True)
        values.append(torch.as_tensor(found[metric]).reshape(-1)[0])
        if callback is not None:
            callback(1)
    return torch.stack(values).cpu().numpy() if values else np.empty(0)
