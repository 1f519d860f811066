"""Weight matching (Ainsworth et al. 2023, "Git Re-Basin"): the permutations of ``b``
that maximize its inner product with ``a``, by coordinate descent over the groups.

With every other group held, the best permutation of one group ``P`` is a linear
assignment: ``max_perm sum_i C[i, perm[i]]`` with ``C = sum_(w, axis) A_w B_w^T``, where
``A_w`` is ``a``'s tensor ``w`` with ``axis`` first (one row per unit) and ``B_w`` is
``b``'s with the other groups' current permutations applied;
``scipy.optimize.linear_sum_assignment`` solves it exactly. The groups are visited in a
seeded random order until a whole sweep improves nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .permute import identity_permutations, permute_state
from .spec import PermutationSpec

__all__ = ["weight_matching", "weight_objective"]


def _rows(t: torch.Tensor, axis: int, n: int) -> torch.Tensor:
    return t.detach().to(torch.float64).movedim(axis, 0).reshape(n, -1)


def weight_objective(
    spec: PermutationSpec, a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]
) -> float:
    """``sum_w <a_w, b_w>`` over the parameters that the permutations move (float64)."""
    total = 0.0
    for name in spec.axes:
        if name in spec.parameters and name in a and name in b:
            total += float((a[name].double() * b[name].double().to(a[name].device)).sum())
    return total


def weight_matching(
    spec: PermutationSpec,
    a: Mapping[str, torch.Tensor],
    b: Mapping[str, torch.Tensor],
    *,
    max_iter: int = 100,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """The permutations of ``b`` that bring its weights closest to ``a``'s.

    Args:
        spec: the permutation groups.
        a, b: two states of the architecture of ``spec``.
        max_iter: most sweeps over the groups.
        seed: the order of the groups in each sweep.

    Returns:
        ``{group: permutation}`` (``int64`` tensors): ``permute_state(b, spec, perms)``
        is ``b`` in ``a``'s frame.

    Example:
        >>> from torch import nn
        >>> from landscape.alignment import permutation_spec, permute_state
        >>> net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
        >>> spec = permutation_spec(net)
        >>> shuffled = permute_state(net.state_dict(), spec, {"0": torch.tensor([4, 2, 0, 1, 3])})
        >>> weight_matching(spec, net.state_dict(), shuffled)["0"].tolist()
        [2, 3, 1, 4, 0]
    """
    perms = identity_permutations(spec)
    axes = {
        g: [(k, i) for k, i in spec.axes_of(g) if k in spec.parameters and k in a and k in b]
        for g in spec.sizes
    }
    rng = np.random.default_rng(seed)
    groups = list(spec.sizes)
    for _ in range(max_iter):
        improved = False
        for j in rng.permutation(len(groups)):
            group = groups[j]
            n = spec.sizes[group]
            cost = torch.zeros(n, n, dtype=torch.float64)
            for name, axis in axes[group]:
                moved = permute_state({name: b[name]}, spec, perms, skip=(name, axis))[name]
                rows_a = _rows(a[name], axis, n).cpu()
                rows_b = _rows(moved, axis, n).cpu()
                cost += rows_a @ rows_b.T
            c = cost.numpy()
            _, col = linear_sum_assignment(c, maximize=True)
            old = perms[group].numpy()
            before, after = c[np.arange(n), old].sum(), c[np.arange(n), col].sum()
            if after > before + 1e-12 * max(1.0, abs(before)):
                perms[group] = torch.as_tensor(col, dtype=torch.int64)
                improved = True
        if not improved:
            break
    return perms
