"""Weight matching (Ainsworth et al. 2023, "Git Re-Basin"): the permutations of ``b``
that maximize its inner product with ``a``, by coordinate descent over the groups.

With every other group held, the best permutation of one group ``P`` is a linear
assignment: ``max_perm sum_i C[i, perm[i]]`` with ``C = sum_(w, axis) A_w B_w^T``, where
``A_w`` is ``a``'s tensor ``w`` with ``axis`` first (one row per unit) and ``B_w`` is
``b``'s with the other groups' current permutations applied;
``scipy.optimize.linear_sum_assignment`` solves it exactly. The groups are visited in a
seeded random order until a whole sweep improves nothing (the first sweep starts with the
spec's ``first`` groups: a residual stream, which the embedding pins whatever the other
groups' order; visited late, it can stay stuck at a worse optimum). The groups of one
attention module are solved together, by whole heads
(:func:`~landscape.alignment.attention.match_heads`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .attention import match_heads
from .permute import identity_permutations, permute_state
from .repeated import Repeated, spread
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
        g: [(k, i, j) for k, i, j in spec.axes_of(g) if k in spec.parameters and k in a and k in b]
        for g in spec.sizes
    }
    in_heads = {g for _, members in spec.heads.values() for g in members}
    units: list[tuple[str, ...]] = [(g,) for g in spec.sizes if g not in in_heads]
    units += [members for _, members in spec.heads.values()]
    num_heads = {members: num for num, members in spec.heads.values()}
    rng = np.random.default_rng(seed)
    lead = [j for j, members in enumerate(units) if members[0] in spec.first]
    for sweep in range(max_iter):
        improved = False
        order = [int(j) for j in rng.permutation(len(units))]
        for j in (lead + [j for j in order if j not in lead]) if sweep == 0 else order:
            members = units[j]
            costs = [_cost(spec, a, b, perms, g, axes[g]) for g in members]
            if members in num_heads:
                found = match_heads(costs, num_heads[members])
            else:
                found = [linear_sum_assignment(costs[0], maximize=True)[1]]
            before = sum(
                c[np.arange(len(c)), perms[g].numpy()].sum()
                for c, g in zip(costs, members, strict=True)
            )
            after = sum(c[np.arange(len(c)), p].sum() for c, p in zip(costs, found, strict=True))
            if after > before + 1e-12 * max(1.0, abs(before)):
                for g, p in zip(members, found, strict=True):
                    perms[g] = torch.as_tensor(p, dtype=torch.int64)
                improved = True
        if not improved:
            break
    return perms


def _cost(spec, a, b, perms, group, axes) -> np.ndarray:
    """``C[i, j] = sum_w <a_w[i], b_w[j]>`` over the axes of ``group``, ``b`` with every other
    group's current permutation applied."""
    n = spec.sizes[group]
    cost = torch.zeros(n, n, dtype=torch.float64)
    for name, axis, segment in axes:
        moved = permute_state({name: b[name]}, spec, perms, skip=(name, axis))[name]
        ta, tb = a[name], moved
        if segment is not None:
            count = len(spec.axes[name][axis])
            ta, tb = ta.chunk(count, axis)[segment], tb.chunk(count, axis)[segment]
        entry = spec.axes[name][axis]
        if isinstance(entry, Repeated):  # the units of every copy, side by side
            ta, tb = (
                spread(ta, axis, entry).movedim(axis, -1),
                spread(tb, axis, entry).movedim(axis, -1),
            )
        cost += _rows(ta, axis, n).cpu() @ _rows(tb, axis, n).cpu().T
    return cost.numpy()
