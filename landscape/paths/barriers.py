"""Pairwise loss barriers of a set of checkpoints, before and after alignment: which of
them share a basin."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..results import Result
from .evaluation import connect_checkpoints

if TYPE_CHECKING:
    from ..objective import Objective
    from ..options import AlignMethodName, RepairName

__all__ = ["BarrierMatrix", "barrier_matrix"]

Checkpoint = nn.Module | Mapping[str, torch.Tensor]


@dataclass(frozen=True, eq=False)
class BarrierMatrix(Result):
    """The straight-line loss barrier between every pair of checkpoints; compared by value.

    Attributes:
        labels: one name per checkpoint.
        before: float64 ``(K, K)``: the barrier between the checkpoints as given
            (symmetric, 0 on the diagonal).
        after: float64 ``(K, K)``: the barrier after permuting the column's checkpoint into
            the row's frame, mirrored from the upper triangle; ``None`` without ``align``.
        settings: ``align``, ``repair``, ``num_points`` and ``seed`` (and ``residual``
            when set).
    """

    labels: list[str]
    before: np.ndarray
    after: np.ndarray | None = None
    settings: dict[str, Any] = field(default_factory=dict)


def barrier_matrix(
    objective: Objective,
    checkpoints: Mapping[str, Checkpoint] | Sequence[Checkpoint],
    *,
    align: AlignMethodName | None = None,
    repair: RepairName | None = None,
    t: Any = 11,
    seed: int = 0,
    residual: bool = False,
) -> BarrierMatrix:
    """The straight-line barrier between every pair of checkpoints, before and (with
    ``align``) after alignment: pairs in one basin have a barrier near 0.

    Each pair ``i < j`` is one :func:`connect_checkpoints` call with ``curve="line"``
    (checkpoint ``j`` aligned to ``i``); the matrices are mirrored from their upper
    triangle.

    Args:
        objective: the model and the evaluation data.
        checkpoints: ``{label: model or state_dict}``, or a sequence (labelled ``"0"``,
            ``"1"``, ...); two or more.
        align: ``None``, ``"weights"`` or ``"activations"``.
        repair: ``None``, ``"reset_bn"`` or ``"repair"`` at every point of every line.
        t: points per line, or increasing values from 0 to 1 (as in :func:`evaluate_path`).
        seed: weight matching's order of the groups.
        residual: with ``align``, for Hugging Face GPT-2 and Llama, permute the residual
            stream too (:func:`landscape.align`; in ``settings`` only when ``True``).

    Returns:
        A :class:`BarrierMatrix`; draw it with
        :func:`landscape.plotting.plot_barrier_matrix`.

    Raises:
        ValueError: fewer than two checkpoints, or what :func:`connect_checkpoints` raises.

    Example:
        >>> from landscape import Objective
        >>> model = nn.Linear(2, 1)
        >>> objective = Objective(model, (torch.ones(4, 2), torch.zeros(4, 1)), loss="mse")
        >>> zero = {n: torch.zeros_like(p) for n, p in model.state_dict().items()}
        >>> found = barrier_matrix(objective, {"a": model, "zero": zero}, t=5)
        >>> found.labels, found.before.shape, found.after is None
        (['a', 'zero'], (2, 2), True)
    """
    if isinstance(checkpoints, Mapping):
        labels, states = [str(k) for k in checkpoints], list(checkpoints.values())
    else:
        states = list(checkpoints)
        labels = [str(i) for i in range(len(states))]
    if len(states) < 2:
        raise ValueError(f"expected at least two checkpoints, got {len(states)}")
    k = len(states)
    before = np.zeros((k, k))
    after = np.zeros((k, k)) if align is not None else None
    for i in range(k):
        for j in range(i + 1, k):
            found = connect_checkpoints(
                objective, states[i], states[j], curve="line", t=t, repair=repair,
                align=align, align_seed=seed, residual=residual,
            )  # fmt: skip
            given = found.line if found.unaligned is None else found.unaligned
            before[i, j] = before[j, i] = given.barrier
            if after is not None:
                after[i, j] = after[j, i] = found.line.barrier
    settings = {
        "align": None if align is None else str(align),
        "repair": None if repair is None else str(repair),
        "num_points": len(found.line.t),
        "seed": seed,
        **({"residual": True} if residual else {}),
    }
    return BarrierMatrix(labels, before, after, settings)
