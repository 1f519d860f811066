"""Points of a surface over recipe directions (``random_directions(..., stored=False)``),
written tensor by tensor from values made again, into one perturbed copy.

Each point is formed as :func:`landscape.params.point_state` forms it (``(base + c_0
d_0) + c_1 d_1``, each product rounded, zero coefficients skipped), block of filters by
block of filters: the directions' values of a block are made, used and freed, so the
memory is the perturbed copy of the moving tensors and a few blocks (see
``landscape.directions.recipes.BLOCK``), never a whole direction. The point is then
evaluated by the :class:`~landscape.objective.Objective` at that state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ..directions.recipes import RecipeDirection
from ..objective import Objective


class RecipePoints:
    """One perturbed copy of the tensors the recipes move, rewritten for each point.

    Example:
        >>> from torch import nn
        >>> from landscape.directions import random_directions
        >>> from landscape.params import point_state
        >>> model = nn.Linear(3, 2)
        >>> dirs = random_directions(model, stored=False)
        >>> base = dict(model.state_dict())
        >>> points = RecipePoints(base, (dirs.x, dirs.y))
        >>> state = points.write([0.5, -1.0])
        >>> stored = point_state(base, [dict(dirs.x), dict(dirs.y)], [0.5, -1.0])
        >>> torch.equal(state["weight"], stored["weight"])
        True
    """

    def __init__(self, base: Mapping[str, torch.Tensor], used: Sequence[RecipeDirection]):
        self.base, self.used = base, tuple(used)
        names = dict.fromkeys(n for d in self.used for n in d if base[n].is_floating_point())
        self.copies = {
            n: torch.empty_like(base[n], memory_format=torch.contiguous_format) for n in names
        }

    def write(self, point: Sequence[float]) -> dict[str, torch.Tensor]:
        """The state at ``point`` (the moving tensors; the others are the base's)."""
        for name, out in self.copies.items():
            t = self.base[name]
            terms = [(float(c), d) for c, d in zip(point, self.used, strict=True)
                     if float(c) != 0 and name in d]  # fmt: skip
            if not terms:
                out.copy_(t)
                continue
            rows = out.shape[0] if out.dim() > 1 else 1
            out_rows, base_rows = out.view(rows, -1), t.reshape(rows, -1)
            for parts in zip(*(d.blocks(name) for _, d in terms), strict=True):
                lo, hi = parts[0][0], parts[0][1]
                acc = base_rows[lo:hi]
                for (c, _), (_, _, values) in zip(terms, parts, strict=True):
                    acc = acc + c * values.to(device=t.device, dtype=t.dtype)
                out_rows[lo:hi] = acc
        return self.copies


def evaluate_recipe_points(
    objective: Objective,
    points: RecipePoints,
    coords: np.ndarray,
    convexity: bool,
) -> dict[str, np.ndarray]:
    """The metrics at ``coords`` (one point at a time) and, if asked, the Hessian's
    ``|lambda_min / lambda_max|``."""
    rows: dict[str, list[float]] = {name: [] for name in objective.names}
    ratios = []
    for point in coords:
        state = points.write(point)
        for name, value in objective(state).items():
            rows[name].append(value)
        if convexity:
            from ..hessian import min_max_ratio

            ratios.append(min_max_ratio(objective, dict(state)))
    result = {name: np.asarray(values, dtype=np.float64) for name, values in rows.items()}
    if convexity:
        result["convexity"] = np.asarray(ratios, dtype=np.float64)
    return result
