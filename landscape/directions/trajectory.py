"""The plane of a training run: its top two principal directions around the final checkpoint
and each checkpoint's coordinates on it (Li et al. 2018, Sec. 7).

:func:`trajectory_directions` is the directions' part of
:func:`landscape.trajectory.trajectory_plane` (which also evaluates the checkpoints and the
surface over the plane).

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> run = [{"w": torch.randn(3, 2, generator=g, dtype=torch.float64)} for _ in range(4)]
    >>> directions, coords = trajectory_directions(run_states(run))
    >>> directions.kind, coords.shape, bool((coords[-1] == 0).all())
    ('pca', (4, 2), True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..params import merge_tied
from .core import Directions, State
from .normalization import Ignore
from .pca import pca_directions, project_states

__all__ = ["run_states", "trajectory_directions"]


def run_states(
    checkpoints: Sequence[nn.Module | Mapping[str, torch.Tensor]],
    tied: Mapping[str, str] | None = None,
) -> list[State]:
    """The states of a run's checkpoints (models or state_dicts), each tied tensor once
    (``tied`` as from :func:`landscape.params.tied_names`).

    Raises:
        TypeError: a checkpoint is neither a model nor a mapping of tensors.
        ValueError: fewer than three checkpoints.
    """
    states = []
    for checkpoint in checkpoints:
        if isinstance(checkpoint, nn.Module):
            state = {n: t.detach() for n, t in checkpoint.state_dict().items()}
        elif isinstance(checkpoint, Mapping):
            state = dict(checkpoint)
        else:
            raise TypeError(
                f"expected checkpoints as models or state_dicts, got {type(checkpoint).__name__}"
            )
        states.append(merge_tied(state, tied or {}))
    if len(states) < 3:
        raise ValueError(f"a trajectory needs at least 3 checkpoints, got {len(states)}")
    return states


def trajectory_directions(
    states: Sequence[Mapping[str, torch.Tensor]], *, ignore: Ignore = "biasbn"
) -> tuple[Directions, np.ndarray]:
    """The PCA plane of a run around its last state (:func:`pca_directions`, kind ``"pca"``,
    ``settings["explained_variance"]``) and each state's float64 coordinates on it,
    ``(len(states), 2)``, by least squares (:func:`project_states`); the last state is
    the origin."""
    directions = pca_directions(states, states[-1], ignore=ignore)  # two, the default
    coords = np.asarray(project_states(directions, states, states[-1]), dtype=np.float64)
    return directions, coords
