"""Directions from a training trajectory: PCA (Li et al. 2018, Sec. 7) and projection."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..checks import renamed_keywords
from ..params import flatten
from .core import Directions, _as_state, check_num_directions
from .normalization import Ignore

__all__ = ["pca_directions", "project_states"]


@renamed_keywords(num="num_directions")
def pca_directions(
    trajectory: Sequence[Mapping[str, torch.Tensor] | nn.Module],
    final: Mapping[str, torch.Tensor] | nn.Module | None = None,
    *,
    num_directions: int = 2,
    ignore: Ignore = "biasbn",
) -> Directions:
    """The top principal directions of a training trajectory (Li et al. 2018, Sec. 7).

    The matrix of ``theta_t - theta_final`` (weights only; with ``ignore="biasbn"`` tensors
    with ``dim <= 1`` are left out) is centred and its top ``num_directions`` right singular
    vectors become the directions, each with unit norm. ``settings["explained_variance"]``
    holds the explained variance ratios.

    Args:
        trajectory: states (or models) along training.
        final: the point the directions are drawn around (default: the last state).
        num_directions: 1 or 2 (``num=``, its old name, is deprecated).
        ignore: ``"biasbn"`` or ``"none"``.
    """
    num = check_num_directions(num_directions)
    if len(trajectory) < num + 1:
        raise ValueError(f"expected at least {num + 1} trajectory states, got {len(trajectory)}")
    states = [_as_state(s, "weights") for s in trajectory]
    origin = _as_state(final, "weights") if final is not None else states[-1]
    names = [n for n, t in origin.items() if t.is_floating_point()]
    if ignore == "biasbn":
        names = [n for n in names if origin[n].dim() > 1]
    centre = flatten(origin, names).double()
    rows = torch.stack([flatten(s, names).double() - centre for s in states])
    rows = rows - rows.mean(dim=0, keepdim=True)
    _, singular, vh = torch.linalg.svd(rows, full_matrices=False)
    variance = singular**2
    ratio = (variance / variance.sum())[:num].tolist()
    dirs = []
    for k in range(num):
        parts = torch.split(vh[k], [origin[n].numel() for n in names])
        d = {n: torch.zeros_like(t) for n, t in origin.items() if t.is_floating_point()}
        for n, p in zip(names, parts, strict=True):
            d[n] = p.reshape(origin[n].shape).to(origin[n].dtype)
        dirs.append(d)
    settings = {"ignore": ignore, "dir_type": "weights", "explained_variance": ratio}
    return Directions(dirs[0], dirs[1] if num == 2 else None, kind="pca", settings=settings)


def project_states(
    directions: Directions,
    states: Sequence[Mapping[str, torch.Tensor] | nn.Module],
    origin: Mapping[str, torch.Tensor] | nn.Module,
) -> np.ndarray:
    """Coordinates of states in the plane of two directions, by least squares.

    Returns an array ``(len(states), 2)`` (``(len(states), 1)`` for a line) such that
    ``origin + c[0] x + c[1] y`` is the closest point of the plane to each state: use it to
    draw a training trajectory over a surface.
    """
    basis = [directions.x] + ([directions.y] if directions.y is not None else [])
    base = _as_state(origin, "weights")
    names = [n for n in directions.x if n in base]
    matrix = torch.stack([flatten(d, names).double() for d in basis], dim=1)
    centre = flatten(base, names).double()
    coords = []
    for s in states:
        target = flatten(_as_state(s, "weights"), names).double() - centre
        coords.append(torch.linalg.lstsq(matrix, target[:, None]).solution[:, 0])
    return torch.stack(coords).numpy()
