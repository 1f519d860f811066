"""Applying permutations to a state: the units of each group reordered along every axis
the group acts on."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .repeated import Repeated, gather, spread
from .spec import PermutationSpec

__all__ = ["identity_permutations", "permute_state", "take"]

Permutations = dict[str, torch.Tensor]


def take(t: torch.Tensor, axis: int, perm: torch.Tensor) -> torch.Tensor:
    """``t`` with the units along ``axis`` reordered: unit ``i`` becomes ``perm[i]``.

    An axis of ``k * len(perm)`` entries is taken as ``len(perm)`` blocks of ``k`` (a
    linear layer reading a flattened conv map, channel by channel).

    Example:
        >>> take(torch.arange(6.0), 0, torch.tensor([2, 0, 1])).tolist()
        [4.0, 5.0, 0.0, 1.0, 2.0, 3.0]
    """
    n, m = len(perm), t.shape[axis]
    index = perm.to(t.device)
    if m == n:
        return t.index_select(axis, index)
    if m % n:
        raise ValueError(f"expected an axis of a multiple of {n} entries, got {m}")
    blocks = t.unflatten(axis, (n, m // n)).index_select(axis, index)
    return blocks.flatten(axis, axis + 1)


def identity_permutations(spec: PermutationSpec) -> Permutations:
    """The identity permutation of every group."""
    return {g: torch.arange(n) for g, n in spec.sizes.items()}


def permute_state(
    state: Mapping[str, torch.Tensor],
    spec: PermutationSpec,
    perms: Mapping[str, torch.Tensor],
    *,
    skip: tuple[str, int] | None = None,
) -> dict[str, torch.Tensor]:
    """A new state: every tensor of ``state`` permuted along the axes its groups act on.

    Args:
        state: a ``state_dict``-like mapping (not changed).
        spec: from :func:`~landscape.alignment.permutation_spec`.
        perms: ``{group: permutation}`` (missing groups: identity).
        skip: one ``(name, axis)`` left as it is (weight matching's cost of one axis).

    Returns:
        ``{name: tensor}``, new tensors for the permuted names, the others as given.
    """
    out = {}
    for name, t in state.items():
        for axis, group in enumerate(spec.axes.get(name, ())):
            if group is None or (name, axis) == skip:
                continue
            if isinstance(group, tuple):  # a packed axis: one group per equal segment
                parts = t.chunk(len(group), axis)
                t = torch.cat(
                    [
                        take(part, axis, perms[g]) if g in perms else part
                        for part, g in zip(parts, group, strict=True)
                    ],
                    axis,
                )
            elif isinstance(group, Repeated):  # every copy of the units alike
                if group.group in perms:
                    t = gather(
                        take(spread(t, axis, group), axis + 1, perms[group.group]), axis, group
                    )
            elif group in perms:
                t = take(t, axis, perms[group])
        out[name] = t
    return out
